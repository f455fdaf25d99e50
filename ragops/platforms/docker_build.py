"""`ragops build`: the service image from service/Dockerfile, built on every docker host.

The image is `<service.image>:<version>` (default repository `<project>/rag-service`), built with
`BASE_IMAGE=<docker.base_image>` and `--network host` (pip needs the network during the build),
labelled with the version and the git revision. With `docker.push: true` it is pushed after the
build (the repository must name the registry); nothing here has been tested against a registry.
"""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field

from ragops.config import Config
from ragops.errors import OperationFailed, UsageError
from ragops.events import quiet as _noop
from ragops.platforms.base import Progress


@dataclass
class BuildResult:
    image: str
    version: str
    revision: str | None
    hosts: list[dict] = field(default_factory=list)
    pushed: bool = False
    seconds: float = 0.0


def git_revision(path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--", "."], capture_output=True,
                           text=True, timeout=10).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def require_docker(config: Config, what: str = "`ragops build`") -> None:
    """A UsageError unless the environment runs on docker: images are built for docker hosts only."""
    from ragops.platforms import platform_class
    from ragops.platforms.docker import DockerPlatform

    kind = platform_class(config)
    if not issubclass(kind, DockerPlatform):
        raise UsageError(f"{what} needs a docker environment ({config.env_name} is {kind.name}); pick one with --env")


def build(config: Config, version: str | None = None, *, push: bool | None = None,
          progress: Progress = _noop) -> BuildResult:
    from ragops.platforms.docker import DockerPlatform
    from ragops.platforms.docker_host import error_text

    require_docker(config)
    platform = DockerPlatform(config)
    version = version or config.service.version
    image = platform.image_ref(version)
    context = config.resolve_path(config.service.path)
    if not (context / "Dockerfile").is_file():
        raise OperationFailed(f"service.path: {context} has no Dockerfile")
    revision = git_revision(context)
    labels = {"org.opencontainers.image.version": version, "ragops.version": version,
              "ragops.project": config.project}
    if revision:
        labels["org.opencontainers.image.revision"] = revision
        labels["ragops.revision"] = revision
    started = time.monotonic()
    result = BuildResult(image=image, version=version, revision=revision)
    for host in platform.hosts:
        progress(f"{host.label}: building {image} (BASE_IMAGE={config.env.docker.base_image})")
        began = time.monotonic()
        try:
            built, logs = host.client.images.build(
                path=str(context), tag=image, rm=True, network_mode="host", labels=labels,
                buildargs={"BASE_IMAGE": config.env.docker.base_image})
        except Exception as exc:  # noqa: BLE001 - BuildError/APIError: name the host
            detail = error_text(exc)
            log = [c.get("stream", "").strip() for c in getattr(exc, "build_log", []) or [] if c.get("stream")]
            tail = " | ".join(line for line in log[-3:] if line)
            raise OperationFailed(f"host {host.label}: building {image} failed: {detail}"
                                  + (f" ({tail})" if tail else "")) from None
        result.hosts.append({"host": host.label, "id": built.id, "seconds": round(time.monotonic() - began, 1)})
    if push if push is not None else config.env.docker.push:
        repo, tag = image.rsplit(":", 1)
        progress(f"pushing {image}")
        for line in platform.primary.client.images.push(repo, tag=tag, stream=True, decode=True):
            if line.get("error"):
                raise OperationFailed(f"pushing {image} failed: {line['error']}")
        result.pushed = True
    result.seconds = round(time.monotonic() - started, 2)
    return result
