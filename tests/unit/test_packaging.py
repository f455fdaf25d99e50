"""The wheel works without the repository: it carries runbooks/, templates/ and service/ under ragops/_shipped/."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _tracked_files(folder: str) -> set[str]:
    """The files of a shipped folder, relative to the repository (what the wheel must carry)."""
    return {str(path.relative_to(REPO)) for path in (REPO / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}


@pytest.fixture(scope="module")
def wheel(built_wheel) -> Path:
    return built_wheel     # tests/conftest.py: built once per session (test_first_run installs the same one)


def test_wheel_carries_runbooks_templates_and_service(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("runbooks", "templates", "service"):
        expected = {f"ragops/_shipped/{name}" for name in _tracked_files(folder)}
        assert expected, folder
        assert expected <= names, sorted(expected - names)
    assert any(n.startswith("ragops/_shipped/runbooks/") and n.endswith(".yaml") for n in names)
    assert any(n.startswith("ragops/_shipped/service/migrations/") and n.endswith(".sql") for n in names)
    assert "ragops/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_carries_exactly_the_checkouts_modules(wheel):
    """Every module of the checkout, and none left over in build/ from an earlier build."""
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist()
                if n.startswith("ragops/") and n.endswith(".py") and not n.startswith("ragops/_shipped/")}
    in_checkout = {str(path.relative_to(REPO)) for path in (REPO / "ragops").rglob("*.py")}
    assert in_wheel == in_checkout, sorted(in_wheel ^ in_checkout)


def test_installed_wheel_finds_its_shipped_files(wheel, tmp_path):
    """Unpacked away from the checkout, the lookups answer with the copies inside the package."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("from ragops.resources import shipped_dir; from ragops.pg.migrate import default_migrations_dir; "
             "print(shipped_dir('runbooks')); print(default_migrations_dir())")
    done = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {probe}"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    runbooks, migrations = (Path(line) for line in done.stdout.split())
    assert runbooks == site / "ragops" / "_shipped" / "runbooks" and list(runbooks.glob("*.yaml"))
    assert migrations == site / "ragops" / "_shipped" / "service" / "migrations" and list(migrations.glob("*.sql"))


def test_wheel_carries_the_security_scan_the_shipped_config_runs(wheel):
    """runbooks.security_scan of ragops.yaml and of `ragops init` names $RAGOPS_SCRIPTS/security-scan.sh."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "ragops/scripts/security-scan.sh" in names
    for config in (REPO / "ragops.yaml", REPO / "templates" / "init" / "ragops-local.yaml"):
        assert 'security_scan: sh "$RAGOPS_SCRIPTS/security-scan.sh"' in config.read_text(), config
