"""Directories and files ragops creates for itself: 0700 and 0600.

Why: the state directory, its logs and pid files were created 0755/0644, so every account on the
machine could read the service's logs (with whatever a client put in a URL) and the state. Only
what is created here gets these modes: a directory or file that already exists keeps its own
(ragops never changes the mode of something it did not create).
"""
from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dirs(path: Path) -> None:
    """mkdir -p in which every directory created here is 0700."""
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        if current.is_symlink():   # dangling: mkdir fails on it as it always did
            break
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)   # the umask can only narrow it
        except FileExistsError:
            continue
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)   # the error it always raised (a file in the way...)


def create_private_file(path: Path) -> None:
    """Create an empty 0600 file unless it exists (a file another program then opens for appending
    keeps the mode); never through a symbolic link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
