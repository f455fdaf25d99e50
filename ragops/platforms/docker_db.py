"""The docker platform's PostgreSQL: the configured primary and replicas as containers.

With `database.accessories: true` (the default of a docker environment without `database.dsn`),
`ragops up` runs every node of `database` as a container of `docker.database.image` (built by
scripts/docker-images.sh: the pgserver wheel's PostgreSQL 16, as on the local platform) on the
first host:

  <instance>-db-<node>        labels ragops.role=database, ragops.node=<node>; joins the
                              environment's network (bridge) under its container name
  <instance>-db-<node>-data   its named volume (kept by `down`, removed by `down --purge`)

The superuser password (database.password, or the generated state secret) reaches the containers
as a mounted file (<host dir>/secrets/pg-password, mode 0444 in a 0700 folder), never as an
environment value or a label. The primary is initialised by the image's entrypoint (initdb);
replicas clone it with pg_basebackup -R over the network and stream from their replication slot.
Role, database and migrations are applied by ragops with the same functions as on the local
platform (ragops.db.bringup), at the address DockerPlatform.database_address gives (DockerHost.dial):
the container's address on the network, no port published (through the ssh tunnel on an ssh host);
with network_mode: host, <node.port> on the host's 127.0.0.1.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ragops.errors import OperationFailed
from ragops.events import Say as Progress
from ragops.events import quiet as _noop

if TYPE_CHECKING:
    from ragops.config import Config, DbNode
    from ragops.platforms.docker_host import DockerHost

PG_PORT = 5432                       # inside the container, in bridge mode
PGDATA_ROOT = "/var/lib/postgresql"  # the image's pg home; the volume is mounted here
PASSWORD_FILE = "/run/secrets/pg-password"
SECRET_NAME = "secrets/pg-password"


def enabled(config: Config) -> bool:
    """Whether ragops runs the database as containers for this docker environment."""
    flag = config.database.accessories
    if flag and config.database.dsn:
        from ragops.errors import ConfigError

        raise ConfigError(f"environments.{config.env_name}.database.accessories: true runs the database as "
                          f"containers, but database.dsn names an external one; keep one of them")
    return (not config.database.dsn) if flag is None else flag


class DockerDatabase:
    """The database nodes of one docker environment, on its first host."""

    def __init__(self, config: Config, host: DockerHost):
        self.config = config
        self.host = host
        self.settings = config.env.docker.database

    # ---- names ----------------------------------------------------------------------------------
    def part(self, node: DbNode) -> str:
        return f"db-{node.name}"

    def address(self, node: DbNode) -> tuple[str, int]:
        """How the colors and the other nodes reach `node`."""
        if self.host.host_network:
            return "127.0.0.1", node.port
        return f"{self.host.network}-{self.part(node)}", PG_PORT   # a region's host shares the network

    def dial(self, node: DbNode) -> tuple[str, int]:
        """Where this process connects to `node` (DockerPlatform.database_address): DockerHost.dial.
        A node whose container is not running raises NoAddress (db status shows it as the node's error)."""
        from ragops.netutil import split_host_port

        return split_host_port(self.host.dial(f"{self.host.network}-{self.part(node)}", PG_PORT, node.port))

    def node_at(self, host: str | None, port: int | None) -> str | None:
        """The node that the other nodes know as `host:port` (a replica's upstream), or None."""
        for node in self.nodes():
            if (host, port) == self.address(node):
                return node.name
        return None

    def nodes(self) -> list[DbNode]:
        from ragops.db.connect import all_nodes

        return all_nodes(self.config)

    def app_dsn(self) -> str:
        """The colors' conninfo: every node by its address on the environment's network."""
        from ragops.db.connect import db_password
        from ragops.pg.conninfo import conninfo

        db = self.config.database
        addresses = [self.address(node) for node in self.nodes()]
        return conninfo(host=",".join(a[0] for a in addresses), port=",".join(str(a[1]) for a in addresses),
                        dbname=db.name, user=db.user, password=db_password(self.config),
                        target_session_attrs="read-write", connect_timeout=3, application_name="ragservice")

    def plan(self) -> list[str]:
        image, host = self.settings.image, self.host
        return [f"database node {node.name}: container {host.name(self.part(node))} ({image}), volume "
                f"{host.name(self.part(node) + '-data')}, " + (f"127.0.0.1:{node.port}" if host.host_network else
                                                               f"network {host.network} (no port published)")
                for node in self.nodes()]

    # ---- up -------------------------------------------------------------------------------------
    def up(self, progress: Progress = _noop) -> list[str]:
        """Start every node (creating the missing ones), then role, database and migrations."""
        from ragops.db.bringup import role_and_database
        from ragops.db.connect import db_password

        password = db_password(self.config)
        self.host.require_image(self.settings.image, "docker.database.image")
        self.host.dir.write_secret(SECRET_NAME, password + "\n")
        if not self.host.host_network:
            self.host.ensure_network(progress)
        steps: list[str] = []
        db = self.config.database
        initialised = {node.name: self._has_volume(node) for node in self.nodes()}
        fresh = not any(initialised.values())
        expected = self.expected_primary()
        for node in self.nodes():      # nodes with data: the expected primary, the others only as replicas
            replica = node is not expected
            if initialised[node.name] and self._start(node, "replica" if replica else "primary", progress,
                                                      source=expected if replica else None):
                steps.append(f"start database node {node.name}")
        if fresh and self._start(db.primary, "primary", progress):
            steps.append(f"create database node {db.primary.name} (primary)")
        primary = self._wait_primary(expected, steps, progress)
        steps += role_and_database(self.config, primary.name, password)
        for node in db.replicas:
            if not initialised[node.name]:
                self._drop_stale_slot(primary, node)
                if self._start(node, "replica", progress, source=primary):
                    steps.append(f"create database node {node.name} (replica of {primary.name})")
        for node in db.replicas:
            if not initialised[node.name]:
                self._wait_reachable(node)
        steps += [f"migrate {name}" for name in self._migrate(primary, progress)]
        return steps

    def expected_primary(self) -> DbNode:
        """The node to start as the primary: the last promotion's (state_dir/topology.json), else the
        configured one. The image refuses to start any other node on a primary's data."""
        from ragops.db.connect import find_node
        from ragops.db.replication import read_topology
        from ragops.errors import ConfigError

        recorded = read_topology(self.config).get("primary")
        try:
            return find_node(self.config, recorded) if recorded else self.config.database.primary
        except ConfigError:
            return self.config.database.primary

    def _has_volume(self, node: DbNode) -> bool:
        import docker

        try:
            self.host.client.volumes.get(self.host.name(self.part(node) + "-data"))
        except docker.errors.NotFound:
            return False
        return True

    def _start(self, node: DbNode, role: str, progress: Progress, source: DbNode | None = None) -> bool:
        """Run the node's container unless it runs; False when it was already running."""
        import docker

        from ragops.pg.pgctl import BASE_SETTINGS
        from ragops.platforms.docker_wal import outdated

        host = self.host
        archive = self._archive()    # every node: a promoted replica archives its new timeline at once
        found = host.container(self.part(node))
        if found is not None and found.status == "running":
            running_as = self._running_role(node) if outdated(found, archive) else None
            if running_as is None:     # up to date, or not answering: left as it is
                return False
            progress(f"{node.name}: restarting container {found.name} ({running_as}) for the WAL archive settings")
            role, source = running_as, (source if running_as == "replica" else None)
            found.stop(timeout=30)
        if found is not None:
            found.remove(force=True)
        volume = host.name(self.part(node) + "-data")
        try:
            host.client.volumes.get(volume)
        except docker.errors.NotFound:
            host.client.volumes.create(volume, labels=host.labels("volume", node=node.name))
        settings = {**BASE_SETTINGS, "unix_socket_directories": "'/tmp'"}
        settings["listen_addresses"] = "'127.0.0.1'" if host.host_network else "'*'"
        settings.update(archive.get("settings", {}))
        command = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value.strip(chr(39))}")]
        env = {"RAGOPS_PG_ROLE": role, "RAGOPS_PG_SUPERUSER": self.config.database.superuser,
               "RAGOPS_PG_PASSWORD_FILE": PASSWORD_FILE, "RAGOPS_PG_NAME": node.name}
        if source is not None:
            from ragops.db.replication import slot_name

            source_host, source_port = self.address(source)
            env.update(RAGOPS_PG_PRIMARY=f"{source_host}:{source_port}", RAGOPS_PG_SLOT=slot_name(node.name))
        kwargs: dict = dict(
            image=self.settings.image, name=host.name(self.part(node)), detach=True, environment=env,
            command=command, labels=host.labels("database", node=node.name), shm_size=self.settings.shm_size,
            volumes={volume: {"bind": PGDATA_ROOT, "mode": "rw"},
                     host.dir.path(SECRET_NAME): {"bind": PASSWORD_FILE, "mode": "ro"}, **archive.get("volumes", {})},
            restart_policy={"Name": "unless-stopped"}, stop_signal="SIGINT")
        if archive.get("group_add"):
            kwargs["group_add"] = archive["group_add"]
        if host.host_network:
            kwargs["network_mode"] = "host"
            kwargs["command"] = command + ["-c", f"port={node.port}"]
        else:
            kwargs["network"] = host.instance     # no port published: ragops dials it (DockerHost.dial)
        where = f"127.0.0.1:{node.port}" if host.host_network else f"network {host.network}"
        progress(f"{host.label}: starting database node {host.name(self.part(node))} ({role}) on {where}")
        try:
            host.client.containers.run(**kwargs)
        except Exception as exc:  # noqa: BLE001 - docker API errors: one line naming the node
            from ragops.platforms.docker_host import error_text

            raise OperationFailed(f"host {host.label}: could not start database node {node.name}: "
                                  f"{error_text(exc)}") from None
        return True

    def _archive(self) -> dict:
        """The WAL archive's container options (ragops/platforms/docker_wal.py), {} when off."""
        from ragops.platforms import docker_wal

        if not docker_wal.active(self.config, self.host):
            return {}
        options = docker_wal.prepare_spool(self.config, self.host, self.settings.image)
        return {**options, "settings": docker_wal.container_settings(self.config, options.pop("group_readable"))}

    def _running_role(self, node: DbNode) -> str | None:
        """What a running node is now (a promoted replica is a primary), or None when it does not answer."""
        from ragops.db.connect import connect, node_dsn

        try:
            with connect(node_dsn(self.config, node, dbname="postgres", connect_timeout=3)) as conn:
                return "replica" if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] else "primary"
        except Exception:  # noqa: BLE001 - starting, or down: not restarted by `up`
            return None

    def _wait_reachable(self, node: DbNode) -> None:
        from ragops.db.connect import connect, node_dsn
        from ragops.secrets import redact

        deadline = time.monotonic() + self.settings.start_timeout
        error = ""
        while time.monotonic() < deadline:
            found = self.host.container(self.part(node))
            if found is None or found.status in ("exited", "dead", "restarting"):
                tail = found.logs(tail=3).decode(errors="replace").strip() if found else "no container"
                raise OperationFailed(f"database node {node.name} stopped while starting: {redact(tail)}",
                                      hint=f"docker logs {self.host.name(self.part(node))}")
            try:
                with connect(node_dsn(self.config, node, dbname="postgres", connect_timeout=2)):
                    return
            except Exception as exc:  # noqa: BLE001 - not up yet
                error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            time.sleep(0.3)
        raise OperationFailed(f"database node {node.name} did not accept connections within "
                              f"{self.settings.start_timeout:.0f}s: {redact(error)}")

    def _wait_primary(self, expected: DbNode, steps: list[str], progress: Progress) -> DbNode:
        """The node that accepts writes now (a promoted replica after a failover). A node other than
        the expected primary that does not start (a former primary's data) is stopped and reported."""
        from ragops.db.connect import find_node
        from ragops.db.replication import primary_status, topology

        for node in self.nodes():
            if self.host.container(self.part(node)) is None:
                continue
            try:
                self._wait_reachable(node)
            except OperationFailed as exc:
                if node is expected:
                    raise
                self.stop_node(node.name, timeout=5)
                progress(f"database node {node.name} left stopped: {exc.message}")
                steps.append(f"left {node.name} stopped (not a replica of {expected.name}; rebuild it)")
        live = primary_status(topology(self.config))
        if live is None:
            raise OperationFailed("no database node accepts writes (every node is a replica or down)",
                                  hint="ragops db status; promote one with `ragops db promote NODE`")
        progress(f"database: {live.name} is the primary")
        return find_node(self.config, live.name)

    def _drop_stale_slot(self, primary: DbNode, replica: DbNode) -> None:
        from ragops.db.connect import connect, node_dsn
        from ragops.db.replication import slot_name

        with connect(node_dsn(self.config, primary, dbname="postgres")) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE slot_name = %s AND NOT active", (slot_name(replica.name),))

    def _migrate(self, primary: DbNode, progress: Progress) -> list[str]:
        from ragops.db.connect import node_dsn
        from ragops.pg.migrate import apply_migrations

        migrations = self.config.resolve_path(self.config.service.path) / "migrations"
        return apply_migrations(node_dsn(self.config, primary), migrations, app_user=self.config.database.user,
                                progress=progress)

    # ---- fencing and rejoining ------------------------------------------------------------------
    def stop_node(self, name: str, timeout: float = 30) -> bool:
        """Stop a node's container (the fence of an old primary); False when none was running."""
        found = self.host.container(f"db-{name}")
        if found is None or found.status not in ("running", "restarting"):
            return False
        found.stop(timeout=int(timeout))
        return True

    def fence(self, name: str, progress: Progress = _noop) -> bool:
        """Make sure node `name` runs no postmaster: stop its container (docker stop: SIGINT, a fast
        shutdown) and take away its restart policy, so neither a crash nor a dockerd restart brings it
        back (the next `up` starts it again, as a replica only). False when it has no container."""
        found = self.host.container(f"db-{name}")
        if found is None:
            return False
        if found.status in ("running", "restarting", "paused"):
            progress(f"{name}: stopping container {found.name}")
            self.stop_node(name)
        found.update(restart_policy={"Name": "no"})
        found.reload()
        if found.status in ("running", "restarting", "paused"):
            progress(f"{name}: container {found.name} did not stop; killing it")
            found.kill()
            found.reload()
        return found.status not in ("running", "restarting", "paused")

    def rejoin(self, name: str, primary_name: str, progress: Progress = _noop) -> str:
        """Rebuild node `name` as a streaming replica of `primary_name`: fence its container, move its
        data directory aside inside its volume (data.before-rejoin-<time>, never deleted: `down --purge`
        removes it with the volume), clone the primary with pg_basebackup -R into a fresh container,
        and wait until it streams. Returns the method."""
        from ragops.db.connect import find_node

        node, primary = find_node(self.config, name), find_node(self.config, primary_name)
        self.fence(name, progress)
        found = self.host.container(self.part(node))
        if found is not None:
            found.remove(force=True)
        kept = self._move_data_aside(node, progress) if self._has_volume(node) else None
        self._drop_stale_slot(primary, node)
        self._start(node, "replica", progress, source=primary)
        self._wait_reachable(node)
        self._wait_streaming(node)
        where = f"; its former data kept as {kept}" if kept else ""
        return f"pg_basebackup from {primary.name} into a new container{where}"

    def _move_data_aside(self, node: DbNode, progress: Progress) -> str | None:
        """data -> data.before-rejoin-<UTC time> inside the node's volume (a rename: no copy, no delete),
        in a one-shot container of the database image as its own user. Returns `volume:/dir`."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        volume = self.host.name(self.part(node) + "-data")
        aside = f"data.before-rejoin-{stamp}"
        script = 'cd "$1" && if [ -e data ]; then mv data "$2" && echo moved; fi'
        progress(f"{node.name}: keeping its data aside in volume {volume} as {aside}")
        try:
            out = self.host.client.containers.run(
                self.settings.image, entrypoint=["/bin/sh", "-c", script, "sh", PGDATA_ROOT, aside],
                volumes={volume: {"bind": PGDATA_ROOT, "mode": "rw"}}, network_mode="none", remove=True,
                labels=self.host.labels("database-tool", node=node.name),
                name=self.host.name(f"{self.part(node)}-rejoin"))
        except Exception as exc:  # noqa: BLE001 - docker API errors: one line naming the node
            from ragops.platforms.docker_host import error_text

            raise OperationFailed(f"database node {node.name}: could not move its data aside in volume {volume}: "
                                  f"{error_text(exc)}; nothing was deleted") from None
        return f"{volume}:{PGDATA_ROOT}/{aside}" if b"moved" in (out or b"") else None

    def _wait_streaming(self, node: DbNode) -> None:
        from ragops.db.connect import connect, node_dsn

        deadline = time.monotonic() + self.settings.start_timeout
        while time.monotonic() < deadline:
            try:
                with connect(node_dsn(self.config, node, dbname="postgres", connect_timeout=2)) as conn:
                    row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
                if row and row[0] == "streaming":
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.3)
        raise OperationFailed(f"database node {node.name} started but is not streaming after "
                              f"{self.settings.start_timeout:.0f}s", hint=f"docker logs {self.host.name(self.part(node))}")
