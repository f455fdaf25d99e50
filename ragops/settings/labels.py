"""Version labels: what `--version`, `--to` and `service.version` accept.

A version ends up in container tags, file names, log lines and router config, so it is held to the
container-tag grammar: 1-128 characters of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`.
"""
from __future__ import annotations

import re

from ragops.errors import UsageError

VERSION_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def is_version_label(value: str) -> bool:
    return bool(VERSION_RE.fullmatch(value))


def check_version_label(value: str, where: str) -> str:
    if not is_version_label(value):
        raise UsageError(f"{where}: {value!r} is not a version label (letters, digits, '_', '.', '-'; "
                         f"up to 128; not starting with '.' or '-'), like a container tag")
    return value
