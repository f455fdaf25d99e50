"""ragops.yaml: the schema, loading, and errors that name the bad key.

Top-level sections (`service`, `router`, `database`, `backups`, `dns`, `deploy`, `slo`) are
defaults; each `environments.<name>` may override any of them, merged key by key. Secret values
stay as `${env:...}` / `${file:...}` references until an engine asks for them with `reveal()`.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, overload

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from ragops import secrets
from ragops.config_types import Duration, HostPort, Port, SecretRef, Strict, Weight
from ragops.errors import ConfigError
from ragops.resources import default_service_path
from ragops.settings.analysis import SAMPLES_QUERY, MetricSpec, OnInconclusive, Provider, window_problems
from ragops.settings.audit import AuditSettings
from ragops.settings.dns import HealthCheckSettings
from ragops.settings.docker_db import DockerDatabaseSettings
from ragops.settings.ha import PatroniSettings
from ragops.settings.monitoring import MonitoringSettings
from ragops.settings.notify import NotifySettings
from ragops.settings.pitr import WalSettings
from ragops.settings.smoke import SmokeSettings

DEFAULT_CONFIG = "ragops.yaml"


class ServiceConfig(Strict):
    version: str = "v1"
    path: str = "./service"                      # relative to ragops.yaml; unset and no ./service: the shipped one
    image: str | None = None                     # docker/kubernetes: the image repository
    port: Port = 8100                            # local: blue listens here, green on port+1
    replicas: int = Field(1, ge=1, le=100)
    workers: int = Field(1, ge=0, le=32)         # ingestion worker processes
    health_path: str = "/healthz"
    readiness_path: str = "/readyz"
    startup_timeout: Duration = 60.0
    env: dict[str, str] = {}
    secrets: dict[str, SecretRef] = {}           # env var name -> secret reference
    api_keys: SecretRef | None = None            # comma-separated keys; local generates one if unset
    rate_limit_per_minute: int = Field(600, ge=1)
    cors_origins: list[str] = []

    @field_validator("version")
    @classmethod
    def _version_label(cls, value: str) -> str:
        from ragops.settings.labels import is_version_label

        if not is_version_label(value):
            raise ValueError(f"{value!r} is not a version label (letters, digits, '_', '.', '-', like a container tag)")
        return value

    @field_validator("health_path", "readiness_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with '/', got {value!r}")
        return value


class RouterConfig(Strict):
    kind: Literal["traefik", "haproxy"] = "traefik"   # ragops.routing.ROUTERS; haproxy: local platform only
    listen: HostPort = "127.0.0.1:8080"
    api: HostPort = "127.0.0.1:8081"             # the router's API / stats, bound to loopback only
    image: str = "traefik:v3.1"                  # docker: the router image


class DbNode(Strict):
    name: str
    host: str = "127.0.0.1"
    port: Port = 5432


class DatabaseConfig(Strict):
    name: str = "rag"
    user: str = "rag"
    password: SecretRef | None = None            # local generates one if unset
    superuser: str = "postgres"
    primary: DbNode = Field(default_factory=lambda: DbNode(name="primary", port=5433))
    replicas: list[DbNode] = Field(default_factory=lambda: [DbNode(name="replica1", port=5434)])
    bin_dir: str | None = None                   # PostgreSQL binaries; default: the pgserver wheel's
    synchronous: bool = False                    # synchronous_standby_names on the primary
    dsn: SecretRef | None = None                 # external database instead of managed nodes
    accessories: bool | None = None              # docker: nodes as containers (default: when no dsn)
    ha: Literal["manual", "patroni"] = "manual"  # who promotes: a person/ragops, or Patroni + etcd (ragops/ha)
    patroni: PatroniSettings = Field(default_factory=PatroniSettings)  # with ha: patroni
    ha_fast_release: bool = False                # release a leader key once its processes are proven gone
    ha_sync: Literal["off", "on", "strict"] = "off"  # Patroni synchronous_mode (on) / _strict (strict)

    @model_validator(mode="after")
    def _unique_names(self) -> DatabaseConfig:
        seen = {self.primary.name}
        for index, node in enumerate(self.replicas):
            if node.name in seen:
                raise ValueError(f"replicas[{index}]: node name {node.name!r} is used twice")
            seen.add(node.name)
        return self


class Retention(Strict):
    keep_last: int = Field(7, ge=1)
    hourly_hours: int = Field(24, ge=0)
    daily_days: int = Field(30, ge=0)            # the guide: 30-day retention


class LifecycleRule(Strict):
    id: str
    prefix: str = ""
    days: int = Field(ge=1)
    storage_class: Literal["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER",
                           "GLACIER_IR", "DEEP_ARCHIVE"] = "GLACIER"


class S3Settings(Strict):
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretRef | None = None
    secret_access_key: SecretRef | None = None


def _storage_url(value: str) -> str:
    if not re.match(r"^(file|s3)://.+", value):
        scheme = value.split("://", 1)[0] if "://" in value else value
        raise ValueError(f"unknown scheme {scheme!r} (expected file:// or s3://)")
    return value


StorageUrl = Annotated[str, AfterValidator(_storage_url)]


class BackupsConfig(Strict):
    storage: StorageUrl = "file://.ragops/backups"
    copy_to: StorageUrl | None = None            # a second storage every backup is copied to
    encryption_key: SecretRef | None = None      # an age identity (AGE-SECRET-KEY-1...)
    compression_level: int = Field(3, ge=1, le=22)
    compression_threads: int = Field(2, ge=1, le=64)   # zstd workers for base backups and dumps (WAL: one)
    retention: Retention = Field(default_factory=Retention)
    lifecycle: list[LifecycleRule] = []
    s3: S3Settings = Field(default_factory=S3Settings)
    tables: list[str] = ["documents", "chunks"]  # counted into the manifest and checked on verify
    max_wal_lag: Duration = 60.0                 # `backup wal check`: exit 3 when the newest segment is older
    wal: WalSettings = Field(default_factory=WalSettings)   # the continuous WAL archive (ragops/settings/pitr.py)


class DnsConfig(Strict):
    provider: Literal["route53"] = "route53"
    zone: str | None = None                      # zone name, e.g. example.com.
    zone_id: str | None = None
    record: str | None = None                    # e.g. api.example.com.
    type: Literal["A", "AAAA", "CNAME"] = "CNAME"
    primary: str | None = None
    secondary: str | None = None
    ttl: int = Field(60, ge=1, le=86400)
    endpoint_url: str | None = None
    region: str = "us-east-1"
    sync_timeout: Duration = 120.0
    health_checks: HealthCheckSettings = Field(default_factory=HealthCheckSettings)   # `dns setup` (ragops/settings/dns.py)


class CanaryConfig(Strict):
    steps: list[Weight] = [10, 25, 50, 100]
    step_pause: Duration = 30.0

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[int]) -> list[int]:
        if not steps:
            raise ValueError("needs at least one step")
        for index in range(1, len(steps)):
            if steps[index] <= steps[index - 1]:
                raise ValueError(f"steps must increase: {steps[index]} after {steps[index - 1]}")
        return steps


class AnalysisConfig(Strict):
    window: Duration = 10.0
    interval: Duration = 2.0
    max_error_rate: float = Field(0.05, ge=0, le=1)   # share of 5xx responses
    max_p95_latency_ms: float = Field(2000, gt=0)      # the guide: response time > 2 s warns
    min_requests: int = Field(5, ge=0)
    no_data_retries: int = Field(3, ge=0)
    probe_rps: float = Field(5.0, ge=0, le=100)       # synthetic requests to the new color per second
    provider: Provider = "builtin"                    # builtin | prometheus (ragops/deploy/analysis/)
    metrics: list[MetricSpec] = []                    # prometheus: PromQL metrics (default: the guide's two)
    on_inconclusive: OnInconclusive = "pause"         # canary: pause (exit 3) or fail when no verdict
    samples_query: str | None = SAMPLES_QUERY         # prometheus: samples of the canary's own series ("" off)
    max_empty_results_rate: float | None = Field(None, ge=0, le=1)   # builtin: share of queries finding nothing


class DeployConfig(Strict):
    strategy: Literal["blue-green", "canary"] = "blue-green"
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    health_timeout: Duration = 60.0
    drain_timeout: Duration = 30.0
    keep_previous: int = Field(1, ge=0, le=5)        # old colors kept warm for instant rollback
    # the heartbeat renews every ttl/3: below 10 s one slow renewal under load lets a second deploy
    # take over a live one; above an hour a dead owner on another host blocks deploys that long
    lock_ttl: Annotated[Duration, Field(ge=10, le=3600)] = 120.0
    history_limit: int = Field(200, ge=1)
    canary_header: str = Field("X-Canary", pattern=r"^[A-Za-z0-9-]{1,64}$")  # `always` / `never` pick a side
    sticky: bool = False                             # a cookie keeps each client on the color it first got


class SloConfig(Strict):
    rto_seconds: float = Field(900, gt=0)            # the guide: RTO target 15 minutes
    rpo_seconds: float = Field(300, gt=0)            # the guide: RPO target 5 minutes


class RegionConfig(Strict):
    """A failover region: on the local platform, a set of processes on their own ports."""
    database_node: str
    router: HostPort | None = None
    router_api: HostPort | None = None
    service_port: Port | None = None
    dns_value: str | None = None


class RunbooksConfig(Strict):
    dir: str = "runbooks"
    notify_webhook: SecretRef | None = None
    security_scan: str | None = None                 # a command; unset is a failure in strict mode
    strict: bool = True


class Sections(Strict):
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    backups: BackupsConfig = Field(default_factory=BackupsConfig)
    dns: DnsConfig = Field(default_factory=DnsConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    slo: SloConfig = Field(default_factory=SloConfig)
    regions: dict[str, RegionConfig] = {}
    runbooks: RunbooksConfig = Field(default_factory=RunbooksConfig)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    smoke: SmokeSettings = Field(default_factory=SmokeSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)


# The one list of sections: Sections' fields. ragops.yaml's top level (ConfigFile) and each environment
# (Environment) follow it; a new section is one field above.
SECTIONS = tuple(Sections.model_fields)


class DockerHostSettings(Strict):
    """Per-host overrides, keyed by the host as written in `hosts` (e.g. two hosts on one engine)."""
    router_listen: HostPort | None = None
    router_api: HostPort | None = None
    service_port: Port | None = None             # blue on it, green on port+1 (127.0.0.1 of the host)
    name_suffix: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,20}$")


class Accessory(Strict):
    """A long-running helper container (PostgreSQL, Redis...) on the environment's network."""
    image: str
    host: str | None = None                      # one of `hosts`; default the first
    port: Port | None = None                     # published on 127.0.0.1:<port> of the host
    container_port: Port | None = None           # default: the same as `port`
    command: list[str] | None = None
    env: dict[str, str] = {}
    secrets: dict[str, SecretRef] = {}           # env var name -> secret reference
    volume: str | None = None                    # a path inside the container kept on a named volume


class DockerSettings(Strict):
    network_mode: Literal["bridge", "host"] = "bridge"   # host: colors/router share the host's network
    ssh_key: str | None = None                   # private key for ssh:// hosts (default: agent, ~/.ssh)
    remote_dir: str = ".ragops"                  # ssh hosts: router config and lock (relative to home)
    base_image: str = "python:3.11-slim"         # `ragops build`: BASE_IMAGE build argument
    push: bool = False                           # `ragops build`: push <service.image>:<version>
    host_settings: dict[str, DockerHostSettings] = {}
    accessories: dict[str, Accessory] = {}
    database: DockerDatabaseSettings = Field(default_factory=DockerDatabaseSettings)


class KubernetesSettings(Strict):
    """kubernetes: how traffic and ragops reach the service in the cluster (see platforms/kubernetes.py)."""
    host: str | None = None                      # public host the IngressRoute matches (None: any host)
    entry_points: list[str] = ["web"]            # Traefik entry points of the public route
    tls_secret: str | None = None                # a TLS Secret for the public route (https)
    router_url: str | None = None                # how ragops reaches the public route; default http(s)://<host>
    preview_host: str | None = None              # e.g. "{color}.preview.example.com": one preview route per color
    preview_path: str | None = None              # e.g. "/_preview/{color}": one preview route per color by path
                                                 # prefix on the public route's address (no DNS name needed)
    color_url: str | None = None                 # direct URL of a color ({color}, {project}, {namespace});
                                                 # default http://<preview_host>, else the Service's cluster DNS
    rollout_timeout: Duration | None = None      # default: deploy.health_timeout

    @field_validator("preview_host", "preview_path", "color_url")
    @classmethod
    def _per_color(cls, value: str | None) -> str | None:
        if value is not None and "{color}" not in value:
            raise ValueError(f"must contain {{color}} (one address per color), got {value!r}")
        return value

    @field_validator("preview_path")
    @classmethod
    def _absolute_path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or value.endswith("/") or "://" in value):
            raise ValueError(f"must be a path like /_preview/{{color}} (a leading /, no trailing /), got {value!r}")
        return value


class Environment(Sections):
    platform: Literal["local", "docker", "kubernetes"] = "local"
    state_dir: str | None = None                     # default .ragops/<env> beside ragops.yaml
    production: bool = False                         # drills refuse it without an explicit flag
    # docker
    hosts: list[str] = []
    known_hosts: str | None = None
    trust_host_keys: list[str] = []                  # host:port whose keys are trusted on first use
    docker: DockerSettings = Field(default_factory=DockerSettings)
    # kubernetes
    context: str | None = None
    namespace: str = "default"
    kubeconfig: str | None = None
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)

    @field_validator("hosts")
    @classmethod
    def _docker_hosts(cls, hosts: list[str]) -> list[str]:
        for index, host in enumerate(hosts):
            if not re.match(r"^(unix://.+|ssh://[\w.\-]+@[\w.\-]+(:\d+)?|local)$", host):
                raise ValueError(f"[{index}]: expected 'local', unix:///path or ssh://user@host[:port], got {host!r}")
        return hosts

    @model_validator(mode="after")
    def _analysis_window(self) -> Environment:
        from ragops.durations import parse_duration

        problems = window_problems(self.deploy.analysis, self.deploy.canary.step_pause,
                                   parse_duration(self.monitoring.scrape_interval))
        if problems:
            raise ValueError(problems[0])
        return self

    @model_validator(mode="after")
    def _router_platform(self) -> Environment:
        if self.router.kind == "haproxy" and self.platform != "local":
            raise ValueError(f"router.kind: haproxy runs only on the local platform (platform is {self.platform})")
        return self

    @model_validator(mode="after")
    def _platform_settings(self) -> Environment:
        if self.platform != "docker" and self.hosts:
            raise ValueError(f"hosts: only docker environments take hosts (platform is {self.platform})")
        if self.platform == "docker" and not self.hosts:
            self.hosts = ["local"]
        for key in self.docker.host_settings:
            if key not in self.hosts:
                raise ValueError(f"docker.host_settings.{key}: not one of hosts ({', '.join(self.hosts)})")
        for name, accessory in self.docker.accessories.items():
            if accessory.host is not None and accessory.host not in self.hosts:
                raise ValueError(f"docker.accessories.{name}.host: {accessory.host!r} is not one of hosts")
        nodes = {self.database.primary.name, *(n.name for n in self.database.replicas)}
        for region_name, region in self.regions.items():
            if region.database_node not in nodes:
                raise ValueError(
                    f"regions.{region_name}.database_node: unknown node {region.database_node!r} "
                    f"(nodes: {', '.join(sorted(nodes))})")
        if self.platform in ("local", "docker"):
            _no_port_collisions(self)
        return self


def _listening_ports(env: Environment) -> list[tuple[str, int]]:
    """Every (key, port) one local/docker environment listens on; all of them bind the same loopback."""
    def port_of(host_port: str) -> int:
        return int(host_port.rsplit(":", 1)[1])

    ports = [("service.port", env.service.port), ("service.port+1 (green)", env.service.port + 1),
             ("router.listen", port_of(env.router.listen)), ("router.api", port_of(env.router.api))]
    if env.platform == "local" and not env.database.dsn:
        ports.append(("database.primary.port", env.database.primary.port))
        ports += [(f"database.replicas[{i}].port", node.port) for i, node in enumerate(env.database.replicas)]
        if env.database.ha == "patroni":   # node i's REST API on rest_port + i; etcd member i on etcd_port + 2i, +1
            ha = env.database.patroni
            ports += [(f"database.patroni.rest_port+{i}", ha.rest_port + i)
                      for i in range(1 + len(env.database.replicas))]
            ports += [(f"database.patroni.etcd_port+{i}", ha.etcd_port + i) for i in range(6)]
            ports.append(("database.patroni.endpoint_port", ha.endpoint()))
    if env.platform == "local" and env.monitoring.prometheus == "local":
        ports.append(("monitoring.listen", port_of(env.monitoring.listen)))
    for name, region in env.regions.items():
        if region.router:
            ports.append((f"regions.{name}.router", port_of(region.router)))
        if region.router_api:
            ports.append((f"regions.{name}.router_api", port_of(region.router_api)))
        if region.service_port:
            ports += [(f"regions.{name}.service_port", region.service_port),
                      (f"regions.{name}.service_port+1 (green)", region.service_port + 1)]
    return ports


def _no_port_collisions(env: Environment) -> None:
    seen: dict[int, str] = {}
    for key, port in _listening_ports(env):
        if port in seen:
            raise ValueError(f"{key} and {seen[port]} both use port {port}")
        seen[port] = key


class ConfigFileHead(Strict):
    project: str = Field(pattern=r"^[a-z][a-z0-9-]{0,40}$")
    default_env: str
    environments: dict[str, dict[str, Any]]


# ragops.yaml's top level: the head, then each section's defaults for every environment (plain dicts here,
# validated per environment once merged with its own)
ConfigFile = create_model("ConfigFile", __base__=ConfigFileHead,
                          **{name: (dict[str, Any], {}) for name in SECTIONS})  # type: ignore[call-overload]


class Config:
    """The loaded file plus one resolved environment."""

    def __init__(self, path: Path, project: str, env_name: str, env: Environment, raw: dict,
                 env_names: list[str]):
        self.path = path
        self.base_dir = path.parent
        self.project = project
        self.env_name = env_name
        self.env = env
        self.raw = raw
        self.env_names = env_names

    # shortcuts used everywhere
    @property
    def service(self) -> ServiceConfig: return self.env.service
    @property
    def router(self) -> RouterConfig: return self.env.router
    @property
    def database(self) -> DatabaseConfig: return self.env.database
    @property
    def backups(self) -> BackupsConfig: return self.env.backups
    @property
    def dns(self) -> DnsConfig: return self.env.dns
    @property
    def deploy(self) -> DeployConfig: return self.env.deploy
    @property
    def slo(self) -> SloConfig: return self.env.slo

    @property
    def state_dir(self) -> Path:
        return self.resolve_path(self.env.state_dir or f".ragops/{self.env_name}")

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    @overload
    def reveal(self, ref: str, key: str) -> str: ...
    @overload
    def reveal(self, ref: str | None, key: str) -> str | None: ...

    def reveal(self, ref: str | None, key: str) -> str | None:
        """Resolve a secret reference (None stays None); `key` names it in errors."""
        if ref is None:
            return None
        try:
            return secrets.resolve(ref, key=f"environments.{self.env_name}.{key}", base_dir=self.base_dir)
        except ConfigError as exc:   # name the line to edit (read again only on this error path)
            from ragops.config_checks import where

            raise ConfigError(f"{where(self, key)}: {exc.message}", hint=exc.hint) from None

    def references(self, *sections: str) -> list[tuple[str, str]]:
        """(key path, reference) of every secret reference in the environment, or in `sections` of it."""
        found: list[tuple[str, str]] = []

        def walk(value, path: str) -> None:
            if isinstance(value, BaseModel):   # by attribute: model_dump would build its serializer
                value = {name: getattr(value, name) for name in type(value).model_fields}
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(item, f"{path}.{key}" if path else str(key))
            elif isinstance(value, (list, tuple)):
                for index, item in enumerate(value):
                    walk(item, f"{path}[{index}]")
            elif secrets.is_reference(value):
                found.append((path, value))

        for section in sections or tuple(type(self.env).model_fields):
            walk(getattr(self.env, section, None), section)
        return found

    def resolve_references(self, *sections: str) -> int:
        """Resolve every reference of `sections` (all when none) now, before anything changes: a
        ConfigError names the first one that cannot be resolved. Returns how many were resolved."""
        refs = self.references(*sections)
        for key, ref in refs:
            self.reveal(ref, key)
        return len(refs)

    def public_dict(self) -> dict:
        """The effective environment for `config show`: references stay references."""
        def mask(value):
            if isinstance(value, dict):
                return {k: mask(v) for k, v in value.items()}
            if isinstance(value, list):
                return [mask(v) for v in value]
            if secrets.is_reference(value):
                return f"*** (from {value})"   # the reference names where it comes from, not the value
            return value

        return {"project": self.project, "environment": self.env_name,
                "config": str(self.path), **mask(self.env.model_dump(mode="json"))}


def deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def find_config_path(explicit: str | None) -> Path:
    value = explicit or os.environ.get("RAGOPS_CONFIG") or DEFAULT_CONFIG
    try:
        return Path(value).expanduser().resolve()
    except (RuntimeError, OSError) as exc:   # a symlink loop (RuntimeError before Python 3.13)
        raise ConfigError(f"{value}: cannot resolve the config path: {exc}") from None


def load_config(path: Path, env_name: str | None = None) -> Config:
    # PyYAML is imported here: a start from ragops.config_cache never needs it
    from ragops.yamlfile import config_error, load_file_text, read_file_text

    label = path.name
    try:
        text = read_file_text(path, label)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (use --config or RAGOPS_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    raw, root = load_file_text(text, label)
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: expected a mapping at the top level")

    try:
        top = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise config_error(label, root, exc, prefix=()) from None

    # top-level sections are validated on their own first, so their errors name their own path
    try:
        Sections.model_validate({k: getattr(top, k) for k in SECTIONS})
    except ValidationError as exc:
        raise config_error(label, root, exc, prefix=()) from None

    names = list(top.environments)
    if top.default_env not in top.environments:
        raise ConfigError(f"{label}: default_env: environment {top.default_env!r} is not defined "
                          f"(defined: {', '.join(names)})")
    chosen = env_name or os.environ.get("RAGOPS_ENV") or top.default_env
    if chosen not in top.environments:
        raise ConfigError(f"unknown environment {chosen!r} (defined in {label}: {', '.join(names)})")

    environments = {}
    for name, body in top.environments.items():
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ConfigError(f"{label}: environments.{name}: expected a mapping")
        merged = deep_merge({k: getattr(top, k) for k in SECTIONS}, body)
        try:
            environments[name] = Environment.model_validate(merged)
        except ValidationError as exc:
            raise config_error(label, root, exc, prefix=("environments", name)) from None
        if "path" not in environments[name].service.model_fields_set:   # unset: ./service, else the shipped one
            environments[name].service.path = default_service_path(path.parent)
    return Config(path, top.project, chosen, environments[chosen], raw, names)
