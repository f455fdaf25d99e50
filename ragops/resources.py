"""Where the files ragops ships beside its code live: runbooks/, templates/, service/.

From a checkout (editable install, tests, CI) they are the repository's own top-level folders; a wheel
carries copies under ragops/_shipped/<name>, because a non-editable install has no repository around it.
"""
from __future__ import annotations

from pathlib import Path

from ragops.errors import OperationFailed

SHIPPED = ("runbooks", "templates", "service")
_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """The folder `name` (one of SHIPPED) of this installation."""
    if name not in SHIPPED:
        raise ValueError(f"not a shipped folder: {name}")
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / name).is_dir():
        return checkout / name
    packaged = _PACKAGE / "_shipped" / name
    if packaged.is_dir():
        return packaged
    raise OperationFailed(f"this installation of ragops has no {name}/ folder (looked in {checkout} and {packaged})",
                          hint="reinstall ragops: pip install --force-reinstall ragops")
