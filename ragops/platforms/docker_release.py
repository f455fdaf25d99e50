"""Before a docker deploy changes anything: the version's image is on every host."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ragops.errors import OperationFailed

if TYPE_CHECKING:
    from ragops.platforms.docker import DockerPlatform


def require_release_image(platform: DockerPlatform, version: str) -> None:
    """<service.image>:<version> is on every host (pulled where a registry has it), or an
    OperationFailed that names the command building it: checked before a deploy changes anything."""
    image = platform.image_ref(version)
    missing = []
    for host in platform.hosts:
        try:
            host.require_image(image, f"version {version}")
        except OperationFailed as exc:
            missing.append((host.label, exc.message))
    if missing:
        env = platform.config.env_name
        where = ", ".join(label for label, _ in missing)
        reason = missing[0][1].split("could not be pulled: ", 1)[-1][:160]
        raise OperationFailed(f"image {image} is not on host {where} and no registry has it (pull: {reason})",
                              hint=f"build it on every host: ragops -e {env} build --version {version} "
                                   f"(or deploy with --build: ragops -e {env} deploy --version {version} --build)")
