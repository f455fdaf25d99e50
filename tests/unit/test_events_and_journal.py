"""Structured deploy events (engine -> live panel) and the one journal helper."""
from __future__ import annotations

import io
import json
import stat
from types import SimpleNamespace

import pytest

from ragops import journal
from ragops.errors import OperationFailed
from ragops.events import Event, say
from ragops.secrets import register_secret

SECRET = "hunter2-very-secret-value"


# ---- journal.py ---------------------------------------------------------------------------------

def test_append_and_read_back_one_line_per_record_created_0600(tmp_path):
    path = tmp_path / "state" / "j.jsonl"
    journal.append(path, {"n": 1, "at": tmp_path})          # a Path becomes a string
    journal.append(path, {"n": 2})
    assert [r["n"] for r in journal.read(path)] == [1, 2]
    assert journal.read(path, limit=1) == [{"n": 2}]
    assert len(path.read_text().splitlines()) == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert journal.read(tmp_path / "missing.jsonl") == []


def test_a_torn_last_line_is_skipped_and_appending_goes_on(tmp_path):
    path = tmp_path / "j.jsonl"
    journal.append(path, {"n": 1})
    with open(path, "a") as handle:
        handle.write('{"n": 2, "half')                          # killed in the middle of a write
    assert journal.read(path) == [{"n": 1}]
    with open(path, "a") as handle:
        handle.write("\n")
    journal.append(path, {"n": 3})
    assert [r["n"] for r in journal.read(path)] == [1, 3]


def test_a_symlink_at_the_journal_path_is_refused_not_followed(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious\n")
    link = tmp_path / "audit.jsonl"
    link.symlink_to(target)
    with pytest.raises(OperationFailed, match=r"audit\.jsonl is a symlink"):
        journal.append(link, {"n": 1})
    with pytest.raises(OperationFailed, match="is a symlink"):
        journal.read(link)
    assert target.read_text() == "precious\n"


def test_atomic_json_replaces_a_planted_symlink_instead_of_writing_through_it(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious\n")
    link = tmp_path / "state.json"
    link.symlink_to(target)
    journal.write_json(link, {"a": 1})
    assert target.read_text() == "precious\n"
    assert not link.is_symlink() and journal.read_json(link) == {"a": 1}
    assert stat.S_IMODE(link.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_keep_last_trims_atomically(tmp_path):
    path = tmp_path / "h.jsonl"
    for n in range(10):
        journal.append(path, {"n": n})
    journal.keep_last(path, 3)
    assert [r["n"] for r in journal.read(path)] == [7, 8, 9]


def test_a_secret_never_reaches_any_of_the_four_journals(tmp_path):
    from ragops.deploy.history import Journal
    from ragops.dns.base import read_history, record_change
    from ragops.failover import FailoverReport, _journal
    from ragops.runbook.state import RunStore

    register_secret(SECRET)
    config = SimpleNamespace(state_dir=tmp_path / "state", env_name="prod")
    text = f"connect with {SECRET}"

    deploys = Journal(tmp_path / "state" / "deploys")
    deploys.finish({"id": "d-1", "version": "v2", "reason": text, "options": {"env": {"API_TOKEN": "x" * 8}}})
    deploys.save({"id": "d-2", "version": "v3", "reason": text, "steps": []})       # the deploy in progress
    deploys.audit("lock broken", by="me", lock={"note": text})

    runs = RunStore(tmp_path / "state" / "runbook-runs", "r-1")
    runs.save({"run_id": "r-1", "outputs": {"dsn": text}})
    runs.audit({"step": "s", "outputs": {"dsn": text}})

    _journal(config, FailoverReport(environment="prod", from_region="a", to_region="b", old_primary=text,
                                    new_primary="n2", started_at="2025-01-01T00:00:00+00:00", failure_time=None))
    record_change(config, {"change_id": "C1", "record": "api.example.com", "new": text})

    files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"history.jsonl", "current.json", "state.json", "audit.jsonl",
                                       "failovers.jsonl", "dns-changes.jsonl"}
    for path in files:
        content = path.read_text()
        assert SECRET not in content, path.name
        assert "***" in content, path.name
    assert deploys.history()[0]["options"]["env"]["API_TOKEN"] == "***"
    assert read_history(config)[0]["new"] == "connect with ***"


# ---- events --------------------------------------------------------------------------------------

def test_an_event_prints_as_its_message_and_say_sends_status_events():
    seen: list[Event] = []
    say(seen.append, "plain line")
    say(None, "nobody listens")                                  # a missing callback is fine
    assert seen == [Event("status", "plain line", {})]
    assert f"deploy: {seen[0]}" == "deploy: plain line"


class _Platform:
    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.weights_set: list[dict] = []

    def journal_dir(self):
        return self.dir / "deploys"

    def lock_backend(self):
        return None

    def set_weights(self, weights):
        self.weights_set.append(dict(weights))
        return 0.012

    def color_url(self, color):
        return "http://127.0.0.1:9"


def _deployment(tmp_path, events):
    from ragops.deploy.engine import Deployment, DeployOptions

    analysis = SimpleNamespace(max_error_rate=0.05, max_p95_latency_ms=2000.0, min_requests=5, no_data_retries=1,
                               probe_rps=0, interval=1.0, window=30.0, provider="builtin",
                               max_empty_results_rate=None)
    from ragops.settings.notify import NotifySettings

    config = SimpleNamespace(deploy=SimpleNamespace(lock_ttl=60, history_limit=50, analysis=analysis),
                             env=SimpleNamespace(notify=NotifySettings()))
    options = DeployOptions(version="v2", strategy="canary", steps=[10, 100], step_pause=30.0)
    return Deployment(config, options, events.append, platform=_Platform(tmp_path))


def test_the_engine_reports_weights_switch_analysis_and_done_as_data(tmp_path, monkeypatch):
    from ragops.deploy.analysis import AnalysisResult

    def fake_analyze(color, url, *, on_sample, **kw):
        on_sample(AnalysisResult(color=color, passed=False, requests=40, error_rate=0.025, p95_ms=180.0,
                                 window_s=10.0))
        return AnalysisResult(color=color, passed=False, requests=90, error_rate=0.1, p95_ms=200.0, window_s=20.0,
                              breaches=["error_rate 10.0% > max_error_rate 5.0%"])

    monkeypatch.setattr("ragops.deploy.analysis.builtin.analyze", fake_analyze)
    events: list[Event] = []
    d = _deployment(tmp_path, events)
    d.phase("canary-step", step_index=0)
    d.switch({"green": 10, "blue": 90}, "canary green at 10%")
    d.watch("green", 30.0, "analysis at 10%")
    d.finish("aborted", "at 10%: error_rate")

    kinds = [e.kind for e in events]
    assert kinds == ["phase", "weights", "switch", "analysis", "analysis", "step", "done"]
    by_kind = {e.kind: e for e in events}
    assert by_kind["phase"].data["phase"] == "canary-step"
    assert by_kind["weights"].data == {"weights": {"green": 10, "blue": 90}}
    switch = by_kind["switch"]
    assert switch.data["weights"] == {"green": 10, "blue": 90} and switch.data["ms"] == 12.0
    assert switch.message == "ok canary green at 10%: blue 90%, green 10% (router confirmed in 12ms)"
    sample = events[4].data
    assert (sample["requests"], sample["error_rate"], sample["p95_ms"]) == (40, 0.025, 180.0)
    assert (sample["max_error_rate"], sample["max_p95_ms"], sample["window_s"]) == (0.05, 2000.0, 30.0)
    verdict = by_kind["step"]
    assert verdict.data["ok"] is False and verdict.data["analysis"]["error_rate"] == 0.1
    assert by_kind["done"].data["result"] == "aborted"
    assert d.platform.weights_set == [{"green": 10, "blue": 90}]
    assert json.loads((tmp_path / "deploys" / "history.jsonl").read_text())["result"] == "aborted"


# ---- the live panel -----------------------------------------------------------------------------

class _Env:
    def __init__(self, interactive: bool):
        self.interactive = interactive
        self.json = False
        self.verbosity = 0
        self.lines: list[str] = []
        from rich.console import Console

        self.err = Console(file=io.StringIO(), force_terminal=False)

    def status(self, message: str) -> None:
        self.lines.append(message)


def _panel_text(view) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(view._render())
    return console.export_text()


def test_the_panel_reads_weights_and_analysis_from_event_data_not_text():
    from ragops.cli.deploy import LiveView

    view = LiveView(_Env(interactive=True), "deploy v2")
    view.apply(Event("phase", "phase: canary-step", {"phase": "canary-step"}))
    # the message says nothing about weights: only the data counts
    view.apply(Event("weights", "working", {"weights": {"green": 25, "blue": 75}}))
    assert view.weights == {"green": 25, "blue": 75} and view.switch_ms is None
    assert view.weights_text() == "blue 75%, green 25% (applying)"
    view.apply(Event("switch", "ok step two", {"weights": {"green": 25, "blue": 75}, "ms": 8.4}))
    assert view.weights_text() == "blue 75%, green 25% (router confirmed in 8ms)"
    view.apply(Event("analysis", "analysing", {"color": "green", "window_s": 30, "max_error_rate": 0.05,
                                               "max_p95_ms": 2000}))
    assert view.analysis_text() == "green: waiting for data (max error rate 5%, max p95 2000ms)"
    view.apply(Event("analysis", "sample", {"color": "green", "window_s": 30, "max_error_rate": 0.05,
                                            "max_p95_ms": 2000, "requests": 120, "error_rate": 0.0125,
                                            "p95_ms": 95.4, "elapsed_s": 12}))
    assert view.analysis == {"color": "green", "window_s": 30, "max_error_rate": 0.05, "max_p95_ms": 2000,
                             "requests": 120, "error_rate": 0.0125, "p95_ms": 95.4, "elapsed_s": 12}
    assert view.analysis_text() == \
        "green: 120 req, errors 1.2%, p95 95ms, 12/30s (max error rate 5%, max p95 2000ms)"
    view.apply(Event("step", "ok analysis at 25%: within thresholds",
                     {"name": "analysis at 25%", "ok": True,
                      "analysis": {"requests": 300, "error_rate": 0.01, "p95_ms": 90.0, "window_s": 30.0,
                                   "passed": True, "breaches": []}}))
    assert view.analysis["requests"] == 300 and view.analysis["elapsed_s"] == 30.0
    assert view.analysis_text() == \
        "green: 300 req, errors 1.0%, p95 90ms, 30/30s (max error rate 5%, max p95 2000ms) passed"
    assert view.steps == ["ok step two", "ok analysis at 25%: within thresholds"]
    text = _panel_text(view)
    assert "phase     canary-step" in text
    assert "weights   blue 75%, green 25% (router confirmed in 8ms)" in text
    assert "analysis  green: 300 req, errors 1.0%, p95 90ms" in text


def test_without_a_terminal_each_event_is_a_status_line():
    from ragops.cli.deploy import LiveView

    env = _Env(interactive=False)
    with LiveView(env, "deploy v2") as report:
        report(Event("switch", "ok switch router to green: green 100% (router confirmed in 9ms)",
                     {"weights": {"green": 100}, "ms": 9.0}))
        say(report, "resuming")
    assert env.lines == ["deploy: ok switch router to green: green 100% (router confirmed in 9ms)",
                         "deploy: resuming"]
