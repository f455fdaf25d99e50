"""One Docker host of the docker platform: its engine client, its ragops directory, its router
and its containers (colors, accessories). ragops/platforms/docker.py drives several of them."""
from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from ragops.errors import OperationFailed
from ragops.netutil import split_host_port
from ragops.platforms.base import COLORS, Platform, Progress
from ragops.routing import Router, get_router
from ragops.routing.base import PeopleRouting

if TYPE_CHECKING:
    import paramiko

    from ragops.platforms.docker_hosts import Tunnel

CONTAINER_PORT = 8000               # the service image's port in bridge mode
ROUTER_WEB, ROUTER_API = 8080, 8081  # Traefik's entrypoints inside the container in bridge mode
ROUTER_ROOT = "/etc/traefik"         # where <dir>/router is mounted in the router container
LABEL = "ragops"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def error_text(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())[:300]

class NoAddress(OperationFailed):
    """A container ragops would dial has no address on the environment's network (not running)."""


class DockerHost:
    """One engine: its client, its ragops directory, its router and color ports."""

    def __init__(self, platform: Platform, spec: str, index: int):
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
        # a failover region (DockerPlatform(config, region)): its own router, colors and ports under
        # <instance>-<region>, on the environment's network, beside the same database containers
        self.network = self.instance
        region = platform.region
        if region:
            settings_r = self.config.env.regions[region]
            self.instance = f"{self.instance}-{region}"
            self.router_listen = settings_r.router or self.router_listen
            self.router_api = settings_r.router_api or self.router_api
            self.service_port = settings_r.service_port or self.service_port
        self.is_ssh = spec.startswith("ssh://")
        self._ssh: paramiko.SSHClient | None = None
        self._tunnels: dict[tuple[str, int], Tunnel] = {}

    # ---- connections ---------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.spec

    def _connect_ssh(self) -> paramiko.SSHClient:
        from ragops.platforms.docker_hosts import ssh_connect

        env = self.config.env
        key = self.config.resolve_path(env.docker.ssh_key) if env.docker.ssh_key else None
        ssh: paramiko.SSHClient = ssh_connect(self.spec, known_hosts=str(self.config.resolve_path(env.known_hosts))
                                              if env.known_hosts else None, trust=env.trust_host_keys,
                                              key_file=str(key) if key else None)
        self._ssh = ssh
        return ssh

    def _connected_ssh(self) -> paramiko.SSHClient:
        """The ssh connection of an ssh:// host, made (and its host key verified) by `client`."""
        self.client  # noqa: B018 - connects (and verifies the host key) first
        if self._ssh is None:
            raise OperationFailed(f"host {self.label}: not an ssh:// host")
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
            raise OperationFailed(f"host {self.label}: the Docker Engine does not answer: {error_text(exc)}",
                                  hint="is dockerd running? (scripts/docker-images.sh starts it)") from None
        return client

    @cached_property
    def dir(self):
        from ragops.platforms.docker_hosts import LocalDir, SftpDir

        if not self.is_ssh:
            return LocalDir((self.config.state_dir / "docker" / self.instance).resolve())
        sftp = self._connected_ssh().open_sftp()
        base = self.config.env.docker.remote_dir
        if not base.startswith("/"):
            base = sftp.normalize(".").rstrip("/") + "/" + base
        return SftpDir(sftp, base.rstrip("/") + "/" + self.instance)

    def reach(self, address: str) -> str:
        """`host:port` as seen from this host (its loopback, or a container's bridge address) -> a
        `host:port` this process can connect to: itself, or a tunnel's local end for ssh hosts."""
        host, port = split_host_port(address)
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if not self.is_ssh:
            return f"{host}:{port}"
        if (host, port) not in self._tunnels:
            from ragops.platforms.docker_hosts import Tunnel

            self._tunnels[(host, port)] = Tunnel(self._connected_ssh().get_transport(), (host, port))
        return f"127.0.0.1:{self._tunnels[(host, port)].port}"

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
        try:
            return f"http://{self.dial(self.name(color), CONTAINER_PORT, self.color_port(color))}"
        except NoAddress:
            return "http://127.0.0.1:0"    # a stopped color: refused at once (never another service's port)

    # ---- how ragops reaches a container ----------------------------------------------------------
    def dial(self, container: str, port: int, published: int) -> str:
        """THE `host:port` this process connects to for `container` (readiness, smoke, /metrics, drain,
        and every database connection through DockerPlatform.database_address):
          - bridge network: the container's address on the environment's network and its own `port`,
            nothing published. A local engine's host (`local`, `unix://`) routes to its bridge
            networks; on an ssh host the tunnel's far end, that host's sshd, connects to it;
          - network_mode: host: `published` (the port it listens on) on the host's 127.0.0.1.
        Raises NoAddress for a container without an address (stopped, not created yet): never a
        loopback port that another environment's service may listen on."""
        if not self.host_network:
            address = self.bridge_address(container)
            if address is None:
                raise NoAddress(f"container {container} is not running (no address on network {self.network} "
                                f"of host {self.label})")
            return self.reach(f"{address}:{port}")
        return self.reach(f"127.0.0.1:{published}")

    def bridge_address(self, container: str) -> str | None:
        """The IP address of ragops' container `container` on the environment's network, or None."""
        import docker

        try:
            found = self.client.containers.get(container)
        except docker.errors.NotFound:
            return None
        if (found.labels.get(f"{LABEL}.project"), found.labels.get(f"{LABEL}.env")) != (self.config.project,
                                                                                       self.config.env_name):
            return None
        networks = found.attrs.get("NetworkSettings", {}).get("Networks") or {}
        return (networks.get(self.network) or {}).get("IPAddress") or None

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
            network = self.client.networks.get(self.network)
            if network.attrs.get("Labels", {}).get(f"{LABEL}.instance") != self.network:
                raise OperationFailed(f"host {self.label}: network {self.network} exists but was not created by ragops")
            return False
        except docker.errors.NotFound:
            progress(f"{self.label}: creating network {self.network}")
            self.client.networks.create(self.network, driver="bridge",
                                        labels={**self.labels("network"), f"{LABEL}.instance": self.network})
            return True

    # ---- router -------------------------------------------------------------------------------
    @cached_property
    def router(self) -> Router:
        """This host's router; its config lives in <dir>/router (mounted at /etc/traefik)."""
        from ragops.platforms.docker_hosts import SubDir

        if self.host_network:
            listen, api = self.router_listen, self.router_api
        else:
            listen, api = f":{ROUTER_WEB}", f":{ROUTER_API}"
        return get_router(self.config.router.kind, listen=listen, api=api, store=SubDir(self.dir, "router"),
                          health_path=self.config.service.readiness_path, reach=self.api,
                          people=PeopleRouting(self.config.deploy.canary_header, self.config.deploy.sticky))

    def router_running(self) -> bool:
        found = self.container("router")
        return bool(found and found.status == "running")

    def start_router(self, progress: Progress) -> bool:
        found = self.container("router")
        if found and found.status == "running" and self.router.ready():
            return False
        self.router.prepare(ROUTER_ROOT)
        if found:
            found.remove(force=True)
        image = self.config.router.image
        self.require_image(image, "router.image")
        progress(f"{self.label}: starting router {self.name('router')} ({image}) on {self.router_listen}")
        kwargs = dict(
            image=image, name=self.name("router"), detach=True, labels=self.labels("router"),
            entrypoint=["/usr/local/bin/traefik"], command=self.router.start_args(ROUTER_ROOT),
            volumes={self.dir.path("router"): {"bind": ROUTER_ROOT, "mode": "ro"}},
            restart_policy={"Name": "unless-stopped"}, read_only=True)
        if self.host_network:
            kwargs["network_mode"] = "host"
        else:
            kwargs["network"] = self.network
            web_host, web_port = split_host_port(self.router_listen)
            api_host, api_port = split_host_port(self.router_api)
            kwargs["ports"] = {f"{ROUTER_WEB}/tcp": (web_host, web_port), f"{ROUTER_API}/tcp": (api_host, api_port)}
        try:
            self.client.containers.run(**kwargs)
        except Exception as exc:  # noqa: BLE001
            raise OperationFailed(f"host {self.label}: could not start the router: {error_text(exc)}") from None
        deadline = time.monotonic() + 30
        while not self.router.ready():
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
        self.router.apply(backends, weights, maintenance)

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
                                      f"not be pulled: {error_text(exc)}",
                                      hint=f"`ragops -e {self.config.env_name} build --version V` builds the "
                                           "service image on every host") from None

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
        where = f"127.0.0.1:{port}" if self.host_network else f"network {self.network}"
        progress(f"{self.label}: starting {self.name(color)} ({image}) on {where}")
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
            extra = dict(network=self.network)     # no port published: ragops dials it (dial)
        self.client.containers.run(name=self.name(color), labels={**self.labels("color", color=color), **labels},
                                   **common, **extra)
        for index in range(self.config.service.workers):
            worker_extra = {"network_mode": "host"} if self.host_network else {"network": self.network}
            self.client.containers.run(
                name=self.name(f"{color}-worker-{index + 1}"), command=["python", "-m", "ragservice.worker",
                                                                         "--name", f"{color}-worker-{index + 1}"],
                labels={**self.labels("worker", color=color), **labels}, **common, **worker_extra)

    def _stop(self, container, timeout: float) -> None:
        try:
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=int(timeout) + 2)
            container.remove(force=True)
        except Exception as exc:
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
            kwargs["network"] = self.network
            kwargs["hostname"] = name
            if spec.port:
                kwargs["ports"] = {f"{spec.container_port or spec.port}/tcp": ("127.0.0.1", spec.port)}
        progress(f"{self.label}: starting accessory {self.name(name)} ({spec.image})")
        try:
            container = self.client.containers.run(**kwargs)
        except Exception as exc:  # noqa: BLE001
            raise OperationFailed(f"host {self.label}: could not start accessory {name}: {error_text(exc)}") from None
        if not self.host_network:
            # reachable by its accessory name on the environment's network
            network = self.client.networks.get(self.network)
            try:
                network.disconnect(container)
                network.connect(container, aliases=[name])
            except Exception:  # noqa: BLE001 - the container name still resolves
                pass
        return True
