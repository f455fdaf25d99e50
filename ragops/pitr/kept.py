"""Data directories `db recover` kept aside, named for what they are:

    <node>.original-<time>         the node's data directory before a recover (what `--abort` puts back)
    <node>.failed-attempt-<time>   what a failed or aborted recover wrote (never the data to restore)
    <node>.recovering-<time>       an extraction a killed recover left (its journal names it while unfinished)
    <node>.before-recover-<time>   kept by an earlier ragops: an original or a failed attempt (it did not say)

`ragops db kept` lists them (size, age, whether a server ever started on it), `--remove ID --yes`
deletes one that no unfinished recover needs and no server runs on.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ragops.errors import OperationFailed, UsageError

KINDS = {"original": "the data directory before a recover", "failed-attempt": "what a failed recover wrote",
         "recovering": "an unfinished extraction", "before-recover": "an original or a failed attempt (older ragops)"}
NAME_RE = re.compile(r"^(?P<node>.+)\.(?P<kind>original|failed-attempt|recovering|before-recover)-(?P<stamp>[0-9TZ]+)$")


@dataclass
class Kept:
    id: str
    node: str
    kind: str
    holds: str
    path: str
    bytes: int
    age_seconds: float
    started: bool
    needed_by_unfinished_recover: bool


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def kept(config) -> list[Kept]:
    from ragops.pg import pgctl
    from ragops.pitr import recover_journal

    record = recover_journal.read(config) or {}
    needed = {aside for _dir, aside in record.get("aside", [])} | {record.get("staging") or ""}
    found = []
    parents = {pgctl.managed_node(config, name).data_dir.parent
               for name in [config.database.primary.name, *[r.name for r in config.database.replicas]]}
    for parent in sorted(parents):
        for entry in sorted(parent.iterdir()) if parent.is_dir() else []:
            match = NAME_RE.match(entry.name)
            if not match or not entry.is_dir() or entry.is_symlink():
                continue
            found.append(Kept(entry.name, match["node"], match["kind"], KINDS[match["kind"]], str(entry),
                              _size(entry), round(time.time() - entry.stat().st_mtime, 1),
                              (entry / "postmaster.opts").exists(), str(entry) in needed))
    return found


def total_bytes(config) -> int:
    return sum(k.bytes for k in kept(config))


def remove(config, kept_id: str) -> Kept:
    match = next((k for k in kept(config) if k.id == kept_id), None)
    if match is None:
        raise UsageError(f"db kept --remove {kept_id}: no such kept-aside directory (ragops db kept lists them)")
    if match.needed_by_unfinished_recover:
        raise OperationFailed(f"db kept --remove {kept_id}: an unfinished recover needs it (ragops db recover "
                              "--resume or --abort first)")
    if (Path(match.path) / "postmaster.pid").exists():
        raise OperationFailed(f"db kept --remove {kept_id}: a server may run on it ({match.path}/postmaster.pid)")
    shutil.rmtree(match.path)
    return match
