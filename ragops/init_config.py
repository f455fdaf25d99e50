"""The ragops.yaml `ragops init` writes: a shipped, commented template per platform
(templates/init/ragops-<platform>.yaml), written where --config / RAGOPS_CONFIG / ./ragops.yaml says."""
from __future__ import annotations

import os

from ragops.config import find_config_path
from ragops.errors import ConfigError, OperationFailed
from ragops.resources import shipped_dir

NEXT_STEP = {"local": "ragops up",
             "docker": "ragops build --version v1 && ragops up (images: scripts/docker-images.sh in a clone)"}


def write_config(explicit: str | None, platform: str, *, force: bool = False) -> dict:
    """Write the template for `platform`; an existing file is a ConfigError unless force."""
    target = find_config_path(explicit)
    text = (shipped_dir("templates") / "init" / f"ragops-{platform}.yaml").read_text()
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; kept as it is", hint="ragops init --force replaces it")
    if not target.parent.is_dir():
        raise ConfigError(f"{target.parent}: no such folder for the config file")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:   # a new file, then an atomic rename: an interrupted init never leaves half a config
        with open(temporary, "x") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise OperationFailed(f"cannot write {target}: {exc.strerror}") from None
    return {"config": str(target), "platform": platform, "environment": platform, "next": NEXT_STEP[platform]}
