"""Platforms: where the service runs. `get_platform` picks the one an environment names."""
from __future__ import annotations

from ragops.errors import OperationFailed


def get_platform(config, region: str | None = None):
    platform = config.env.platform
    if platform == "local":
        from ragops.platforms.local import LocalPlatform

        return LocalPlatform(config, region=region)
    if platform == "docker":
        try:
            from ragops.platforms.docker import DockerPlatform
        except ImportError:
            raise OperationFailed("the docker platform is not available in this version of ragops") from None
        return DockerPlatform(config)
    try:
        from ragops.platforms.kubernetes import KubernetesPlatform
    except ImportError:
        raise OperationFailed("the kubernetes platform is not available in this version of ragops") from None
    return KubernetesPlatform(config)
