#!/bin/sh
# ragops/postgres entrypoint: prepare $PGDATA once, then exec postgres (PID 1, gets the signals).
#   RAGOPS_PG_ROLE=primary  initdb (checksums, scram) with the superuser password read from
#                           RAGOPS_PG_PASSWORD_FILE (a mounted file; never an environment value)
#   RAGOPS_PG_ROLE=replica  pg_basebackup -R from RAGOPS_PG_PRIMARY (host:port on the network),
#                           replication slot RAGOPS_PG_SLOT, walreceiver named RAGOPS_PG_NAME
# An existing $PGDATA is kept as it is (a promoted replica stays a primary), except that a node
# expected to be a replica refuses to start on a primary's data (exit 3). Every argument is
# passed to postgres (ragops gives its settings as -c options).
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${RAGOPS_PG_SUPERUSER:=postgres}"
pwfile="${RAGOPS_PG_PASSWORD_FILE:-/run/secrets/pg-password}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    [ -r "$pwfile" ] || { echo "ragops-postgres: password file $pwfile is not readable" >&2; exit 1; }
    rm -rf "$PGDATA"
    mkdir -p "$PGDATA" && chmod 0700 "$PGDATA"
    if [ "${RAGOPS_PG_ROLE:-primary}" = replica ]; then
        host="${RAGOPS_PG_PRIMARY%:*}"; port="${RAGOPS_PG_PRIMARY##*:}"
        # the walreceiver keeps authenticating with it: on the volume, readable by pg only
        pgpass=/var/lib/postgresql/.pgpass
        (umask 077; printf '*:*:*:%s:%s\n' "$RAGOPS_PG_SUPERUSER" "$(cat "$pwfile")" >"$pgpass")
        tries=0
        until PGPASSFILE="$pgpass" pg_basebackup -D "$PGDATA" -R -X stream -C -S "$RAGOPS_PG_SLOT" \
                --checkpoint=fast -w -d "host=$host port=$port user=$RAGOPS_PG_SUPERUSER application_name=${RAGOPS_PG_NAME:-replica}"; do
            tries=$((tries + 1))
            [ "$tries" -lt 30 ] || { echo "ragops-postgres: pg_basebackup from $host:$port failed" >&2; exit 1; }
            rm -rf "$PGDATA"; mkdir -p "$PGDATA"; chmod 0700 "$PGDATA"
            sleep 1
        done
    else
        initdb -D "$PGDATA" -U "$RAGOPS_PG_SUPERUSER" --pwfile "$pwfile" --auth-local=scram-sha-256 \
            --auth-host=scram-sha-256 --data-checksums -E UTF8 --locale=C >/dev/null
        # the environment's network reaches the server with a password; nothing else does
        printf 'host all all 0.0.0.0/0 scram-sha-256\nhost replication all 0.0.0.0/0 scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    fi
elif [ "${RAGOPS_PG_ROLE:-primary}" = replica ] && [ ! -f "$PGDATA/standby.signal" ]; then
    # a former primary (before a failover) must not come back as a second primary
    echo "ragops-postgres: refusing to start: $PGDATA holds a primary's data but this node is expected to be a replica (rebuild it from the current primary)" >&2
    exit 3
fi
exec postgres -D "$PGDATA" "$@"
