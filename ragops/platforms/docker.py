"""The docker platform: the service as containers on one or several Docker hosts.

Per host (`hosts:` in ragops.yaml: `local`, `unix:///path`, `ssh://user@host[:port]`):
  <instance>            a docker network (bridge) labelled ragops.*; colors and accessories join it
                        in bridge mode (docker.network_mode: host shares the host's network instead)
  <instance>-router     Traefik, file provider on <dir>/router/dynamic (bind-mounted read-only);
                        the image is router.image (default the official one; any image with the
                        binary at /usr/local/bin/traefik works, e.g. the FROM-scratch test image)
  <instance>-blue|green the service colors: image <service.image>:<version>, labels
                        ragops.project/env/instance/role/color/version/deploy_id/started_at
  <instance>-<accessory> optional accessories (PostgreSQL, Redis...), on the first host by default
where <instance> is <project>-<env> (plus docker.host_settings.<host>.name_suffix when two "hosts"
share one engine, as in the tests). <dir> is state_dir/docker/<instance> for the local engine and
<docker.remote_dir>/<instance> on ssh hosts; it also holds the host's deploy lock (lock.json).

The source of truth for `status` is the engine (container labels and state) and each host's
router (Traefik's API, else its dynamic file). The journal under state_dir is a cache.

Only the router publishes ports (router.listen and router.api, 127.0.0.1 by default). How ragops
reaches a color or a database container directly (readiness, smoke, /metrics, drain, db status,
backups, migrations, failover, drills) is DockerHost.dial, one function:
  - bridge networking: the container's address on the environment's network, nothing published:
    directly on a local engine (`local`, `unix://`: this machine routes to its bridge networks),
    through a tunnel over the verified ssh connection on an ssh host (its sshd connects to the
    address: AllowTcpForwarding must not be limited to loopback by PermitOpen);
  - network_mode: host: the ports the containers listen on, on the host's 127.0.0.1 (blue
    service.port, green service.port+1, database nodes their `port`; tunnelled for ssh hosts).
Traefik's API (router.api, 127.0.0.1) is reached through DockerHost.reach (tunnelled for ssh hosts).
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ragops.config import Config
from ragops.errors import OperationFailed
from ragops.events import quiet as _noop
from ragops.netutil import split_host_port
from ragops.platforms.base import COLORS, ColorState, Platform, Progress, probe_color, with_weights
from ragops.platforms.docker_host import LABEL, DockerHost, error_text, utc_now
from ragops.platforms.service_env import service_env

if TYPE_CHECKING:
    from ragops.config import DbNode
    from ragops.platforms.docker_db import DockerDatabase

_SHARED: dict[int, tuple[Config, DockerPlatform]] = {}   # DockerPlatform._shared


class DockerPlatform(Platform):
    name = "docker"
    #: an unset database password / API key / backup key is generated under the state dir (and the
    #: database containers get it as a mounted file), as on local
    generates_local_secrets = True
    #: a failover region with its own `router` runs its own router and colors (<instance>-<region>)
    #: on the environment's network, in front of the same database containers
    supports_regions = True

    def __init__(self, config: Config, region: str | None = None):
        self.config = config
        self.region = region if region and self._is_secondary(region) else None
        if not config.env.hosts:
            raise OperationFailed(f"environments.{config.env_name}.hosts: no docker host configured")
        self.hosts = [DockerHost(self, spec, index) for index, spec in enumerate(config.env.hosts)]
        self.primary = self.hosts[0]

    def routers(self) -> list:
        return [host.router for host in self.hosts]

    def _is_secondary(self, region: str) -> bool:
        """As on local: the first configured region (or one without its own router) is the default."""
        regions = self.config.env.regions
        if region not in regions:
            from ragops.errors import ConfigError

            raise ConfigError(f"unknown region {region!r} (regions: {', '.join(regions) or 'none configured'})")
        return regions[region].router is not None and region != next(iter(regions))

    def secondary_regions(self) -> list[str]:
        regions = self.config.env.regions
        return [name for name in regions if regions[name].router is not None and name != next(iter(regions))]

    @cached_property
    def database(self) -> DockerDatabase | None:
        """The database containers (database.accessories), on the first host; None with database.dsn."""
        from ragops.platforms.docker_db import DockerDatabase, enabled

        return DockerDatabase(self.config, self.primary) if enabled(self.config) else None

    def __del__(self):
        for host in getattr(self, "hosts", []):
            try:
                host.close()
            except Exception:  # noqa: BLE001
                pass

    # ---- database nodes -------------------------------------------------------------------------
    def fence_database_node(self, node: str, progress: Progress = _noop) -> bool:
        """The node's container stopped, its restart policy taken away (database containers only)."""
        return self.database is not None and self.database.fence(node, progress)

    @classmethod
    def rejoins_database_nodes(cls, config: Config) -> bool:
        """The database containers (database.accessories) are rebuilt by rejoin_database_node."""
        from ragops.platforms.docker_db import enabled

        return enabled(config)

    def rejoin_database_node(self, node: str, primary: str, progress: Progress = _noop) -> str | None:
        """A fresh clone of `primary` in the node's container; its former data kept aside in its volume."""
        return None if self.database is None else self.database.rejoin(node, primary, progress)

    # ---- addresses ----------------------------------------------------------------------------
    @classmethod
    def database_address(cls, config: Config, node: DbNode) -> tuple[str, int]:
        """Database containers: DockerHost.dial (the container's address on the environment's network
        on a local engine); an external database (database.dsn): as configured."""
        database = cls._shared(config).database
        return (node.host, node.port) if database is None else database.dial(node)

    @classmethod
    def database_node_at(cls, config: Config, host: str | None, port: int | None) -> str | None:
        """Replicas stream from `<network>-db-<node>:5432` (bridge mode)."""
        database = cls._shared(config).database
        return None if database is None else database.node_at(host, port)

    @classmethod
    def _shared(cls, config: Config) -> DockerPlatform:
        """One platform per loaded config for database_address, kept for the process: its engine
        client and ssh tunnels outlive each connection string they served."""
        entry = _SHARED.get(id(config))
        if entry is None or entry[0] is not config:
            entry = _SHARED[id(config)] = (config, cls(config))
        return entry[1]

    @classmethod
    def wal_spool_dir(cls, config: Config) -> Path | None:
        """The database containers archive into <host dir>/wal-spool (ragops/platforms/docker_wal.py)."""
        from ragops.platforms.docker_wal import SPOOL

        host = cls._shared(config).primary
        return None if host.is_ssh else Path(host.dir.path(SPOOL))

    @classmethod
    def wal_spool(cls, config: Config):
        """On an ssh host the spool is there: the shipper reads it through SFTP (docker_wal.SftpSpool)."""
        from ragops.platforms.docker_wal import SftpSpool, remote_spool

        host = cls._shared(config).primary
        return SftpSpool(host, remote_spool(config, host)) if host.is_ssh else None

    # ---- the WAL archive (ragops/pitr) -----------------------------------------------------------
    def proc(self, name: str):
        """A ragops process of this environment on this machine (the WAL shipper)."""
        from ragops.process import ManagedProcess

        return ManagedProcess(name, self.config.state_dir / "run", self.config.state_dir / "logs")

    def _archiving(self) -> bool:
        from ragops.platforms.docker_wal import active

        return self.region is None and self.database is not None and active(self.config, self.primary)

    def _start_archive(self, progress: Progress) -> list[str]:
        """The containers were started with the archive settings (DockerDatabase._start); ship the spool."""
        from ragops.pitr.archive import SHIPPER, ensure_shipper, stop_archive

        if not self._archiving():   # switched off since the last `up`: drain the spool, stop the shipper
            return stop_archive(self, progress) if self.region is None and self.proc(SHIPPER).running() else []
        return ensure_shipper(self, progress)

    def check_release(self, version: str) -> None:
        from ragops.platforms.docker_release import require_release_image

        require_release_image(self, version)

    def image_ref(self, version: str) -> str:
        repo = self.config.service.image or f"{self.config.project}/rag-service"
        return f"{repo}:{version}"

    def color_url(self, color: str) -> str:
        return self.primary.color_url(color)

    def color_urls(self, color: str) -> list[tuple[str | None, str]]:
        """(host, direct URL) for every host: readiness and smoke run against each one."""
        return [(host.label, host.color_url(color)) for host in self.hosts]

    def router_url(self) -> str:
        host, port = split_host_port(self.primary.router_listen)
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    def journal_dir(self) -> Path:
        base = self.config.state_dir / f"region-{self.region}" if self.region else self.config.state_dir
        path = base / "deploy"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def lock_backend(self):
        from ragops.platforms.docker_hosts import DirLock, MultiHostLock

        return MultiHostLock([(host.label, DirLock(host.dir)) for host in self.hosts])

    # ---- router -------------------------------------------------------------------------------
    def start_router(self, progress: Progress = _noop) -> None:
        """Start each host's router when it is not running (failover starts a region's this way)."""
        for host in self.hosts:
            if not host.host_network:
                host.ensure_network(progress)
            host.start_router(progress)

    def router_running(self) -> bool:
        return all(host.router_running() for host in self.hosts)

    def router_weights(self) -> dict[str, int]:
        host = self.primary
        live = host.router.live_weights() if host.router_running() else None
        if live is not None:
            return live
        return host.router.desired().weights

    def maintenance(self) -> bool:
        return self.primary.router.desired().maintenance

    def set_weights(self, weights: dict[str, int], *, confirm_timeout: float = 10.0) -> float:
        """Write every host's router config, then confirm each through its API. If one host fails,
        every host gets its previous config back and the error names the host."""
        weights = {c: int(weights.get(c, 0)) for c in COLORS}
        previous = {host.label: host.router.snapshot() for host in self.hosts}
        maintenance = self.maintenance()
        written: list[DockerHost] = []
        failed_host, failure = None, ""
        took = 0.0
        try:
            for host in self.hosts:
                failed_host = host
                host.write_router(weights, maintenance)
                written.append(host)
            if maintenance:
                return 0.0
            for host in self.hosts:
                failed_host = host
                took = max(took, host.router.confirm(weights, confirm_timeout))
            return took
        except Exception as exc:  # noqa: BLE001 - roll every host back, then report
            failure = exc.message if isinstance(exc, OperationFailed) else error_text(exc)
            restored = []
            for host in written:
                try:
                    data = previous.get(host.label)
                    if data is not None:
                        host.router.restore(data)
                        restored.append(host.label)
                except Exception:  # noqa: BLE001 - best effort; the error below says which
                    pass
            # "restored" means served again: wait for each running router but the failed one to pick it up
            for host in written:
                if host.label in restored and host is not failed_host and not maintenance:
                    try:
                        host.router.confirm(host.router.desired().weights, confirm_timeout)
                    except Exception:  # noqa: BLE001 - best effort, as above
                        pass
            raise OperationFailed(f"host {failed_host.label if failed_host else '?'}: {failure}; previous router "
                                  f"config restored on {', '.join(restored) or 'no host'}") from None

    def set_maintenance(self, on: bool) -> None:
        """Returns once every running router serves the change, as on local: the next request
        after maintenance off must reach the service, and none may reach it after maintenance on."""
        for host in self.hosts:
            host.write_router(host.router.desired().weights, maintenance=on)
        for host in self.hosts:
            if host.router_running():
                host.router.confirm(host.router.desired().weights, 10)

    def refresh_backends(self) -> None:
        for host in self.hosts:
            state = host.router.desired()
            host.write_router(state.weights, state.maintenance)

    # ---- colors -------------------------------------------------------------------------------
    def start_color(self, color: str, version: str, *, deploy_id: str, env: dict[str, str] | None = None,
                    progress: Progress = _noop) -> ColorState:
        """Start `color` on every host; if one host fails, the color is removed from all of them."""
        image = self.image_ref(version)
        full_env = service_env(self.config, color, version, env, deploy_id)
        if self.database is not None and "RAG_DATABASE_URL" not in (env or {}):
            full_env["RAG_DATABASE_URL"] = self.database.app_dsn()   # the nodes by name on the network
        labels = {f"{LABEL}.version": version, f"{LABEL}.deploy_id": deploy_id, f"{LABEL}.started_at": utc_now(),
                  f"{LABEL}.image": image, f"{LABEL}.overrides": json.dumps(env or {}, sort_keys=True)}
        for host in self.hosts:
            try:
                host.start_color(color, version, image, full_env, labels, progress)
            except Exception as exc:  # noqa: BLE001 - undo on every host, name the one that failed
                reason = exc.message if isinstance(exc, OperationFailed) else error_text(exc)
                for other in self.hosts:
                    try:
                        other.stop_color(color, drain_timeout=2, progress=progress)
                    except Exception:  # noqa: BLE001
                        pass
                raise OperationFailed(f"host {host.label}: could not start {color} ({version}): {reason}; "
                                      f"{color} was removed from all {len(self.hosts)} host(s)") from None
        self.refresh_backends()
        return self.color_state(color, probe=False)

    def stop_color(self, color: str, *, drain_timeout: float, progress: Progress = _noop) -> None:
        for host in self.hosts:
            host.stop_color(color, drain_timeout, progress)
            if host.router_running():
                state = host.router.desired()
                if state.weights.get(color, 0) == 0:
                    host.write_router(state.weights, state.maintenance)

    def color_state(self, color: str, probe: bool = True) -> ColorState:
        import httpx

        primary = self.primary.container(color)
        labels = primary.labels if primary else {}
        host_port = self.primary.color_port(color) if self.primary.host_network else None   # bridge: none
        state = ColorState(color=color, running=False, port=host_port,
                           url=self.color_url(color), version=labels.get(f"{LABEL}.version"),
                           deploy_id=labels.get(f"{LABEL}.deploy_id"), started_at=labels.get(f"{LABEL}.started_at"))
        try:
            state.env = json.loads(labels.get(f"{LABEL}.overrides") or "{}")
        except ValueError:
            state.env = {}
        problems, running = [], True
        for host in self.hosts:
            found = primary if host is self.primary else host.container(color)
            if found is None:
                running = False
                if host is not self.primary or len(self.hosts) > 1:
                    problems.append(f"{host.label}: no container")
                continue
            if found.status != "running":
                running = False
                code = found.attrs.get("State", {}).get("ExitCode")
                problems.append(f"{host.label}: {found.status}" + (f" (exit code {code})" if code else ""))
            elif found.labels.get(f"{LABEL}.version") != state.version:
                problems.append(f"{host.label}: runs {found.labels.get(f'{LABEL}.version')}, not {state.version}")
        state.running = running and primary is not None
        if primary is not None:
            state.pid = primary.attrs.get("State", {}).get("Pid") or None
        if state.running and probe:
            service = self.config.service
            healthy = ready = True
            with httpx.Client(timeout=1.5) as client:
                for host in self.hosts:
                    found = probe_color(host.color_url(color), service, client)
                    healthy &= found.healthy
                    ready &= found.ready
                    if found.detail:
                        problems.append(f"{host.label}: {found.detail}")
                    if host is self.primary and found.version:
                        state.version = found.version
            state.healthy, state.ready = healthy, ready
        if problems:
            state.detail = "; ".join(problems)
        return state

    def colors(self) -> list[ColorState]:
        weights = self.router_weights() if self.primary.router_running() else {}
        return with_weights([self.color_state(color) for color in COLORS], weights)

    # ---- up / down / logs ---------------------------------------------------------------------
    def _migrate(self, progress: Progress) -> list[str]:
        """With an external database (database.dsn), apply pending migrations from here."""
        if not self.config.database.dsn:
            progress("database: no database.dsn; migrations are left to the database's owner")
            return []
        from ragops.db.connect import app_dsn
        from ragops.pg.migrate import apply_migrations

        migrations = self.config.resolve_path(self.config.service.path) / "migrations"
        try:
            return apply_migrations(app_dsn(self.config), migrations, app_user=None, progress=progress)
        except OperationFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - psycopg errors: one line
            raise OperationFailed(f"database.dsn: migrations failed: {error_text(exc)}") from None

    def up(self, progress: Progress = _noop) -> list[str]:
        import uuid

        from ragops.readiness import wait_ready

        steps: list[str] = []
        self._archiving()    # backups.wal.spool_dir with an ssh host is refused before any change
        for host in self.hosts:
            if host.ensure_network(progress):
                steps.append(f"network {host.instance} on {host.label}")
        for name, spec in self.config.env.docker.accessories.items():
            host = next(h for h in self.hosts if h.spec == (spec.host or self.primary.spec))
            if host.start_accessory(name, spec, progress):
                steps.append(f"accessory {name} on {host.label}")
        if self.database is not None:
            steps += self.database.up(progress)
            steps += self._start_archive(progress)
        else:
            steps += [f"migrate {name}" for name in self._migrate(progress)]
        for host in self.hosts:
            if host.start_router(progress):
                steps.append(f"router on {host.label}")
        colors = self.colors()
        if not [c for c in colors if c.running and c.weight > 0]:
            running = [c for c in colors if c.running and c.ready]
            if running:
                color = running[0].color
            else:
                color = "blue"
                version = self.config.service.version
                self.start_color(color, version, deploy_id=f"up-{uuid.uuid4().hex[:8]}", progress=progress)
                steps.append(f"start blue {version}")
                try:
                    for label, url in self.color_urls(color):
                        wait_ready(self, color, self.config.service.startup_timeout, progress, url=url, where=label)
                except OperationFailed:
                    self.stop_color(color, drain_timeout=2, progress=progress)
                    raise
            self.set_weights({color: 100})
            steps.append(f"route 100% to {color}")
        return steps

    def plan_up(self) -> list[str]:
        config = self.config
        lines = [f"network {host.instance} on {host.label}" for host in self.hosts]
        for name, spec in config.env.docker.accessories.items():
            lines.append(f"accessory {name} ({spec.image}) on {spec.host or self.primary.label}")
        if self.database is not None:
            lines += self.database.plan()
            if self._archiving():
                from ragops.platforms.docker_wal import remote_spool, spool_path

                host = self.primary
                where = f"{host.label}:{remote_spool(self.config, host)}" if host.is_ssh else spool_path(self.config, host)
                lines.append(f"WAL archive: every database node archives into {where}, a shipper process sends it "
                             f"to {self.config.backups.storage}")
            lines.append(f"database: migrations from {config.service.path}/migrations applied on the primary")
        else:
            lines.append(f"database: migrations from {config.service.path}/migrations applied through "
                         f"database.dsn" if config.database.dsn else
                         "database: no database.dsn; migrations are left to its owner")
        lines += [f"router: {config.router.image} on {host.label}, listening on {host.router_listen}"
                  for host in self.hosts]
        lines.append(f"service: blue {self.image_ref(config.service.version)} on "
                     f"{', '.join(h.label for h in self.hosts)}, 100% traffic (when no color serves yet)")
        return lines

    def down(self, purge: bool = False, progress: Progress = _noop) -> list[str]:
        """Remove what ragops created (found by its labels) and nothing else; the secondary regions'
        routers and colors first (they share the environment's network)."""
        steps: list[str] = []
        if self.region is None:
            for region in self.secondary_regions():
                steps += DockerPlatform(self.config, region=region).down(purge=False, progress=progress)
        for host in self.hosts:
            owned = host.owned()
            order = {"worker": 0, "color": 1, "router": 2, "accessory": 3, "database": 4}
            for container in sorted(owned, key=lambda c: order.get(c.labels.get(f"{LABEL}.role"), 9)):
                role = container.labels.get(f"{LABEL}.role")
                timeout = self.config.deploy.drain_timeout if role == "color" else 30 if role == "database" else 10
                progress(f"{host.label}: removing {container.name}")
                host._stop(container, timeout)
                steps.append(f"remove {container.name} ({host.label})")
            if host is self.primary and self.region is None:
                from ragops.pitr.archive import stop_archive

                steps += stop_archive(self, progress)   # after the database: its last segments are shipped
            if self.region is not None:
                if purge:
                    host.dir.remove_tree()
                continue
            for network in host.client.networks.list(filters=host.filters()):
                network.remove()
                steps.append(f"remove network {network.name} ({host.label})")
            if purge:
                for volume in host.client.volumes.list(filters=host.filters()):
                    volume.remove(force=True)
                    steps.append(f"remove volume {volume.name} ({host.label})")
                host.dir.remove_tree()
                steps.append(f"delete {host.dir.root} ({host.label})")
        if purge:
            from ragops.pg.pgctl import remove_server_home
            from ragops.purge import purge_state_dir

            home = remove_server_home(self.config)   # as root: what a physical restore or verify copied there
            if home is not None:
                steps.append(f"delete {home}")

            steps += purge_state_dir(self.config)   # backups and their key are kept (--purge-backups)
        return steps

    def logs(self) -> dict[str, Path]:
        """A snapshot of each container's log (docker logs) under state_dir/logs, by component."""
        directory = self.config.state_dir / "logs"
        directory.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {}
        for host in self.hosts:
            for container in host.owned():
                part = container.name[len(host.instance) + 1:]
                key = part if host is self.primary else f"{part}@{host.suffix or host.index}"
                path = directory / f"{key.replace('@', '-at-')}.log"
                try:
                    path.write_bytes(container.logs(tail=2000, timestamps=False))
                except Exception:  # noqa: BLE001 - a container removed meanwhile
                    continue
                files[key] = path
        return files
