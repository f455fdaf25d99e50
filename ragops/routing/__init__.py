"""Routers: one module per router behind the interface in ragops.routing.base.

Adding a router is a new module plus one line in ROUTERS (imported lazily: a platform only loads
the router it uses).
"""
from __future__ import annotations

import importlib
from typing import Any

from ragops.errors import ConfigError
from ragops.routing.base import ConfigStore, FileStore, Router, RouterState

ROUTERS = {
    "traefik": "ragops.routing.traefik_file:TraefikFileRouter",
    "haproxy": "ragops.routing.haproxy:HAProxyRouter",
}

__all__ = ["ROUTERS", "ConfigStore", "FileStore", "Router", "RouterState", "get_router", "router_class"]


def router_class(kind: str) -> type[Router]:
    try:
        target = ROUTERS[kind]
    except KeyError:
        raise ConfigError(f"router.kind: unknown router {kind!r} (known: {', '.join(ROUTERS)})") from None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def get_router(kind: str, **settings: Any) -> Router:
    """A router of `kind` built from the common settings (see Router.__init__)."""
    return router_class(kind)(**settings)
