"""`db recover`'s journal: the phase it is in, written before each step (intent first), so a recover
killed or interrupted at any moment leaves a known state that `up`, `status` and `db status` see and
`db recover --resume` (ragops.pitr.recover.resume) / `--abort` finish.

    laying-down   the base is extracted beside the primary (<primary>.recovering-<time>); nothing changed
    stopping      maintenance on; each node's data directory is being kept aside ("aside": the intended
                  names are recorded before each rename)
    replaying     the new data directory is in place; the server replays to the plan's stop point and
                  pauses there (it never promotes itself: recovery_target_action = pause)
    promoted      the primary is recovered; the replicas are being cloned again
The file is removed when the recover finished or was aborted.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ragops.backup.pipeline import Progress, say
from ragops.errors import OperationFailed, UsageError

FILE = "recover.json"


def path(config) -> Path:
    return config.state_dir / FILE


def read(config) -> dict | None:
    from ragops.journal import read_json

    record = read_json(path(config))
    return record if isinstance(record, dict) else None


def write(config, record: dict) -> None:
    from ragops.journal import write_json

    write_json(path(config), record)


def finish(config) -> None:
    path(config).unlink(missing_ok=True)


def hint(record: dict) -> str:
    return (f"an unfinished `db recover` (phase {record.get('phase')}, started {record.get('started')}): finish it "
            "with `ragops db recover --resume` or put the original data directories back with `ragops db recover --abort`")


def refuse_unfinished(config, what: str) -> None:
    """`up` (and a new recover) never start a half-recovered node as if nothing happened."""
    record = read(config)
    if record is not None:
        raise OperationFailed(f"{what}: {hint(record)}")


def state(config) -> dict | None:
    """For `status` and `db status`: the unfinished recover and what to run."""
    record = read(config)
    if record is None:
        return None
    return {"phase": record.get("phase"), "started": record.get("started"), "target": record.get("target"),
            "kept_aside": [pair[1] for pair in record.get("aside", [])], "hint": hint(record)}


def abort(config, progress: Progress = None) -> list[str]:
    """Put the original data directories back: the attempt kept aside as `failed-attempt`, the originals
    renamed back, the nodes started, maintenance off once the database answers."""
    from ragops.db.bringup import database_up
    from ragops.events import quiet
    from ragops.pg import pgctl
    from ragops.pitr.restore import set_aside
    from ragops.platforms import get_platform

    record = read(config)
    if record is None:
        raise UsageError("db recover --abort: no unfinished recover (nothing to put back)")
    steps = []
    for node in pgctl.managed_nodes(config):   # an orphaned replay (paused) or a half-cloned replica
        if node.running():
            say(progress, f"stopping {node.name}")
            try:
                node.stop(mode="immediate")
            except OperationFailed:
                node.kill9()
    staging = record.get("staging")
    if staging and Path(staging).exists():
        shutil.rmtree(staging)
        steps.append(f"removed the unfinished extraction {staging}")
    for data_dir, aside in record.get("aside", []):
        if not Path(aside).exists():
            continue      # never moved (the intent was written, the rename did not happen)
        if Path(data_dir).exists():
            steps.append(f"kept the attempt at {set_aside(Path(data_dir), 'failed-attempt')}")
        os.rename(aside, data_dir)
        steps.append(f"put back {data_dir}")
    wal_dir = record.get("wal_dir")
    if wal_dir:
        shutil.rmtree(wal_dir, ignore_errors=True)
    steps += database_up(config, progress or quiet)
    finish(config)
    platform = get_platform(config)
    if platform.maintenance():
        platform.set_maintenance(False)
        steps.append("maintenance off")
    return steps
