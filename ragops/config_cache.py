"""The validated configuration, kept between commands.

Why: every command used to spend about a third of its start-up parsing ragops.yaml and building
pydantic's validators for every settings model (~100-150 ms of CPU, measured with -X importtime),
to arrive at the same Config as the command before. The models are declared with defer_build
(ragops.config_types.Strict), so a Config read back from this cache never builds a validator:
`ragops rollback` reaches the router sooner (issue 13 item 14), and every other command starts
faster too.

What is kept: the Config object exactly as `load_config` returned it (references stay
references: no secret value is ever resolved into it), pickled, under the user's own cache
directory ($XDG_CACHE_HOME or ~/.cache, then ragops/), one file per config file and environment.
It is used only when everything that went into it is the same: the config file's bytes (SHA-256),
the environment asked for, ragops's code (its version and the newest modification time of its
source files), Python's and pydantic's versions. Anything else is a miss: the file is loaded and
validated as always, and the cache is rewritten. `RAGOPS_NO_CONFIG_CACHE=1` turns it off.

Safety: a pickle runs code when read, so only a file this account wrote is read: the directory
must be owned by the effective user and writable by nobody else, the file is opened without
following a symlink and must be owned by the user, mode 0600; written through a temporary file and
an atomic rename. A file that fails any of that, or fails to load, is ignored (and replaced).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
from pathlib import Path

KEEP = 64   # cache files; the least recently written beyond that are removed
PREFIX = "config-"


def load_cached(path: Path, env_name: str | None):
    """load_config(path, env_name), from the cache when nothing that went into it changed."""
    from ragops.config import load_config

    if os.environ.get("RAGOPS_NO_CONFIG_CACHE"):
        return load_config(path, env_name)
    try:
        text = path.read_bytes()
    except OSError:
        return load_config(path, env_name)   # its own error message (missing, unreadable)
    directory = cache_dir()
    wanted = env_name or os.environ.get("RAGOPS_ENV") or ""
    key = _key(path, wanted, text)
    entry = directory / f"{PREFIX}{hashlib.sha256(f'{path}|{wanted}'.encode()).hexdigest()[:24]}.pickle" \
        if directory else None
    if entry is not None:
        found = _read(entry, key)
        if found is not None:
            return found
    config = load_config(path, env_name)
    if entry is not None:
        _write(entry, key, config)
    return config


def cache_dir() -> Path | None:
    """ragops's directory in the user's cache directory, created 0700; None when it is not this
    account's alone (then nothing is cached)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"))
    directory = base / "ragops"
    try:
        existing = base
        while not existing.exists():
            existing = existing.parent
        if not _not_shared(existing.stat()):
            return None      # another account's home (sudo keeping HOME) or a shared place: write nothing there
        if not directory.exists():
            base.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.mkdir(mode=0o700, exist_ok=True)
        if not _not_shared(base.stat()) or not _private(directory):
            return None
    except OSError:
        return None
    return directory


def _private(path: Path) -> bool:
    """Owned by this account, a directory (not a symlink), writable by nobody else."""
    info = path.lstat()
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and _not_shared(info)


def _not_shared(info: os.stat_result) -> bool:
    """Owned by this account or root, and writable by no group or other account (a shared /tmp is not)."""
    return info.st_uid in (os.geteuid(), 0) and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _key(path: Path, env: str, text: bytes) -> str:
    import pydantic

    from ragops import __version__

    digest = hashlib.sha256(text)
    digest.update(f"|{path}|{env}|{__version__}|{sys.version}|{pydantic.VERSION}|{_code_stamp()}".encode())
    digest.update(b"|service" if (path.parent / "service").is_dir() else b"|no-service")   # service.path default
    return digest.hexdigest()


def _code_stamp() -> int:
    """The newest modification time of ragops's source files: an edited model is a miss."""
    newest = 0
    for root, dirs, files in os.walk(Path(__file__).parent):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime_ns)
    return newest


def _read(entry: Path, key: str):
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            return None
        try:
            stored_key, config = pickle.load(handle)   # our own 0600 file in our own directory (above)
        except Exception:  # noqa: BLE001 - a truncated or stale file is a miss
            return None
    return config if stored_key == key else None


def _write(entry: Path, key: str, config) -> None:
    temp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            pickle.dump((key, config), handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temp, entry)
        _evict(entry.parent)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        temp.unlink(missing_ok=True)   # caching is an optimisation: a failure to write is not an error


def _evict(directory: Path) -> None:
    entries = []
    for item in os.scandir(directory):
        if item.name.startswith(PREFIX) and item.name.endswith(".pickle") and item.is_file(follow_symlinks=False):
            entries.append((item.stat(follow_symlinks=False).st_mtime_ns, item.path))
    for _mtime, old in sorted(entries)[:-KEEP]:
        try:
            os.unlink(old)
        except OSError:
            pass
