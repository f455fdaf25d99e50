"""Issue 13 item 14: `ragops rollback` starts without typer and without building pydantic's
validators (ragops.cli.fast_path, ragops.config_cache), and behaves exactly as before."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragops.cli.fast_path import take
from ragops.devstack import write_local_config

REPO = Path(__file__).resolve().parents[2]


def ragops(*args: str, cache: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "CI": "1", **(extra_env or {})}
    env.pop("RAGOPS_NO_CONFIG_CACHE", None)
    return subprocess.run([sys.executable, "-m", "ragops.cli.main", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)


PROBE = ("import sys, json\nfrom ragops.cli.main import main\ncode = main(sys.argv[1:])\n"
         "from ragops.config import Environment\n"
         "print(json.dumps({'code': code, 'typer': 'typer' in sys.modules,"
         " 'validators_built': Environment.__pydantic_complete__}), file=sys.stderr)")


def probe(*args: str, cache: Path) -> tuple[dict, str]:
    """Run main(args) in a fresh interpreter; what it loaded, and what it printed on stderr."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "CI": "1"}
    env.pop("RAGOPS_NO_CONFIG_CACHE", None)
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)
    *lines, last = done.stderr.strip().splitlines()
    return json.loads(last), "\n".join(lines)


@pytest.mark.parametrize("argv,taken", [
    (["rollback"], True),
    (["-c", "x.yaml", "-q", "-y", "rollback", "--to", "v1"], True),
    (["--output=json", "-e", "prod", "rollback", "--to=v1", "--resume"], True),
    (["-vv", "--no-color", "rollback"], True),
    (["rollback", "--help"], False),        # typer's help
    (["rollback", "-h"], False),
    (["rollback", "--to"], False),          # typer's "requires an argument"
    (["rollback", "--bogus"], False),       # typer's "no such option"
    (["rollback", "extra"], False),
    (["-o", "yaml", "rollback"], False),    # typer's "expected text or json"
    (["-o=json", "rollback"], False),
    (["deploy", "--version", "v2"], False),
    (["status"], False),
    ([], False),
])
def test_only_a_plain_rollback_line_takes_the_fast_path(argv, taken):
    assert (take(argv) is not None) == taken


def test_rollback_runs_without_typer_and_without_building_validators(tmp_path):
    config = write_local_config(tmp_path)
    cache = tmp_path / "cache"
    first, text = probe("-c", str(config), "rollback", "--yes", cache=cache)   # nothing is deployed here
    assert first["code"] == 2 and "no color serves traffic; nothing to roll back from" in text
    assert not first["typer"]
    assert first["validators_built"]          # the first start validated the file, and cached it
    again, text_again = probe("-c", str(config), "rollback", "--yes", cache=cache)
    assert again == {"code": 2, "typer": False, "validators_built": False}
    assert text_again == text                 # the same one-line error from the cached start
    status, _ = probe("-c", str(config), "status", cache=cache)    # other commands: typer, cached config
    assert status["typer"] and not status["validators_built"]


def test_fast_path_errors_are_the_same_lines_and_exit_codes(tmp_path):
    config = write_local_config(tmp_path)
    cache = tmp_path / "cache"
    bad = ragops("-c", str(config), "rollback", "--to", "../etc", "--yes", cache=cache)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: --to: '../etc' is not a version label")
    unknown = ragops("-c", str(config), "rollback", "--bogus", cache=cache)   # typer parses this one
    assert unknown.returncode == 2 and unknown.stderr.splitlines()[0] == "error: no such option: --bogus"
    no_yes = ragops("-c", str(config), "rollback", cache=cache)
    assert no_yes.returncode == 5 and "refusing without --yes" in no_yes.stderr
    helped = ragops("-c", str(config), "rollback", "--help", cache=cache)
    assert helped.returncode == 0 and "Usage: ragops rollback" in helped.stdout and "--to" in helped.stdout


def test_an_edited_config_is_read_again(tmp_path):
    config = write_local_config(tmp_path)
    cache = tmp_path / "cache"
    assert ragops("-c", str(config), "config", "validate", cache=cache).returncode == 0
    config.write_text(config.read_text().replace("platform: local", "platform: local\n    bogus_key: 1", 1))
    edited = ragops("-c", str(config), "rollback", "--yes", cache=cache)
    assert edited.returncode == 2 and "bogus_key" in edited.stderr


def test_the_cache_is_private_and_never_read_from_a_shared_place(tmp_path):
    config = write_local_config(tmp_path, extra={"service": {"api_keys": "${env:FAST_START_KEYS}"}})
    cache = tmp_path / "cache"
    validated = ragops("-c", str(config), "config", "validate", cache=cache,
                       extra_env={"FAST_START_KEYS": "k-8d1f0c2e9a"})   # validate resolves the references
    assert validated.returncode == 0, validated.stderr
    [entry] = list((cache / "ragops").iterdir())
    assert (cache / "ragops").stat().st_mode & 0o777 == 0o700 and entry.stat().st_mode & 0o777 == 0o600
    kept = entry.read_bytes()
    assert b"${env:FAST_START_KEYS}" in kept and b"k-8d1f0c2e9a" not in kept   # references, never values

    shared = tmp_path / "shared"
    (shared / "ragops").mkdir(parents=True)
    (shared / "ragops").chmod(0o777)           # another account could plant a pickle here
    assert ragops("-c", str(config), "config", "show", cache=shared).returncode == 0
    assert list((shared / "ragops").iterdir()) == []

    entry.unlink()
    target = tmp_path / "elsewhere.pickle"
    target.write_bytes(b"not a pickle")
    entry.symlink_to(target)                    # never followed, never written through
    assert ragops("-c", str(config), "config", "show", cache=cache).returncode == 0
    assert target.read_bytes() == b"not a pickle"


def test_a_damaged_cache_file_is_a_miss(tmp_path):
    config = write_local_config(tmp_path)
    cache = tmp_path / "cache"
    assert ragops("-c", str(config), "config", "validate", cache=cache).returncode == 0
    [entry] = list((cache / "ragops").iterdir())
    entry.write_bytes(entry.read_bytes()[:40])
    again = ragops("-c", str(config), "-o", "json", "config", "show", cache=cache)
    assert again.returncode == 0 and json.loads(again.stdout)["environment"] == "test"
    assert entry.stat().st_size > 40           # rewritten whole


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another account")
def test_root_writes_nothing_into_another_accounts_cache(tmp_path):
    """`sudo ragops ...` keeping the user's HOME: root must not create or write files there."""
    config = write_local_config(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)           # nobody's
    shown = ragops("-c", str(config), "config", "show", cache=home / ".cache")
    assert shown.returncode == 0 and list(home.iterdir()) == []
