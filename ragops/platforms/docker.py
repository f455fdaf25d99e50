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

How ragops reaches a color directly (readiness, smoke, /metrics, drain): each color's port is bound
on 127.0.0.1 of its host (blue service.port, green service.port+1; published from the container in
bridge mode, listened on directly in host mode). For ssh hosts ragops tunnels to it over the
verified ssh connection; Traefik's API (router.api, also 127.0.0.1) is reached the same way.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from ragops.config import Config
from ragops.errors import OperationFailed
from ragops.netutil import split_host_port
from ragops.platforms.base import COLORS, ColorState, Platform, Progress, probe_color, service_env, with_weights
from ragops.routing import traefik

CONTAINER_PORT = 8000               # the service image's port in bridge mode
ROUTER_WEB, ROUTER_API = 8080, 8081  # Traefik's entrypoints inside the container in bridge mode
LABEL = "ragops"


def _noop(_: str) -> None:
    pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _error_text(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())[:300]


class DockerHost:
    """One engine: its client, its ragops directory, its router and color ports."""

    def __init__(self, platform: "DockerPlatform", spec: str, index: int):
        self.platform = platform
        self.config = platform.config
        self.spec = spec
        self.index = index
        settings = self.config.env.docker.host_settings.get(spec)
        router = self.config.router
        self.suffix = settings.name_suffix if settings and settings.name_suffix else ""
        self.instance = f"{self.config.project}-{self.config.env_name}" + (f"-{self.suffix}" if self.suffix else "")
        self.router_listen = settings.router_listen if settings and settings.router_listen else router.listen
        self.router_api = settings.router_api if settings and settings.router_api else router.api
        self.service_port = settings.service_port if settings and settings.service_port else self.config.service.port
        self.is_ssh = spec.startswith("ssh://")
        self._ssh = None
        self._tunnels: dict[int, object] = {}

    # ---- connections ---------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.spec

    def _connect_ssh(self):
        from ragops.platforms.docker_hosts import ssh_connect

        env = self.config.env
        key = self.config.resolve_path(env.docker.ssh_key) if env.docker.ssh_key else None
        self._ssh = ssh_connect(self.spec, known_hosts=str(self.config.resolve_path(env.known_hosts))
                                if env.known_hosts else None, trust=env.trust_host_keys,
                                key_file=str(key) if key else None)
        return self._ssh

    @cached_property
    def client(self):
        import docker

        try:
            if self.is_ssh:
                from ragops.platforms.docker_hosts import docker_over_ssh

                ssh = self._ssh or self._connect_ssh()
                client = docker_over_ssh(self.spec, ssh, self._connect_ssh)
            elif self.spec == "local":
                client = docker.DockerClient(base_url="unix:///var/run/docker.sock", version="auto", timeout=120)
            else:
                client = docker.DockerClient(base_url=self.spec, version="auto", timeout=120)
            client.ping()
        except OperationFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - docker/requests errors: name the host
            raise OperationFailed(f"host {self.label}: the Docker Engine does not answer: {_error_text(exc)}",
                                  hint="is dockerd running? (scripts/docker-images.sh starts it)") from None
        return client

    @cached_property
    def dir(self):
        from ragops.platforms.docker_hosts import LocalDir, SftpDir

        if not self.is_ssh:
            return LocalDir((self.config.state_dir / "docker" / self.instance).resolve())
        self.client  # noqa: B018 - connects (and verifies the host key) first
        sftp = self._ssh.open_sftp()
        base = self.config.env.docker.remote_dir
        if not base.startswith("/"):
            base = sftp.normalize(".").rstrip("/") + "/" + base
        return SftpDir(sftp, base.rstrip("/") + "/" + self.instance)

    def reach(self, address: str) -> str:
        """`host:port` on this host's loopback -> a `host:port` this process can connect to."""
        host, port = split_host_port(address)
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if not self.is_ssh:
            return f"{host}:{port}"
        if port not in self._tunnels:
            from ragops.platforms.docker_hosts import Tunnel

            self.client  # noqa: B018
            self._tunnels[port] = Tunnel(self._ssh.get_transport(), (host, port))
        return f"127.0.0.1:{self._tunnels[port].port}"

    def close(self) -> None:
        for tunnel in self._tunnels.values():
            tunnel.close()
        if self._ssh is not None:
            self._ssh.close()

    # ---- names, labels ---------------------------------------------------------------------------
    def name(self, part: str) -> str:
        return f"{self.instance}-{part}"

    def labels(self, role: str, **extra: str) -> dict[str, str]:
        base = {f"{LABEL}.project": self.config.project, f"{LABEL}.env": self.config.env_name,
                f"{LABEL}.instance": self.instance, f"{LABEL}.role": role}
        base.update({f"{LABEL}.{k}": str(v) for k, v in extra.items() if v is not None})
        return base

    def filters(self, **labels: str) -> dict:
        wanted = [f"{LABEL}.project={self.config.project}", f"{LABEL}.env={self.config.env_name}",
                  f"{LABEL}.instance={self.instance}"]
        wanted += [f"{LABEL}.{k}={v}" for k, v in labels.items()]
        return {"label": wanted}

    def owned(self, **labels: str) -> list:
        return self.client.containers.list(all=True, filters=self.filters(**labels))

    def container(self, name: str):
        import docker

        try:
            found = self.client.containers.get(self.name(name))
        except docker.errors.NotFound:
            return None
        if found.labels.get(f"{LABEL}.instance") != self.instance:
            raise OperationFailed(f"host {self.label}: container {found.name} exists but was not created by ragops "
                                  f"for {self.instance}; rename or remove it")
        return found

    @property
    def host_network(self) -> bool:
        return self.config.env.docker.network_mode == "host"

    def color_port(self, color: str) -> int:
        return self.service_port + COLORS.index(color)

    def color_url(self, color: str) -> str:
        return f"http://{self.reach(f'127.0.0.1:{self.color_port(color)}')}"

    def backend_url(self, color: str) -> str:
        """How this host's router reaches the color."""
        if self.host_network:
            return f"http://127.0.0.1:{self.color_port(color)}"
        return f"http://{self.name(color)}:{CONTAINER_PORT}"

    def api(self) -> str:
        return self.reach(self.router_api)

    # ---- network ------------------------------------------------------------------------------
    def ensure_network(self, progress: Progress) -> bool:
        import docker

        try:
            network = self.client.networks.get(self.instance)
            if network.attrs.get("Labels", {}).get(f"{LABEL}.instance") != self.instance:
                raise OperationFailed(f"host {self.label}: network {self.instance} exists but was not created by ragops")
            return False
        except docker.errors.NotFound:
            progress(f"{self.label}: creating network {self.instance}")
            self.client.networks.create(self.instance, driver="bridge", labels=self.labels("network"))
            return True

    # ---- router -------------------------------------------------------------------------------
    def dynamic(self) -> tuple[dict[str, str], dict[str, int], bool]:
        return traefik.parse_dynamic(self.dir.read_yaml("router/dynamic/" + traefik.DYNAMIC_FILE) or {})

    def router_running(self) -> bool:
        found = self.container("router")
        return bool(found and found.status == "running")

    def start_router(self, progress: Progress) -> bool:
        found = self.container("router")
        if found and found.status == "running" and traefik.router_ready(self.api()):
            return False
        self.dir.makedirs("router/dynamic")
        if self.dir.read_yaml("router/dynamic/" + traefik.DYNAMIC_FILE) is None:
            self.dir.write_yaml("router/dynamic/" + traefik.DYNAMIC_FILE, traefik.dynamic_config({}, {}))
        if self.host_network:
            listen, api = self.router_listen, self.router_api
        else:
            listen, api = f":{ROUTER_WEB}", f":{ROUTER_API}"
        self.dir.write_yaml("router/traefik.yml", traefik.static_config(listen, api, "/etc/traefik/dynamic"))
        if found:
            found.remove(force=True)
        image = self.config.router.image
        self.require_image(image, "router.image")
        progress(f"{self.label}: starting router {self.name('router')} ({image}) on {self.router_listen}")
        kwargs = dict(
            image=image, name=self.name("router"), detach=True, labels=self.labels("router"),
            entrypoint=["/usr/local/bin/traefik"], command=["--configFile=/etc/traefik/traefik.yml"],
            volumes={self.dir.path("router"): {"bind": "/etc/traefik", "mode": "ro"}},
            restart_policy={"Name": "unless-stopped"}, read_only=True)
        if self.host_network:
            kwargs["network_mode"] = "host"
        else:
            kwargs["network"] = self.instance
            web_host, web_port = split_host_port(self.router_listen)
            api_host, api_port = split_host_port(self.router_api)
            kwargs["ports"] = {f"{ROUTER_WEB}/tcp": (web_host, web_port), f"{ROUTER_API}/tcp": (api_host, api_port)}
        try:
            self.client.containers.run(**kwargs)
        except Exception as exc:  # noqa: BLE001
            raise OperationFailed(f"host {self.label}: could not start the router: {_error_text(exc)}") from None
        deadline = time.monotonic() + 30
        while not traefik.router_ready(self.api()):
            found = self.container("router")
            if time.monotonic() > deadline or found is None or found.status in ("exited", "dead"):
                logs = found.logs(tail=3).decode(errors="replace").strip() if found else ""
                raise OperationFailed(f"host {self.label}: router did not start on {self.router_listen}: "
                                      f"{logs or 'no log'}")
            time.sleep(0.2)
        return True

    def write_router(self, weights: dict[str, int], maintenance: bool) -> None:
        running = {c for c in COLORS if self._running(c)}
        backends = {c: self.backend_url(c) for c in COLORS if c in running or weights.get(c, 0) > 0}
        self.dir.write_yaml("router/dynamic/" + traefik.DYNAMIC_FILE, traefik.dynamic_config(
            backends, weights, maintenance=maintenance, health_path=self.config.service.readiness_path))

    def _running(self, color: str) -> bool:
        found = self.container(color)
        return bool(found and found.status == "running")

    def require_image(self, image: str, what: str) -> None:
        import docker

        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            try:
                self.client.images.pull(image)
            except Exception as exc:  # noqa: BLE001 - no registry reachable
                raise OperationFailed(f"host {self.label}: image {image} ({what}) is not on the host and could "
                                      f"not be pulled: {_error_text(exc)}",
                                      hint="`ragops build --version V` builds the service image on every host") from None

    # ---- colors -------------------------------------------------------------------------------
    def start_color(self, color: str, version: str, image: str, env: dict[str, str], labels: dict[str, str],
                    progress: Progress) -> None:
        existing = [c for c in self.owned(color=color)]
        for container in existing:
            progress(f"{self.label}: replacing {container.name}")
            self._stop(container, self.config.deploy.drain_timeout)
        self.require_image(image, f"version {version}")
        if not self.host_network:
            self.ensure_network(progress)
        port = self.color_port(color)
        progress(f"{self.label}: starting {self.name(color)} ({image}) on 127.0.0.1:{port}")
        common = dict(image=image, detach=True, environment=env, read_only=True, tmpfs={"/tmp": ""},
                      restart_policy={"Name": "unless-stopped"}, stop_signal="SIGTERM")
        if self.host_network:
            command = ["python", "-m", "ragservice.serve", "--host", "127.0.0.1", "--port", str(port)]
            probe = f"http://127.0.0.1:{port}{self.config.service.health_path}"
            extra = dict(network_mode="host", command=command, healthcheck={
                "test": ["CMD", "python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request."
                         f"urlopen('{probe}', timeout=2).status == 200 else 1)"],
                "interval": 10 * 10**9, "timeout": 3 * 10**9, "retries": 3, "start_period": 10 * 10**9})
        else:
            extra = dict(network=self.instance, ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)})
        self.client.containers.run(name=self.name(color), labels={**self.labels("color", color=color), **labels},
                                   **common, **extra)
        for index in range(self.config.service.workers):
            worker_extra = {"network_mode": "host"} if self.host_network else {"network": self.instance}
            self.client.containers.run(
                name=self.name(f"{color}-worker-{index + 1}"), command=["python", "-m", "ragservice.worker",
                                                                         "--name", f"{color}-worker-{index + 1}"],
                labels={**self.labels("worker", color=color), **labels}, **common, **worker_extra)

    def _stop(self, container, timeout: float) -> None:
        try:
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=int(timeout) + 2)
            container.remove(force=True)
        except Exception as exc:  # noqa: BLE001
            import docker

            if not isinstance(exc, docker.errors.NotFound):
                raise

    def stop_color(self, color: str, drain_timeout: float, progress: Progress) -> bool:
        containers = self.owned(color=color)
        workers = [c for c in containers if c.labels.get(f"{LABEL}.role") == "worker"]
        colors = [c for c in containers if c.labels.get(f"{LABEL}.role") == "color"]
        for container in workers:
            self._stop(container, 10)
        for container in colors:
            progress(f"{self.label}: stopping {container.name} (graceful, up to {drain_timeout:.0f}s)")
            self._stop(container, drain_timeout)
        return bool(containers)

    # ---- accessories --------------------------------------------------------------------------
    def start_accessory(self, name: str, spec, progress: Progress) -> bool:
        import docker

        found = self.container(name)
        if found and found.status == "running":
            return False
        if found:
            found.remove(force=True)
        self.require_image(spec.image, f"docker.accessories.{name}.image")
        env = dict(spec.env)
        for key, ref in spec.secrets.items():
            env[key] = self.config.reveal(ref, f"docker.accessories.{name}.secrets.{key}")
        kwargs = dict(image=spec.image, name=self.name(name), detach=True, environment=env,
                      labels=self.labels("accessory", accessory=name), restart_policy={"Name": "unless-stopped"})
        if spec.command:
            kwargs["command"] = spec.command
        if spec.volume:
            volume = self.name(f"{name}-data")
            try:
                self.client.volumes.get(volume)
            except docker.errors.NotFound:
                self.client.volumes.create(volume, labels=self.labels("volume", accessory=name))
            kwargs["volumes"] = {volume: {"bind": spec.volume, "mode": "rw"}}
        if self.host_network:
            kwargs["network_mode"] = "host"
        else:
            self.ensure_network(progress)
            kwargs["network"] = self.instance
            kwargs["hostname"] = name
            if spec.port:
                kwargs["ports"] = {f"{spec.container_port or spec.port}/tcp": ("127.0.0.1", spec.port)}
        progress(f"{self.label}: starting accessory {self.name(name)} ({spec.image})")
        try:
            container = self.client.containers.run(**kwargs)
        except Exception as exc:  # noqa: BLE001
            raise OperationFailed(f"host {self.label}: could not start accessory {name}: {_error_text(exc)}") from None
        if not self.host_network:
            # reachable by its accessory name on the environment's network
            network = self.client.networks.get(self.instance)
            try:
                network.disconnect(container)
                network.connect(container, aliases=[name])
            except Exception:  # noqa: BLE001 - the container name still resolves
                pass
        return True


class DockerPlatform(Platform):
    name = "docker"

    def __init__(self, config: Config):
        self.config = config
        if not config.env.hosts:
            raise OperationFailed(f"environments.{config.env_name}.hosts: no docker host configured")
        self.hosts = [DockerHost(self, spec, index) for index, spec in enumerate(config.env.hosts)]
        self.primary = self.hosts[0]

    def __del__(self):
        for host in getattr(self, "hosts", []):
            try:
                host.close()
            except Exception:  # noqa: BLE001
                pass

    # ---- addresses ----------------------------------------------------------------------------
    def image_ref(self, version: str) -> str:
        repo = self.config.service.image or f"{self.config.project}/rag-service"
        return f"{repo}:{version}"

    def color_url(self, color: str) -> str:
        return self.primary.color_url(color)

    def color_urls(self, color: str) -> list[tuple[str, str]]:
        """(host, direct URL) for every host: readiness and smoke run against each one."""
        return [(host.label, host.color_url(color)) for host in self.hosts]

    def router_url(self) -> str:
        host, port = split_host_port(self.primary.router_listen)
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    def journal_dir(self) -> Path:
        path = self.config.state_dir / "deploy"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def lock_backend(self):
        from ragops.platforms.docker_hosts import DirLock, MultiHostLock

        return MultiHostLock([(host.label, DirLock(host.dir)) for host in self.hosts])

    # ---- router -------------------------------------------------------------------------------
    def router_running(self) -> bool:
        return all(host.router_running() for host in self.hosts)

    def router_weights(self) -> dict[str, int]:
        host = self.primary
        live = traefik.live_weights(host.api()) if host.router_running() else None
        if live is not None:
            return live
        return host.dynamic()[1]

    def maintenance(self) -> bool:
        return self.primary.dynamic()[2]

    def set_weights(self, weights: dict[str, int], *, confirm_timeout: float = 10.0) -> float:
        """Write every host's router config, then confirm each through its API. If one host fails,
        every host gets its previous config back and the error names the host."""
        weights = {c: int(weights.get(c, 0)) for c in COLORS}
        previous = {host.label: host.dir.read_yaml("router/dynamic/" + traefik.DYNAMIC_FILE) for host in self.hosts}
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
                took = max(took, traefik.wait_for_weights(host.api(), weights, confirm_timeout))
            return took
        except Exception as exc:  # noqa: BLE001 - roll every host back, then report
            failure = exc.message if isinstance(exc, OperationFailed) else _error_text(exc)
            restored = []
            for host in written:
                try:
                    data = previous.get(host.label)
                    if data is not None:
                        host.dir.write_yaml("router/dynamic/" + traefik.DYNAMIC_FILE, data)
                        restored.append(host.label)
                except Exception:  # noqa: BLE001 - best effort; the error below says which
                    pass
            raise OperationFailed(f"host {failed_host.label if failed_host else '?'}: {failure}; previous router "
                                  f"config restored on {', '.join(restored) or 'no host'}") from None

    def set_maintenance(self, on: bool) -> None:
        for host in self.hosts:
            _, weights, _ = host.dynamic()
            host.write_router(weights, maintenance=on)

    def refresh_backends(self) -> None:
        for host in self.hosts:
            _, weights, maintenance = host.dynamic()
            host.write_router(weights, maintenance)

    # ---- colors -------------------------------------------------------------------------------
    def start_color(self, color: str, version: str, *, deploy_id: str, env: dict[str, str] | None = None,
                    progress: Progress = _noop) -> ColorState:
        """Start `color` on every host; if one host fails, the color is removed from all of them."""
        image = self.image_ref(version)
        full_env = service_env(self.config, color, version, env)
        labels = {f"{LABEL}.version": version, f"{LABEL}.deploy_id": deploy_id, f"{LABEL}.started_at": _now(),
                  f"{LABEL}.image": image, f"{LABEL}.overrides": json.dumps(env or {}, sort_keys=True)}
        for host in self.hosts:
            try:
                host.start_color(color, version, image, full_env, labels, progress)
            except Exception as exc:  # noqa: BLE001 - undo on every host, name the one that failed
                reason = exc.message if isinstance(exc, OperationFailed) else _error_text(exc)
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
                _, weights, maintenance = host.dynamic()
                if weights.get(color, 0) == 0:
                    host.write_router(weights, maintenance)

    def color_state(self, color: str, probe: bool = True) -> ColorState:
        import httpx

        primary = self.primary.container(color)
        labels = primary.labels if primary else {}
        state = ColorState(color=color, running=False, port=self.primary.color_port(color),
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
        from ragops.db.migrate import apply_migrations

        migrations = self.config.resolve_path(self.config.service.path) / "migrations"
        try:
            return apply_migrations(app_dsn(self.config), migrations, app_user=None, progress=progress)
        except OperationFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - psycopg errors: one line
            raise OperationFailed(f"database.dsn: migrations failed: {_error_text(exc)}") from None

    def up(self, progress: Progress = _noop) -> list[str]:
        import uuid

        from ragops.readiness import wait_ready

        steps: list[str] = []
        for host in self.hosts:
            if host.ensure_network(progress):
                steps.append(f"network {host.instance} on {host.label}")
        for name, spec in self.config.env.docker.accessories.items():
            host = next(h for h in self.hosts if h.spec == (spec.host or self.primary.spec))
            if host.start_accessory(name, spec, progress):
                steps.append(f"accessory {name} on {host.label}")
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

    def down(self, purge: bool = False, progress: Progress = _noop) -> list[str]:
        """Remove what ragops created (found by its labels) and nothing else."""
        steps: list[str] = []
        for host in self.hosts:
            owned = host.owned()
            order = {"worker": 0, "color": 1, "router": 2, "accessory": 3}
            for container in sorted(owned, key=lambda c: order.get(c.labels.get(f"{LABEL}.role"), 9)):
                role = container.labels.get(f"{LABEL}.role")
                timeout = self.config.deploy.drain_timeout if role == "color" else 10
                progress(f"{host.label}: removing {container.name}")
                host._stop(container, timeout)
                steps.append(f"remove {container.name} ({host.label})")
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
            from ragops.purge import purge_state_dir

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
