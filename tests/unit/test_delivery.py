"""Progressive delivery: metric specs, the prometheus provider's verdicts, baseline comparison."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from ragops.deploy.analysis.prometheus import judge, promql_duration, render
from ragops.settings.analysis import MetricSpec, default_metrics, holds


def spec(**kw) -> MetricSpec:
    return MetricSpec.model_validate({"name": "m", "query": "q", **kw})


def test_conditions_are_a_comparison_with_a_number():
    assert holds("result <= 0.05", 0.05) and not holds("result <= 0.05", 0.051)
    assert holds("result>1e-3", 0.01)
    with pytest.raises(ValidationError, match=r"is not a condition like 'result <= 0\.05'"):
        spec(success="result <= 0.05; import os")
    with pytest.raises(ValidationError, match="needs a success condition"):
        spec()
    with pytest.raises(ValidationError, match="compare: baseline needs max_ratio or max_difference"):
        spec(compare="baseline")


def test_verdicts_pass_fail_inconclusive():
    s = spec(success="result <= 0.05", inconclusive=[0.04, 0.05])
    assert judge(s, 0.01, None, "").passed
    failed = judge(s, 0.2, None, "")
    assert not failed.passed and not failed.inconclusive and "breaks result <= 0.05" in failed.why
    near = judge(s, 0.045, None, "")
    assert near.inconclusive and not near.passed
    none = judge(s, None, None, "no data")
    assert none.inconclusive and none.why == "m: no data"


def test_baseline_compares_with_the_stable_color():
    s = spec(compare="baseline", max_difference=0.05)
    assert judge(s, 0.30, 0.30, "").passed                  # as bad as stable: not the canary's fault
    worse = judge(s, 0.50, 0.0, "")
    assert not worse.passed and "vs stable 0" in worse.why
    assert judge(s, 0.1, None, "").inconclusive             # no baseline value: no verdict
    ratio = spec(compare="baseline", max_ratio=1.5)
    assert judge(ratio, 0.03, 0.02, "").passed and not judge(ratio, 0.04, 0.02, "").passed


def test_default_metrics_are_the_guides_two_as_promql():
    error_rate, p95 = default_metrics(0.05, 2000)
    assert error_rate.success == "result <= 0.05" and p95.success == "result <= 2"
    q = render(error_rate.query, "green", "v2", promql_duration(9.2))
    assert 'color="green"' in q and "[10s]" in q and "{{" not in q


def test_traefik_header_routes_and_sticky_cookie():
    from ragops.routing.base import PeopleRouting, traefik_people_rule
    from ragops.routing.traefik_file import dynamic_config, parse_dynamic

    backends = {"blue": "http://127.0.0.1:1", "green": "http://127.0.0.1:2"}
    config = dynamic_config(backends, {"blue": 90, "green": 10}, people=PeopleRouting("X-Tester", sticky=True))
    routers = config["http"]["routers"]
    assert routers["rag-always"]["service"] == "rag-green" and routers["rag-never"]["service"] == "rag-blue"
    assert routers["rag-always"]["rule"] == traefik_people_rule("X-Tester", "always")
    assert config["http"]["services"]["rag"]["weighted"]["sticky"]["cookie"]["name"] == "ragops_color"
    assert parse_dynamic(config)[1] == {"blue": 90, "green": 10}            # read back unchanged
    # the canary at weight 0 is still reachable with the header; maintenance drops the header routes
    assert dynamic_config(backends, {"blue": 100, "green": 0})["http"]["routers"]["rag-always"]["service"] == "rag-green"
    assert set(dynamic_config(backends, {"blue": 100}, maintenance=True)["http"]["routers"]) == {"rag"}
    assert "sticky" not in dynamic_config(backends, {"blue": 100})["http"]["services"]["rag"]["weighted"]


def test_kubernetes_traefik_service_carries_the_sticky_cookie():
    from ragops.routing.base import PeopleRouting
    from ragops.routing.traefik_crd import TraefikCrdRouter, member_weights

    applied: list[dict] = []
    router = TraefikCrdRouter(metadata={"name": "rag", "namespace": "rag"}, services={"blue": "rag-blue", "green": "rag-green"},
                              port=8000, apply_object=applied.append, read_object=lambda kind, name: None,
                              people=PeopleRouting(sticky=True))
    router.apply({}, {"blue": 50, "green": 50}, maintenance=False)
    weighted = applied[-1]["spec"]["weighted"]
    assert weighted["sticky"] == {"cookie": {"name": "ragops_color", "httpOnly": True, "sameSite": "lax"}}
    assert member_weights(applied[-1]) == {"rag-blue": 50, "rag-green": 50}
    plain = TraefikCrdRouter(metadata={"name": "rag"}, services={"blue": "rag-blue"}, port=8000,
                             apply_object=applied.append, read_object=lambda kind, name: None)
    plain.apply({}, {"blue": 100}, maintenance=False)
    assert "sticky" not in applied[-1]["spec"]["weighted"]


def test_on_inconclusive_comes_from_the_flag_or_the_config(capsys):
    from pathlib import Path

    from ragops.cli.main import main
    from ragops.config import load_config
    from ragops.deploy.engine import _options
    from tests.conftest import REPO

    config = load_config(Path(REPO / "ragops.yaml"), "local")
    assert _options(config, "v2", "canary", None, None, None, None).on_inconclusive == "pause"
    assert _options(config, "v2", "canary", None, None, None, None, "fail").on_inconclusive == "fail"
    code = main(["-c", str(REPO / "ragops.yaml"), "deploy", "--version", "v2", "--on-inconclusive", "maybe", "--plan"])
    assert code == 2 and "--on-inconclusive: expected pause or fail, got 'maybe'" in capsys.readouterr().err
