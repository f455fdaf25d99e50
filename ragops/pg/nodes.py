"""The configured database nodes (database.primary, database.replicas), looked up by name."""
from __future__ import annotations

from ragops.config import Config, DbNode
from ragops.errors import ConfigError


def all_nodes(config: Config) -> list[DbNode]:
    return [config.database.primary, *config.database.replicas]


def find_node(config: Config, name: str) -> DbNode:
    for node in all_nodes(config):
        if node.name == name:
            return node
    names = ", ".join(n.name for n in all_nodes(config))
    raise ConfigError(f"unknown database node {name!r} (nodes: {names})")
