"""What `ragops up` (and `up --dry-run`) checks before it starts any process: the files the
environment needs exist. A missing migrations folder used to surface after both PostgreSQL nodes
were running ("migrations directory not found", nodes left behind); a missing security-scan script
only at the pre-deploy gate. One check before the first start is cheaper than a clean-up after it.
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from ragops.config import Config
from ragops.errors import ConfigError
from ragops.resources import script_environment

SCRIPT_SUFFIXES = (".sh", ".bash", ".py")
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def check_files(config: Config, *, runs_service_from_source: bool) -> list[str]:
    """The files `up` will use, one line each; ConfigError (exit 2) naming the key of the first missing one."""
    key = f"environments.{config.env_name}"
    service = config.resolve_path(config.service.path)
    hint = ("leave service.path unset to use the service shipped with ragops (`ragops init` writes such a "
            "ragops.yaml), or point it at a checkout's service/ folder")
    if not service.is_dir():
        raise ConfigError(f"{key}.service.path: {service} is not a folder", hint=hint)
    if runs_service_from_source and not (service / "ragservice").is_dir():
        raise ConfigError(f"{key}.service.path: {service} does not hold the bundled service (ragservice/)", hint=hint)
    migrations = service / "migrations"
    from ragops.pg.migrate import MIGRATION_FILE

    found = sorted(p.name for p in migrations.glob("*.sql") if MIGRATION_FILE.match(p.name)) \
        if migrations.is_dir() else []
    if not found:
        raise ConfigError(f"{key}.service.path: {migrations} holds no migrations (NNNN_name.sql)", hint=hint)
    checked = [f"service {service} ({len(found)} migration(s), newest {found[-1]})"]
    scan = config.env.runbooks.security_scan
    if scan:
        for script in referenced_scripts(scan, config.base_dir):
            if not script.is_file():
                raise ConfigError(f"{key}.runbooks.security_scan: script {script} does not exist",
                                  hint='the shipped scan is sh "$RAGOPS_SCRIPTS/security-scan.sh"')
            checked.append(f"script {script}")
    return checked


def referenced_scripts(command: str, base_dir: Path) -> list[Path]:
    """The script files a configured command names (words ending in .sh/.bash/.py, after the
    variables ragops sets for it are expanded), resolved the way the command runs: from base_dir."""
    values = {**script_environment(), **os.environ}
    expanded = VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), command)
    try:
        words = shlex.split(expanded)
    except ValueError:
        return []    # the shell will say what is wrong with it
    paths = []
    for word in words:
        if word.startswith("-") or not word.endswith(SCRIPT_SUFFIXES):
            continue
        path = Path(word).expanduser()
        paths.append(path if path.is_absolute() else base_dir / path)
    return paths
