"""Where the files ragops ships beside its code live: runbooks/, templates/, service/, scripts.

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


def scripts_dir() -> Path:
    """The scripts ragops ships inside its package (the security scan): the same in a checkout and a wheel."""
    return _PACKAGE / "scripts"


def script_environment() -> dict[str, str]:
    """Variables every configured command (runbooks.security_scan, shell steps) sees: where the shipped
    scripts are and which Python runs ragops, so `sh "$RAGOPS_SCRIPTS/security-scan.sh"` works from a
    wheel and checks the environment ragops runs in, not whatever python3 is first on PATH."""
    import sys

    return {"RAGOPS_SCRIPTS": str(scripts_dir()), "RAGOPS_PYTHON": sys.executable}


def default_service_path(base_dir: Path) -> str:
    """service.path when ragops.yaml does not set it: ./service beside the file when that folder
    exists (a clone), else the service shipped with this installation (a wheel user's first run)."""
    if (base_dir / "service").is_dir():
        return "./service"
    try:
        return str(shipped_dir("service"))
    except OperationFailed:
        return "./service"     # not shipped either: the checks before `up` name the missing folder
