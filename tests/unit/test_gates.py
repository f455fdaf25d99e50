"""Gates that cannot be fooled: no data is not zero, dry-run metrics, the window check, plain explain."""
from __future__ import annotations

from pathlib import Path

import yaml

from ragops.deploy.analysis import prometheus
from ragops.deploy.analysis.prometheus import Target
from ragops.settings.analysis import SAMPLES_QUERY, MetricSpec, default_metrics


class FakePrometheus:
    """Answers each query with what `answers` maps its first matching fragment to."""

    def __init__(self, answers: dict[str, float | None]):
        self.answers = answers
        self.url = "http://prometheus.test"
        self.seen: list[str] = []

    def query(self, promql: str):
        self.seen.append(promql)
        for fragment, value in self.answers.items():
            if fragment in promql:
                return value, "" if value is not None else "no data"
        return None, "no data"


def run(metrics, answers, **kw):
    target = Target(color="green", version="v11", window_text="10s", **kw)
    client = FakePrometheus(answers)
    result = prometheus.analyze(target, metrics, client, window=0.01, interval=0.0,  # type: ignore[arg-type]
                                samples_query=SAMPLES_QUERY)
    return result, client


def test_the_default_error_rate_reads_the_canarys_own_series_without_turning_no_data_into_zero():
    error_rate, _ = default_metrics(0.05, 2000)
    assert "or vector(0)" not in error_rate.query
    rendered = prometheus.render(error_rate.query, "green", "v11", "10s")
    assert 'rag_http_responses_total{color="green",version="v11",class="5xx"}[10s]' in rendered


def test_one_sample_in_the_window_is_inconclusive_not_a_pass():
    # the error rate Prometheus computes from one sample is a confident-looking 0
    result, client = run(default_metrics(0.05, 2000)[:1], {"count_over_time": 1.0, "increase": 0.0})
    assert not result.passed and result.inconclusive
    assert "too few samples (1 scrape(s) of green v11 in 10s, need 2" in result.breaches[0]
    assert any('version="v11"' in q and "count_over_time" in q for q in client.seen)
    # two samples: the value counts
    result, _ = run(default_metrics(0.05, 2000)[:1], {"count_over_time": 2.0, "increase": 0.0})
    assert result.passed
    # a failing value is a failure whatever the sample count (never softened into "no data")
    failing = MetricSpec(name="errors", query="sum(increase(x[1m]))", success="result <= 0.05")
    result, _ = run([failing], {"count_over_time": 1.0, "increase": 0.3})
    assert not result.passed and not result.inconclusive and "breaks result <= 0.05" in result.breaches[0]


def test_a_dry_run_metric_is_measured_and_reported_but_never_decides():
    watched = MetricSpec(name="empty_share", query="empty_q", success="result <= 0.1", dry_run=True)
    deciding = MetricSpec(name="errors", query="errors_q", success="result <= 0.05")
    result, _ = run([watched, deciding], {"count_over_time": 3.0, "empty_q": 0.9, "errors_q": 0.0})
    assert result.passed
    shown = {m["name"]: m for m in result.metrics}
    assert shown["empty_share"]["dry_run"] and not shown["empty_share"]["passed"]
    assert shown["empty_share"]["value"] == 0.9
    nodata, _ = run([watched, deciding], {"count_over_time": 3.0, "errors_q": 0.0})
    assert nodata.passed and not nodata.inconclusive


def test_a_baseline_metric_without_a_stable_color_is_skipped_and_not_recorded_as_passed():
    vs_stable = MetricSpec(name="vs_stable", query="errors_q", compare="baseline", max_difference=0.1)
    deciding = MetricSpec(name="errors", query="errors_q", success="result <= 0.05")
    result, _ = run([vs_stable, deciding], {"count_over_time": 3.0, "errors_q": 0.0})
    assert result.passed
    shown = {m["name"]: m for m in result.metrics}["vs_stable"]
    assert shown["skipped"] and shown["passed"] is False and "skipped" in shown["why"]


def test_baseline_queries_render_the_stable_colors_own_version():
    vs_stable = MetricSpec(name="vs_stable", query='q{color="{{color}}",version="{{version}}"}',
                           compare="baseline", max_difference=0.1)
    _, client = run([vs_stable], {"count_over_time": 3.0, "q{": 0.0}, baseline_color="blue", baseline_version="v10")
    assert 'q{color="blue",version="v10"}' in client.seen


def write(tmp_path: Path, analysis: dict, monitoring: dict | None = None, canary: dict | None = None) -> Path:
    from tests.conftest import REPO

    data = yaml.safe_load((REPO / "ragops.yaml").read_text())
    data["deploy"]["analysis"].update(analysis)
    data["deploy"]["canary"].update(canary or {})
    data["monitoring"] = monitoring or {}
    data["service"]["path"] = str(REPO / "service")   # the copy lives elsewhere: validate checks the folder exists
    path = tmp_path / "ragops.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_config_validate_refuses_a_window_shorter_than_two_scrapes(tmp_path, capsys):
    from ragops.cli.main import main

    path = write(tmp_path, {"provider": "prometheus", "window": "8s"}, {"scrape_interval": "5s"})
    assert main(["-c", str(path), "config", "validate"]) == 2
    err = capsys.readouterr().err
    assert "deploy.analysis.window (8s) is shorter than 2 x monitoring.scrape_interval (5s)" in err
    assert "Traceback" not in err
    step = write(tmp_path, {"provider": "prometheus"}, {"scrape_interval": "5s"}, {"step_pause": "6s"})
    assert main(["-c", str(step), "config", "validate"]) == 2
    assert "deploy.canary.step_pause (6s) is shorter than 2 x monitoring.scrape_interval (5s)" in capsys.readouterr().err
    # the shipped values (10s window, 5s scrapes) pass; the builtin provider scrapes by itself
    assert main(["-c", str(write(tmp_path, {"provider": "prometheus"}, {"scrape_interval": "5s"})),
                 "config", "validate"]) == 0
    assert main(["-c", str(write(tmp_path, {"window": "2s"}, {"scrape_interval": "5s"})), "config", "validate"]) == 0


def test_status_explain_prints_plain_text_not_python_reprs():
    from ragops.deploy.history import explain

    record = {"id": "d-1", "strategy": "canary", "version": "v2", "who": "ci", "result": "aborted",
              "steps": [{"name": "analysis at 50%", "ok": False, "detail": "error_rate 0.3 breaks result <= 0.05",
                         "analysis": {"requests": 0, "error_rate": None, "p95_ms": None, "window_s": 10.0,
                                      "passed": False, "inconclusive": False, "breaches": ["x"],
                                      "metrics": [{"name": "error_rate", "value": 0.3, "baseline": 0.01,
                                                   "passed": False, "inconclusive": False, "failures": 1,
                                                   "why": "error_rate 0.3 breaks result <= 0.05"},
                                                  {"name": "vs", "value": None, "baseline": None, "passed": False,
                                                   "skipped": True, "why": "vs: skipped"}]}}]}
    text = "\n".join(explain(record))
    assert "{" not in text and "[" not in text.replace("[FAILED]", "") and "None" not in text
    assert "metric error_rate: 0.3 (stable 0.01) failed - error_rate 0.3 breaks result <= 0.05" in text
    assert "metric vs: - skipped" in text


def test_a_color_prometheus_does_not_scrape_is_refused_before_traffic():
    target = Target(color="green", version="v11")
    why = prometheus.wait_scraped(FakePrometheus({}), SAMPLES_QUERY, target, timeout=0.0)  # type: ignore[arg-type]
    assert why and "has no sample of green (v11)" in why and "not scraping that color's target" in why
    assert prometheus.wait_scraped(FakePrometheus({"count_over_time": 1.0}), SAMPLES_QUERY,  # type: ignore[arg-type]
                                   target, timeout=0.0) is None


def test_the_builtin_retrieval_gate_judges_against_the_stable_colors_share():
    from ragops.deploy.analysis.builtin import AnalysisResult, _retrieval_breach, parse_metrics

    snap = parse_metrics('rag_retrieval_queries_total{version="v2",outcome="results"} 3\n'
                         'rag_retrieval_queries_total{version="v2",outcome="empty"} 7\n')
    assert (snap.queries, snap.empty) == (10, 7)
    bad = AnalysisResult(color="green", passed=False, queries=20, empty_rate=0.9, stable_empty_rate=0.0)
    assert _retrieval_breach(bad, 0.2) == ["empty_results 90.0% of 20 queries > max_empty_results_rate 20.0% (stable 0.0%)"]
    corpus = AnalysisResult(color="green", passed=False, queries=20, empty_rate=0.9, stable_empty_rate=0.85)
    assert _retrieval_breach(corpus, 0.2) == []       # stable finds as little: not this version's fault
    assert _retrieval_breach(AnalysisResult(color="g", passed=False, queries=20, empty_rate=0.1), 0.2) == []


def test_golden_recall_and_file_errors(tmp_path):
    from types import SimpleNamespace

    import pytest

    from ragops import golden
    from ragops.errors import ConfigError
    from ragops.settings.smoke import SmokeSettings
    from tests.conftest import REPO

    shipped = SimpleNamespace(env=SimpleNamespace(smoke=SmokeSettings(golden=str(REPO / "service" / "golden.yaml"))),
                              resolve_path=Path)
    files = golden.load(shipped)
    assert files is not None and len(files.documents) == 6 and len(files.queries) == 6
    ids = {d.name: f"id-{d.name}" for d in files.documents}

    class Answers:   # the right document first for every query but the last
        def post(self, path, json):
            wanted = next(q.expect[0] for q in files.queries if q.query == json["query"])
            right = wanted if json["query"] != files.queries[-1].query else "pitr"
            return SimpleNamespace(status_code=200, json=lambda: {"results": [{"document_id": ids[right]}]})

    value, missed = golden.recall(Answers(), files, ids, k=1)
    assert value == pytest.approx(5 / 6) and missed == [files.queries[-1].query]
    bad = tmp_path / "golden.yaml"
    bad.write_text("documents: [{name: a, title: A, content: x}]\nqueries: [{query: q, expect: [b]}]\n")
    config = SimpleNamespace(env=SimpleNamespace(smoke=SmokeSettings(golden=str(bad))), resolve_path=Path)
    with pytest.raises(ConfigError, match=r"queries.0.expect: unknown document 'b'"):
        golden.load(config)


def test_an_inconclusive_analysis_is_not_printed_failed_and_a_failed_canary_notifies_failed(tmp_path, monkeypatch):
    from ragops.deploy.analysis import AnalysisResult
    from tests.unit.test_events_and_journal import _deployment

    monkeypatch.setattr("ragops.deploy.analysis.builtin.analyze", lambda color, url, **kw: AnalysisResult(
        color=color, passed=False, inconclusive=True, breaches=["no data: 0 requests in 30s, need 5"]))
    events: list = []
    d = _deployment(tmp_path, events)
    d.watch("green", 30.0, "analysis at 10%")
    verdict = [e for e in events if e.kind == "step"][-1]
    assert verdict.message == "analysis at 10%: no data: 0 requests in 30s, need 5" and verdict.data["ok"] is None
    assert "FAILED" not in "\n".join(str(e) for e in events)
    # the failed-analysis event is `failed` (critical, in the default notify.on); an operator's abort is `aborted`
    from ragops.settings.notify import NotifySettings

    d.config.env.notify = NotifySettings(webhook="${env:NOWHERE}", timeout=0.1)
    d.config.env_name, d.config.project, d.config.state_dir = "prod", "p", tmp_path
    d.config.reveal = lambda ref, key: "http://127.0.0.1:9/hook"
    d.record.update(from_color="blue", to_color="green")
    d._discard = lambda color, drain_timeout=5: None
    d.journal.clear_request = lambda: None
    d._abort_canary("green", "blue", "at 10%: error_rate 0.3 breaks result <= 0.05", event="failed")
    assert [o["event"] for o in d.deliver_notifications()] == ["deploy.failed"]


def test_a_damaged_golden_file_stops_a_deploy_before_anything_starts(tmp_path, capsys):
    from ragops.cli.main import main

    path = write(tmp_path, {})
    text = path.read_text() + "\nsmoke:\n  golden: golden.yaml\n"
    path.write_text(text)
    (tmp_path / "golden.yaml").write_text("documents: [{name: a, title: A}]\nqueries: [{query: q, expect: [a]}]\n")
    assert main(["-c", str(path), "deploy", "--version", "v2", "--plan"]) == 2
    err = capsys.readouterr().err
    assert "smoke.golden:" in err and "documents.0.content: Field required" in err and "Traceback" not in err
