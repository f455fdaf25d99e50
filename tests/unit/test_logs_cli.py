"""`ragops logs` (issue 13 item 19): -n 0, ANSI colours off the terminal, nothing lost on SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ragops.cli.main import main
from ragops.devstack import write_local_config

COLORED = "\x1b[36mINF\x1b[0m Configuration loaded from file\n"


@pytest.fixture
def config_with_logs(tmp_path):
    path = write_local_config(tmp_path)
    logs = tmp_path / "state" / "logs"
    logs.mkdir(parents=True)
    (logs / "router.log").write_text("one\ntwo\n" + COLORED)
    (logs / "blue.log").write_text("first\nsecond\nthird\n")
    return path


def test_lines_zero_prints_nothing(config_with_logs, capsys):
    assert main(["-c", str(config_with_logs), "logs", "blue", "-n", "0"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["-c", str(config_with_logs), "logs", "blue", "-n", "2"]) == 0
    assert capsys.readouterr().out == "second\nthird\n"


def test_negative_lines_is_a_usage_error(config_with_logs, capsys):
    assert main(["-c", str(config_with_logs), "logs", "blue", "-n", "-1"]) == 2
    assert "--lines" in capsys.readouterr().err


@pytest.mark.parametrize("extra,env", [([], {}), (["--no-color"], {}), ([], {"NO_COLOR": "1"})])
def test_ansi_colours_do_not_reach_a_pipe(config_with_logs, extra, env):
    proc = subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(config_with_logs), *extra,
                           "logs", "router", "-n", "1"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "INF Configuration loaded from file\n"


def _has_open(pid: int, path) -> bool:
    import os

    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_follow_behind_a_pipe_keeps_every_line_on_sigterm(config_with_logs):
    proc = subprocess.Popen([sys.executable, "-m", "ragops.cli.main", "-c", str(config_with_logs),
                             "logs", "blue", "-n", "3", "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        log = config_with_logs.parent / "state" / "logs" / "blue.log"
        tail = [proc.stdout.readline() for _ in range(3)]   # the tail is shown (flushed per line) ...
        assert tail == ["first\n", "second\n", "third\n"], tail
        deadline = time.monotonic() + 30                     # ... then the follow loop opens the log
        while not _has_open(proc.pid, log) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)   # its seek to the end follows the open at once
        with open(log, "a") as handle:
            handle.write("fourth\n")
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert out == "fourth\n", err
    assert proc.returncode == 0 and "Traceback" not in err


# ---- the service's JSON lines (RAG_LOG_FORMAT=json) ---------------------------------------------

def _json_line(ts: str, level: str, message: str, color: str, **extra) -> str:
    import json

    return json.dumps({"timestamp": ts, "level": level, "service": "rag-engine", "message": message,
                       "context": extra.pop("context", {}), "color": color, **extra}) + "\n"


@pytest.fixture
def json_logs(tmp_path):
    path = write_local_config(tmp_path)
    logs = tmp_path / "state" / "logs"
    logs.mkdir(parents=True)
    (logs / "blue.log").write_text(
        _json_line("2026-12-07T10:00:00.000Z", "info", "started", "blue")
        + _json_line("2026-12-07T10:00:02.000Z", "error", "query failed", "blue", trace_id="a" * 32,
                     **{"ragops.deploy_id": "d-1"}, context={"route": "/api/v1/query"})
        + "a text line from before the switch to JSON\n")
    (logs / "green.log").write_text(
        _json_line("2026-12-07T10:00:01.000Z", "warning", "slow query", "green", **{"ragops.deploy_id": "d-2"}))
    return path


def test_json_lines_print_pretty_and_both_colors_merge_in_time_order(json_logs, capsys):
    assert main(["-c", str(json_logs), "logs", "colors", "-n", "10"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 2)[1:] for line in out[:3]] == [
        ["INFO", "   [blue] started"], ["WARNING", "[green] slow query"],
        ["ERROR", "  [blue] query failed route=/api/v1/query trace=aaaaaaaaaaaaaaaa"]]
    assert out[0].startswith("10:00:00.000 ")


@pytest.mark.parametrize("args, messages", [
    (["--level", "warning"], ["slow query", "query failed"]),
    (["--deploy", "d-1"], ["query failed"]),
    (["--trace", "a" * 32], ["query failed"]),
    (["--grep", "slow|text line"], ["slow query", "a text line from before the switch to JSON"]),
    (["--since", "2026-12-07T10:00:01"], ["slow query", "query failed"]),
])
def test_filters(json_logs, capsys, args, messages):
    assert main(["-c", str(json_logs), "logs", "colors", *args]) == 0
    out = capsys.readouterr().out
    for message in ["started", "slow query", "query failed", "a text line from before the switch to JSON"]:
        assert (message in out) == (message in messages), (args, message, out)


def test_json_output_is_the_raw_lines(json_logs, capsys):
    import json

    assert main(["-c", str(json_logs), "-o", "json", "logs", "blue", "--level", "error"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["message"] for r in records] == ["query failed"] and records[0]["ragops.deploy_id"] == "d-1"


@pytest.mark.parametrize("args, text", [(["--level", "loud"], "--level: 'loud'"), (["--grep", "("], "--grep"),
                                        (["--since", "yesterday"], "--since: 'yesterday'")])
def test_bad_filters_are_usage_errors(json_logs, capsys, args, text):
    assert main(["-c", str(json_logs), "logs", "colors", *args]) == 2
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err
