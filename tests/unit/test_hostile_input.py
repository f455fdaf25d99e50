"""Hostile or absurd input (issue 24, points 7 and 8): every case exits 2 with one line naming
FILE:LINE (config) or the option (command line), fast, never "unexpected" or a hang."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from ragops.cli.main import main
from ragops.config import load_config
from ragops.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
HEAD = "project: demo\ndefault_env: local\n"
ENVS = "environments:\n  local: {}\n"


def billion_laughs() -> str:
    """~1 KB: 9 levels of 9 aliases, 9^9 values once every alias is followed."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return HEAD + "\n".join(lines) + "\n" + ENVS


def write_bytes(tmp_path: Path, data: bytes | str) -> Path:
    path = tmp_path / "ragops.yaml"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


HOSTILE = {
    "billion-laughs": (billion_laughs(), r"ragops\.yaml:\d+: invalid YAML: more than \d+ values with every alias"),
    "nul-byte": (b"project: demo\ndefault_env: local\x00\n" + ENVS.encode(), r"ragops\.yaml:2: NUL byte"),
    "latin-1": (b"project: d\xe9mo\n" + b"default_env: local\n" + ENVS.encode(), r"ragops\.yaml:1: byte 0xe9 .* not UTF-8"),
    "utf-16": ((HEAD + ENVS).encode("utf-16"), r"ragops\.yaml:1: the file is UTF-16"),
    "20000-deep": (HEAD + ENVS + "x: " + "[" * 20000 + "]" * 20000 + "\n", r"ragops\.yaml:5: invalid YAML: nested more than"),
    "deep-blocks": (HEAD + ENVS + "".join("  " * i + f"k{i}:\n" for i in range(100)), r"ragops\.yaml:\d+: invalid YAML: nested"),
    "recursive-alias": (HEAD + ENVS + "x: &a [*a]\n", r"ragops\.yaml:5: invalid YAML: alias \*a is used inside its own anchor"),
    "control-char": (HEAD + "x: \x07\n" + ENVS, r"ragops\.yaml:3: invalid YAML: character"),
    "2 MB": (HEAD + ENVS + ("# " + "x" * 1000 + "\n") * 2100, r"ragops\.yaml: larger than 1024 KiB"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_config_exits_2_naming_the_line(tmp_path, capsys, case):
    data, expected = HOSTILE[case]
    path = write_bytes(tmp_path, data)
    started = time.perf_counter()
    assert main(["-c", str(path), "config", "validate"]) == 2
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    assert re.search(r"^error: " + expected, err), err
    assert "unexpected" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert seconds < 5, f"{case} took {seconds:.1f} s"


def test_billion_laughs_is_refused_in_milliseconds(tmp_path):
    path = write_bytes(tmp_path, billion_laughs())
    with pytest.raises(ConfigError):
        load_config(path)   # the first load imports PyYAML and pydantic: not what is measured
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        with pytest.raises(ConfigError, match="alias"):
            load_config(path)
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.1, timings


def test_symlink_loop_config_path_exits_2(tmp_path, capsys):
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    assert main(["-c", str(tmp_path / "a.yaml"), "status"]) == 2
    err = capsys.readouterr().err
    assert "a.yaml" in err and "symlink loop" in err.lower() and "unexpected" not in err


def test_merge_key_overrides_are_no_duplicates_and_duplicates_name_their_lines(tmp_path, capsys):
    base = HEAD + "service: &svc\n  port: 8100\n  version: v1\nenvironments:\n  local:\n    service:\n      <<: *svc\n"
    path = write_bytes(tmp_path, base + "      port: 8200\n")
    assert load_config(path).service.port == 8200   # the mapping's own key overrides the merged one
    path = write_bytes(tmp_path, base + "      port: 8200\n      port: 8300\n")
    assert main(["-c", str(path), "config", "validate"]) == 2
    assert "ragops.yaml:11: environments.local.service.port: duplicate key (first on line 10, again on line 11)" \
        in capsys.readouterr().err


@pytest.mark.parametrize(("body", "expected"), [
    ("deploy:\n  health_timeout: 99999999999999999999d\n",
     r"ragops\.yaml:4: deploy\.health_timeout: duration '99999999999999999999d' is above the maximum 3660d"),
    ("deploy:\n  health_timeout: 2h\n", r"ragops\.yaml:4: deploy\.health_timeout: 2h is above the maximum 60m"),
    ("deploy:\n  canary:\n    step_pause: 2d\n", r"ragops\.yaml:5: deploy\.canary\.step_pause: 48h is above the maximum 24h"),
    ("deploy:\n  history_limit: 99999999999\n", r"ragops\.yaml:4: deploy\.history_limit: 99999999999 is above the maximum 1000000"),
    ("slo:\n  rto_seconds: .inf\n", r"ragops\.yaml:4: slo\.rto_seconds: inf is not a number"),
    ("deploy:\n  analysis:\n    window: .nan\n", r"ragops\.yaml:5: deploy\.analysis\.window: expected a duration"),
])
def test_every_duration_and_number_has_a_maximum(tmp_path, capsys, body, expected):
    path = write_bytes(tmp_path, HEAD + body + ENVS)
    assert main(["-c", str(path), "config", "validate"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"^error: " + expected, err), err


def test_state_dir_file_service_path_and_secrets_name_their_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("")
    path = write_bytes(tmp_path, HEAD + f"service:\n  path: {REPO / 'service'}\n"
                       + "environments:\n  local:\n    state_dir: afile\n")
    for command in (["status"], ["config", "validate"]):
        assert main(["-c", str(path), *command]) == 2
        assert f"ragops.yaml:7: state_dir: {tmp_path / 'afile'} is not a directory" in capsys.readouterr().err

    path = write_bytes(tmp_path, HEAD + "service:\n  path: ./no-such-service\n" + ENVS)
    for command in (["config", "validate"], ["deploy", "--version", "v2", "--plan"]):
        assert main(["-c", str(path), *command]) == 2
        assert "ragops.yaml:4: service.path: " in capsys.readouterr().err

    monkeypatch.delenv("RAGOPS_TEST_NO_SUCH_VAR", raising=False)
    path = write_bytes(tmp_path, HEAD + f"service:\n  path: {REPO / 'service'}\n"
                       + "environments:\n  local:\n    database:\n      password: ${env:RAGOPS_TEST_NO_SUCH_VAR}\n")
    assert main(["-c", str(path), "config", "validate"]) == 2
    assert ("ragops.yaml:8: environments.local.database.password: environment variable RAGOPS_TEST_NO_SUCH_VAR "
            "is not set") in capsys.readouterr().err
    (tmp_path / "binary-secret").write_bytes(b"\xff\xfe\x00")
    path = write_bytes(tmp_path, HEAD + f"service:\n  path: {REPO / 'service'}\n"
                       + "database:\n  password: ${file:binary-secret}\n" + ENVS)
    assert main(["-c", str(path), "config", "validate"]) == 2
    assert re.search(r"ragops\.yaml:6: .*database\.password: secret file .* is not UTF-8 text", capsys.readouterr().err)


@pytest.fixture
def project(tmp_path) -> Path:
    return write_bytes(tmp_path, HEAD + f"service:\n  path: {REPO / 'service'}\n" + ENVS)


@pytest.mark.parametrize(("args", "expected"), [
    (["deploy", "--version", "v9", "--steps", ""], "--steps: expected comma-separated weights"),
    (["deploy", "--version", "v9", "--steps", ",", "--strategy", "canary", "--plan"], "--steps: expected"),
    (["deploy", "--version", "v9", "--strategy", "blue-green", "--steps", "10,100", "--plan"],
     "--steps and --step-pause only apply to --strategy canary"),
    (["deploy", "--version", "v9", "--step-pause", "1m", "--plan"], "only apply to --strategy canary"),
    (["deploy", "--version", "v9", "--set", "=value", "--plan"], "--set: '' is not an environment variable name"),
    (["deploy", "--version", "v9", "--set", "1X=value", "--plan"], "--set: '1X' is not an environment variable"),
    (["deploy", "--version", "v9", "--strategy", "canary", "--step-pause", "99999999999999h", "--plan"],
     "--step-pause: duration '99999999999999h' is above the maximum 3660d"),
    (["deploy", "--version", "v9", "--strategy", "canary", "--step-pause", "25h", "--plan"],
     "--step-pause: 25h is above the maximum 24h"),
    (["deploy", "--version", "v9", "--strategy", "shadow", "--duration", "2d", "--plan"],
     "--duration: 48h is above the maximum 24h"),
    (["-v", "-q", "status"], "--quiet (only results and errors) contradicts --verbose"),
    (["-q", "rollback", "-v", "--yes"], "contradicts --verbose"),
    (["runbook", "run", "pre-deploy", "--approve", "no-such-step"],
     "--approve no-such-step: runbook pre-deploy has no such approval step (cost-estimate)"),
    (["deploy", "--plan", "--resume"], "nothing to resume"),
    (["history", "--limit", "99999999999999999999"], "--limit"),
    (["deploy", "--version", "v9", "--strategy", "canary", "--pause-at", "0", "--plan"], "--pause-at"),
    (["rollback", "--resume", "--yes"], "nothing to resume"),
])
def test_conflicting_or_empty_arguments_exit_2_with_one_line(project, capsys, args, expected):
    assert main(["-c", str(project), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err.splitlines()[0], err
    assert "unexpected" not in err and "--yes" not in err.splitlines()[0]


def test_every_documented_maximum_names_a_real_setting():
    """A model renamed or moved must not leave its limit behind silently."""
    import importlib
    import pkgutil

    import ragops.settings
    from ragops import bounds
    from ragops.config_types import Strict, duration_fields

    for module in pkgutil.iter_modules(ragops.settings.__path__):
        importlib.import_module(f"ragops.settings.{module.name}")
    models: dict[str, type] = {}

    def walk(cls: type) -> None:
        for sub in cls.__subclasses__():
            models[sub.__name__] = sub
            walk(sub)
    walk(Strict)
    for model, field in bounds.DURATION_MAXIMA:
        assert field in duration_fields(models[model]), (model, field)
    for model, field in bounds.NUMBER_MAXIMA:
        assert field in models[model].model_fields and field not in duration_fields(models[model]), (model, field)


def test_no_setting_is_refused_for_its_own_default():
    """A setting added on another branch (audit.replica_lag_warn_bytes: 50 MB) must not fail every command."""
    import importlib
    import pkgutil

    import ragops.settings
    from ragops import bounds
    from ragops.config_types import Strict, duration_fields

    for module in pkgutil.iter_modules(ragops.settings.__path__):
        importlib.import_module(f"ragops.settings.{module.name}")
    seen = 0

    def walk(cls: type) -> None:
        nonlocal seen
        for model in cls.__subclasses__():
            durations = duration_fields(model)
            for name, field in model.model_fields.items():
                default = field.default
                if isinstance(default, bool) or not isinstance(default, (int, float)):
                    continue
                seen += 1
                if name in durations:
                    limit = bounds.DURATION_MAXIMA.get((model.__name__, name), bounds.MAX_DURATION_S)
                else:
                    limit = bounds.number_limit(model, name)
                assert default <= limit, (model.__name__, name, default, limit)
            walk(model)
    walk(Strict)
    assert seen > 50


def test_every_duration_written_in_a_shipped_runbook_is_within_the_maximum():
    """drill-backup-restore says "any age" as max_age: 3650d; a global maximum below it broke the drill."""
    from ragops.durations import parse_duration

    found = set()
    for path in (REPO / "runbooks").glob("*.yaml"):
        found |= set(re.findall(r"\b\d+(?:\.\d+)?(?:ms|s|m|h|d)\b", path.read_text()))
    assert "3650d" in found
    for text in found:
        parse_duration(text)
