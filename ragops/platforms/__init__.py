"""Platforms: where the service runs. The registry maps an environment's `platform:` to its class.

Adding a platform is a module with a `Platform` subclass plus one line in PLATFORMS. Classes are
imported on first use, so the CLI starts without importing a platform (or its SDK).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ragops.errors import ConfigError, OperationFailed

if TYPE_CHECKING:
    from ragops.config import Config
    from ragops.platforms.base import Platform

PLATFORMS: dict[str, str] = {
    "local": "ragops.platforms.local:LocalPlatform",
    "docker": "ragops.platforms.docker:DockerPlatform",
    "kubernetes": "ragops.platforms.kubernetes:KubernetesPlatform",
}


def platform_class(config: Config) -> type[Platform]:
    """The class of the environment's platform; ask it for capabilities without connecting anywhere."""
    name = config.env.platform
    if name not in PLATFORMS:
        raise ConfigError(f"environments.{config.env_name}.platform: unknown platform {name!r} "
                          f"(one of: {', '.join(PLATFORMS)})")
    module, _, attr = PLATFORMS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError:
        raise OperationFailed(f"the {name} platform is not available in this version of ragops") from None


def get_platform(config: Config, region: str | None = None) -> Platform:
    """The environment's platform; `region` picks a failover region where the platform has them."""
    cls = platform_class(config)
    if cls.supports_regions:
        return cls(config, region=region)
    return cls(config)
