"""What `ragops down --purge` deletes, and what it keeps.

Purge deletes the state directory (data of the local platform, logs, journals, generated secrets).
Backups are never deleted by a purge unless asked for by name (`--purge-backups`): `file://` backup
folders inside the state directory are kept, and so is the generated backup key (without it no
backup, wherever it is stored, can be restored). `--purge-backups` deletes the environment's
`file://` backup folders and that key; backups in S3 are left to `ragops backup prune`.
"""
from __future__ import annotations

import shutil
from pathlib import Path


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def file_backup_dirs(config) -> list[Path]:
    """The folders of the environment's `file://` backup storages (backups.storage, backups.copy_to)."""
    dirs = []
    for url in (config.backups.storage, config.backups.copy_to):
        if url and url.startswith("file://") and url[len("file://"):]:
            dirs.append(config.resolve_path(url[len("file://"):]))
    return dirs


def backup_key_file(config) -> Path:
    from ragops.db.crypto import KEY_FILE

    return config.state_dir / "secrets" / KEY_FILE


def kept_paths(config) -> list[Path]:
    """What a purge (without --purge-backups) leaves inside the state directory."""
    state = config.state_dir
    keep = [d for d in file_backup_dirs(config) if _inside(d, state)] + [backup_key_file(config)]
    return [path for path in keep if path.exists()]


def purge_plan(config, *, purge_backups: bool, server_home: Path | None = None) -> dict:
    """The paths a purge deletes and keeps, for the prompt and --dry-run."""
    delete = [p for p in (config.state_dir, server_home) if p is not None and p.exists()]
    keep: list[Path] = []
    if purge_backups:
        delete += [p for p in (*file_backup_dirs(config), backup_key_file(config)) if p.exists()]
    else:
        keep = kept_paths(config) + [d for d in file_backup_dirs(config)
                                     if d.exists() and not _inside(d, config.state_dir)]
    return {"delete": [str(p) for p in delete], "keep": [str(p) for p in keep]}


def _delete_except(root: Path, keep: list[Path]) -> None:
    for child in root.iterdir():
        if any(child.resolve() == k.resolve() for k in keep):
            continue
        if child.is_dir() and not child.is_symlink():
            if any(_inside(k, child) for k in keep):
                _delete_except(child, keep)
            else:
                shutil.rmtree(child)
        else:
            child.unlink()


def purge_state_dir(config) -> list[str]:
    """Delete the state directory, except the backups and the backup key kept inside it."""
    state = config.state_dir
    if not state.exists():
        return []
    keep = kept_paths(config)
    if not keep:
        shutil.rmtree(state)
        return [f"delete {state}"]
    _delete_except(state, keep)
    return [f"delete {state} (kept: {', '.join(str(p) for p in keep)})"]


def purge_backups(config) -> list[str]:
    """`--purge-backups`: the environment's file:// backup folders and the generated backup key."""
    steps = []
    for path in [*file_backup_dirs(config), backup_key_file(config)]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        steps.append(f"delete {path}")
    state = config.state_dir
    if state.exists() and not any(p for p in state.rglob("*") if not p.is_dir()):
        shutil.rmtree(state)   # only the empty folders the kept files lived in remain
    return steps
