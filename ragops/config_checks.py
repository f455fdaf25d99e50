"""Checks of the configured paths and secret references that need the file system, naming FILE:LINE.

Why: `state_dir` pointing at a file passed validation and failed later in `status` with an
unexpected NotADirectoryError; a `service.path` that does not exist passed `config validate` and
`deploy --plan`; a secret that could not be resolved was reported without its line. Loading the
configuration stays free of file-system checks (a cached Config is never re-validated), so these
run where they matter: every command (state_dir, one stat), `config validate` and deploys
(service.path), and every resolution of a secret reference (its line, only on error).
"""
from __future__ import annotations

import re
from pathlib import Path

from ragops.errors import ConfigError


def key_line(path: Path, *locs: tuple) -> int | None:
    """The line of the first key path in `locs` written in the file (None when none is, or the
    file cannot be read again)."""
    import yaml

    from ragops.yamlfile import YamlSyntaxError, line_of, load, read_text

    try:
        _, root = load(read_text(path))
    except (OSError, ValueError, YamlSyntaxError):
        return None
    for loc in locs:
        node = root
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == str(part)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
            else:
                node = None
            if node is None:
                break
        else:
            return line_of(root, loc)
    return None


def key_path(key: str) -> tuple:
    """"docker.accessories.pg.secrets[0]" -> ("docker", "accessories", "pg", "secrets", 0)."""
    parts: list = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", key):
        parts.append(int(index) if index else name)
    return tuple(parts)


def where(config, key: str) -> str:
    """`ragops.yaml:LINE` for a key of the selected environment (its own, else the top-level default)."""
    loc = key_path(key)
    line = key_line(config.path, ("environments", config.env_name, *loc), loc)
    return f"{config.path.name}:{line}" if line else config.path.name


def check_state_dir(config) -> None:
    """ConfigError when the state directory (or the nearest existing folder above it) is not a folder."""
    state = config.state_dir
    existing = state
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():   # a dangling symlink: mkdir would fail on it
            break
        existing = existing.parent
    if not existing.is_dir():
        what = "is not a directory" if existing == state else f"cannot be created: {existing} is not a directory"
        raise ConfigError(f"{where(config, 'state_dir')}: state_dir: {state} {what}")


def check_service_path(config, required: bool) -> None:
    """ConfigError when service.path (the service, its migrations) is not an existing folder: when
    `required` (the platform reads its migrations from there: the caller asks the platform's
    capability) and wherever the file names it. An environment that deploys an image and leaves the
    default alone is not checked."""
    path = config.resolve_path(config.service.path)
    if path.is_dir():
        return
    written = key_line(config.path, ("environments", config.env_name, "service", "path"), ("service", "path"))
    if required or written is not None:
        what = "does not exist" if not path.exists() else "is not a directory"
        raise ConfigError(f"{where(config, 'service.path')}: service.path: {path} {what} "
                          "(the service's folder, with its migrations)")
