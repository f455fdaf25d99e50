"""The local platform: everything as processes on this machine.

Layout under the state directory (default .ragops/<env>/):
  db/<node>/            PostgreSQL data directories (pgserver binaries unless database.bin_dir)
  router/               the router's config (router.kind): Traefik's static config with router/dynamic/
                        holding only the watched dynamic file, or haproxy.cfg plus its runtime socket
  run/  logs/           pid files and logs of every process ragops started
  colors/<color>.json   what a color was started with (version, port, deploy id) — a cache;
                        the process table and the router's config are the source of truth
  secrets/              generated local secrets (db password, API key), mode 0600

A failover "region" other than the default gets its own router and service ports from
`regions.<name>` and its own sub-directory, so a whole region failover runs on one machine.
"""
from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from ragops.config import Config
from ragops.errors import OperationFailed
from ragops.events import quiet as _noop
from ragops.netutil import port_open, split_host_port
from ragops.platforms.base import COLORS, ColorState, Platform, Progress, probe_color, with_weights
from ragops.platforms.file_lock import FileLock
from ragops.platforms.service_env import service_env
from ragops.private_fs import private_dirs
from ragops.process import ManagedProcess
from ragops.routing import FileStore, Router, get_router
from ragops.routing.base import PeopleRouting

ROUTER_NAMES = {"traefik": "Traefik", "haproxy": "HAProxy"}   # for plans


class LocalPlatform(Platform):
    name = "local"
    generates_local_secrets = True
    owns_database_files = True
    runs_migrations_in_preflight = True
    supports_regions = True
    runs_service_from_source = True
    #: `up` starts a supervisor that restarts a dead router or live color (ragops/supervisor.py)
    supervised = True

    def __init__(self, config: Config, region: str | None = None):
        self.config = config
        self.region = region if region and self._is_secondary(region) else None
        base = config.state_dir
        self.base = base / f"region-{self.region}" if self.region else base
        self.run_dir = self.base / "run"
        self.log_dir = self.base / "logs"
        region_cfg = config.env.regions.get(self.region) if self.region else None
        self.router_listen = (region_cfg.router if region_cfg and region_cfg.router else config.router.listen)
        self.router_api = (region_cfg.router_api if region_cfg and region_cfg.router_api else config.router.api)
        self.base_port = (region_cfg.service_port if region_cfg and region_cfg.service_port else config.service.port)

    def _is_secondary(self, region: str) -> bool:
        """The first configured region (or one without its own router) is the default region."""
        regions = self.config.env.regions
        if region not in regions:
            from ragops.errors import ConfigError

            raise ConfigError(f"unknown region {region!r} (regions: {', '.join(regions) or 'none configured'})")
        return regions[region].router is not None and region != next(iter(regions))

    # ---- paths and processes --------------------------------------------------------------
    @property
    def router_dir(self) -> Path:
        return self.base / "router"

    def routers(self) -> list:
        return [self.router]

    @cached_property
    def router(self) -> Router:
        return get_router(self.config.router.kind, listen=self.router_listen, api=self.router_api,
                          store=FileStore(self.router_dir), health_path=self.config.service.readiness_path,
                          log_dir=self.log_dir, colors={c: self.color_url(c) for c in COLORS}, bundled=True,
                          people=PeopleRouting(self.config.deploy.canary_header, self.config.deploy.sticky))

    def proc(self, name: str) -> ManagedProcess:
        return ManagedProcess(name, self.run_dir, self.log_dir)

    def color_port(self, color: str) -> int:
        return self.base_port + COLORS.index(color)

    def color_url(self, color: str) -> str:
        return f"http://127.0.0.1:{self.color_port(color)}"

    def router_url(self) -> str:
        host, port = split_host_port(self.router_listen)
        return f"http://{host}:{port}"

    def journal_dir(self) -> Path:
        path = self.base / "deploy"
        private_dirs(path)
        return path

    def lock_backend(self) -> FileLock:
        return FileLock(self.base / "deploy" / "lock.json")

    def log_file(self, color: str) -> Path:
        return self.log_dir / f"{color}.log"

    def _color_file(self, color: str) -> Path:
        return self.base / "colors" / f"{color}.json"

    # ---- router ---------------------------------------------------------------------------
    def router_running(self) -> bool:
        return self.proc("router").running()

    def start_router(self, progress: Progress = _noop) -> None:
        router = self.router
        if self.router_running() and router.ready():
            return
        host, port = split_host_port(self.router_listen)
        if port_open(host, port):
            raise OperationFailed(f"router.listen {self.router_listen} is already in use by another program",
                                  hint="pick another address in ragops.yaml (router.listen)")
        binary = router.binary()
        root = str(self.router_dir)
        router.prepare(root)
        progress(f"starting router ({router.kind}) on {self.router_listen}")
        self.proc("router").start([binary, *router.start_args(root)], marker=root)
        deadline = time.monotonic() + 20
        while not router.ready():
            if time.monotonic() > deadline or not self.router_running():
                from ragops.process import tail

                raise OperationFailed(f"router did not start on {self.router_listen}: "
                                      f"{tail(self.proc('router').log_file, 3) or 'no log'}")
            time.sleep(0.1)
        # its API answers before it has loaded the routes it was restarted with: until then it says
        # "no available server"; wait until it serves what its config says
        state = router.desired()
        if any(state.weights.values()) or state.maintenance:
            router.confirm(state.weights, 10)

    def stop_router(self) -> None:
        self.proc("router").stop(timeout=10)

    def router_weights(self) -> dict[str, int]:
        live = self.router.live_weights() if self.router_running() else None
        if live is not None:
            return live
        return self.router.desired().weights

    def maintenance(self) -> bool:
        return self.router.desired().maintenance

    def _write_router(self, weights: dict[str, int], maintenance: bool) -> None:
        backends = {c: self.color_url(c) for c in COLORS if self.proc(c).running() or weights.get(c, 0) > 0}
        self.router.apply(backends, weights, maintenance)

    def set_weights(self, weights: dict[str, int], *, confirm_timeout: float = 10.0) -> float:
        weights = {c: int(weights.get(c, 0)) for c in COLORS}
        maintenance = self.maintenance()
        self._write_router(weights, maintenance=maintenance)
        if maintenance:
            return 0.0
        return self.router.confirm(weights, confirm_timeout)

    def set_maintenance(self, on: bool) -> None:
        """Maintenance on: the router answers 503 to everything, weights are kept for later.
        Returns once the running router serves the change (either way: the next request after
        maintenance off must reach the service, and none may reach it after maintenance on)."""
        weights = self.router.desired().weights
        self._write_router(weights, maintenance=on)
        if self.router_running():
            self.router.confirm(weights, 10)

    def refresh_backends(self) -> None:
        """Rewrite the router config so it lists every running color (weights unchanged)."""
        state = self.router.desired()
        self._write_router(state.weights, state.maintenance)

    # ---- service colors -------------------------------------------------------------------
    def start_color(self, color: str, version: str, *, deploy_id: str, env: dict[str, str] | None = None,
                    progress: Progress = _noop) -> ColorState:
        service_dir = self.config.resolve_path(self.config.service.path)
        if not (service_dir / "ragservice").is_dir():
            raise OperationFailed(f"service.path: {service_dir} does not hold the bundled service (ragservice/)")
        port = self.color_port(color)
        # also when its server died: its workers (and any child it left) must not outlive it
        self.stop_color(color, drain_timeout=self.config.deploy.drain_timeout, progress=progress)
        if port_open("127.0.0.1", port):
            raise OperationFailed(f"port {port} for color {color} is in use by another program",
                                  hint="change service.port in ragops.yaml")
        full_env = service_env(self.config, color, version, env, deploy_id)
        full_env["PYTHONPATH"] = str(service_dir) + os.pathsep + os.environ.get("PYTHONPATH", "")
        progress(f"starting {color} ({version}) on 127.0.0.1:{port}")
        pid = self.proc(color).start([sys.executable, "-m", "ragservice.serve", "--host", "127.0.0.1",
                                      "--port", str(port)], env=full_env, cwd=service_dir,
                                     marker=f"--port {port}")
        for index in range(self.config.service.workers):
            self.proc(f"{color}-worker-{index + 1}").start(
                [sys.executable, "-m", "ragservice.worker", "--name", f"{color}-worker-{index + 1}"],
                env=full_env, cwd=service_dir, marker=f"{color}-worker-{index + 1}")
        record = {"color": color, "version": version, "port": port, "pid": pid, "deploy_id": deploy_id,
                  "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "env": {k: v for k, v in (env or {}).items()}}
        path = self._color_file(color)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))
        self.refresh_backends()
        return self.color_state(color)

    def stop_color(self, color: str, *, drain_timeout: float, progress: Progress = _noop) -> None:
        """SIGTERM: uvicorn stops accepting and lets in-flight requests finish (up to drain_timeout)."""
        self._mark_stopped(color)     # before it dies: the supervisor must not bring it back
        for index in range(max(self.config.service.workers, 4)):
            self.proc(f"{color}-worker-{index + 1}").stop(timeout=10)
        running = self.proc(color).running()
        if running:
            progress(f"stopping {color} (graceful, up to {drain_timeout:.0f}s)")
        # stop() also kills what is left of the group of a server that was killed
        if self.proc(color).stop(timeout=drain_timeout + 2):
            progress(f"{color} did not stop in time and was killed")
        if running and self.router_running() and self.router.desired().weights.get(color, 0) == 0:
            self.refresh_backends()

    def _mark_stopped(self, color: str) -> None:
        """A color stopped on purpose (deploy, runbook): the supervisor does not bring it back."""
        path = self._color_file(color)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if not record.get("stopped_at"):
            record["stopped_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            path.write_text(json.dumps(record, indent=2))

    def stopped_on_purpose(self, color: str) -> bool:
        try:
            return bool(json.loads(self._color_file(color).read_text()).get("stopped_at"))
        except (OSError, ValueError):
            return False

    def color_state(self, color: str, probe: bool = True) -> ColorState:
        pid = self.proc(color).pid()
        try:
            record = json.loads(self._color_file(color).read_text())
        except (OSError, ValueError):
            record = {}
        state = ColorState(color=color, running=pid is not None, pid=pid, port=self.color_port(color),
                           url=self.color_url(color), version=record.get("version"),
                           deploy_id=record.get("deploy_id"), started_at=record.get("started_at"),
                           env=record.get("env") or {})
        if pid is not None and probe and state.url:
            found = probe_color(state.url, self.config.service)
            state.healthy, state.ready, state.detail = found.healthy, found.ready, found.detail
            state.version = found.version or state.version
        return state

    def colors(self) -> list[ColorState]:
        weights = self.router_weights() if self.router_running() else {}
        return with_weights([self.color_state(color) for color in COLORS], weights)

    def logs(self) -> dict[str, Path]:
        names = {"router": self.log_dir / "router.log", "router-access": self.log_dir / "router-access.log"}
        for color in COLORS:
            names[color] = self.log_file(color)
            for index in range(self.config.service.workers):
                names[f"{color}-worker-{index + 1}"] = self.log_dir / f"{color}-worker-{index + 1}.log"
        return names

    # ---- up / down ------------------------------------------------------------------------
    def up(self, progress: Progress = _noop) -> list[str]:
        """Database nodes, migrations, router, then what was live restored (never another version);
        a first color with 100 % only when nothing was ever routed. Then the supervisor."""
        from ragops.db.bringup import database_up, migrate

        steps = database_up(self.config, progress)
        steps += [f"migrate {name}" for name in migrate(self.config, progress)]
        from ragops.pitr.archive import start_archive
        from ragops.supervisor import restoring

        steps += start_archive(self, progress) if not self.region else []   # the WAL archive (ragops/pitr)

        if not self.region:   # before the colors, so their first spans have somewhere to go
            from ragops.monitoring import tracing

            steps += tracing.ensure(self, progress)         # monitoring.tracing: local
        with restoring(self):     # the supervisor may be restarting it right now
            if not self.router_running():
                self.start_router(progress)
                steps.append("start router")
        steps += self.restore_live(progress)
        if not self.region:
            from ragops.monitoring import local as monitoring

            steps += monitoring.ensure(self, progress)      # monitoring.prometheus: local
        if self.supervised and not self.region:
            from ragops.supervisor import ensure_supervisor

            steps += ensure_supervisor(self, progress)
        return steps

    def was_live(self) -> dict[str, int]:
        """The weights the router was last given (its config file), else the journal's last deploy."""
        configured = {c: w for c, w in self.router.desired().weights.items() if w > 0}
        if configured:
            return configured
        from ragops.deploy.history import Journal

        done = [r for r in Journal(self.journal_dir()).history() if r.get("result") == "succeeded"]
        return {done[-1]["to_color"]: 100} if done and done[-1].get("to_color") else {}

    def restore_live(self, progress: Progress = _noop, *, skip_stopped: bool = False) -> list[str]:
        """Restart a live color that died with the version it ran, and give the router its weights back.
        `skip_stopped` (the supervisor): leave a color that was stopped on purpose."""
        from ragops.readiness import wait_ready
        from ragops.supervisor import restoring

        with restoring(self):
            return self._restore_live(progress, wait_ready, skip_stopped)

    def _restore_live(self, progress: Progress, wait_ready, skip_stopped: bool) -> list[str]:
        steps = []
        live = self.was_live()
        if not live:   # nothing was ever routed here: the first color, with service.version
            running = [c for c in self.colors() if c.running and c.ready]
            live = {running[0].color if running else "blue": 100}
        for color in live:
            state = self.color_state(color, probe=False)
            if state.running or (skip_stopped and self.stopped_on_purpose(color)):
                continue
            version = state.version or self.config.service.version
            if state.version:
                progress(f"restoring {color} ({version}): it was live before")
            self.start_color(color, version, deploy_id=state.deploy_id or f"up-{uuid.uuid4().hex[:8]}",
                             env=state.env, progress=progress)
            steps.append(f"start {color} {version}" + (" (it was live)" if state.version else ""))
            wait_ready(self, color, self.config.service.startup_timeout, progress)
        if {c: w for c, w in self.router_weights().items() if w} != live:
            self.set_weights(live)
            steps.append("route " + ", ".join(f"{w}% to {c}" for c, w in sorted(live.items())))
        return steps

    def plan_up(self) -> list[str]:
        from ragops.db.bringup import database_manager

        config, db = self.config, self.config.database
        manager = database_manager(config)   # Patroni: etcd, one Patroni per node, the endpoint, the fences
        nodes = (manager.plan() if manager is not None else
                 [f"database: primary {db.primary.name} on {db.primary.host}:{db.primary.port}"]
                 + [f"database: replica {r.name} on {r.host}:{r.port} (pg_basebackup -R)" for r in db.replicas])
        return (nodes
                + [f"database: role {db.user}, database {db.name}, migrations from {config.service.path}/migrations",
                   f"router: {ROUTER_NAMES.get(config.router.kind, config.router.kind)} on {self.router_listen} "
                   f"(API {self.router_api})",
                   f"service: blue {config.service.version} on 127.0.0.1:{self.base_port}, 100% traffic"])

    def down(self, purge: bool = False, progress: Progress = _noop) -> list[str]:
        """Stop the colors and routers of every region, then the database nodes (data kept)."""
        from ragops.db.bringup import database_down

        steps = []
        from ragops.supervisor import stop_supervisor

        if stop_supervisor(self):    # first, or it would restart what is stopped next
            steps.append("stop supervisor")
        from ragops.monitoring import local as monitoring

        if monitoring.stop(self):
            steps.append("stop prometheus")
        from ragops.monitoring import tracing

        if tracing.stop(self):
            steps.append("stop jaeger")
        regions = [None] + [r for r in self.config.env.regions if LocalPlatform(self.config, r).region]
        for region in regions:
            platform = LocalPlatform(self.config, region)
            where = f" ({region})" if region else ""
            for color in COLORS:
                was_running = platform.proc(color).running()
                # also a dead color: its workers and leftover children are stopped
                platform.stop_color(color, drain_timeout=self.config.deploy.drain_timeout, progress=progress)
                if was_running:
                    steps.append(f"stop {color}{where}")
            if platform.router_running():
                progress(f"stopping router{where}")
                platform.stop_router()
                steps.append(f"stop router{where}")
        steps += database_down(self.config, progress)
        from ragops.pitr.archive import stop_archive

        steps += stop_archive(self, progress)   # after the database: its last segments are shipped
        if purge:
            from ragops.pg.pgctl import remove_server_home

            home = remove_server_home(self.config)   # as root: the server account's data, logs, binaries
            if home is not None:
                steps.append(f"delete {home}")
        if purge:
            from ragops.purge import purge_state_dir

            steps += purge_state_dir(self.config)   # backups and their key are kept (--purge-backups)
        return steps
