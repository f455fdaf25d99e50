"""ragops.yaml settings of the analysis providers: `deploy.analysis.provider`, `deploy.analysis.metrics`.

A metric is a PromQL query with `{{color}}`, `{{version}}` and `{{window}}` placeholders, a success
condition on its result (`result <= 0.05`), how many failed measurements are tolerated
(`failure_limit`), and an optional inconclusive range: a result inside it neither passes nor fails,
it pauses the deploy. `compare: baseline` judges the canary against the stable color's value of the
same query over the same window (`max_ratio` and/or `max_difference`).
"""
from __future__ import annotations

import operator
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ragops.config_types import Strict

# the routes that are not user traffic (the builtin provider ignores the same ones)
NOT_TRAFFIC = 'route!~"/metrics|/healthz|/readyz"'

CONDITION = re.compile(r"^\s*result\s*(<=|>=|<|>|==|!=)\s*(-?[0-9]+(?:\.[0-9]+)?(?:[eE]-?[0-9]+)?)\s*$")
OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
             "==": operator.eq, "!=": operator.ne}


def check_condition(text: str) -> tuple[str, float]:
    """'result <= 0.05' -> ('<=', 0.05); ValueError naming the expected form otherwise."""
    match = CONDITION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a condition like 'result <= 0.05' (one of <= >= < > == != and a number)")
    return match.group(1), float(match.group(2))


def holds(condition: str, value: float) -> bool:
    op, limit = check_condition(condition)
    return bool(OPERATORS[op](value, limit))


class MetricSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    query: str = Field(min_length=1)
    success: str | None = None                   # 'result <= 0.05'; required unless compare: baseline
    failure_limit: int = Field(0, ge=0)          # failed measurements tolerated before the analysis fails
    inconclusive: tuple[float, float] | None = None   # [low, high]: a result inside pauses instead
    compare: Literal["baseline"] | None = None
    max_ratio: float | None = Field(None, gt=0)        # baseline: canary <= stable * max_ratio passes
    max_difference: float | None = Field(None, ge=0)   # baseline: canary - stable <= max_difference passes
    dry_run: bool = False                        # measured and reported, never deciding (Argo's dryRun)

    @field_validator("success")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None:
            check_condition(value)
        return value

    @model_validator(mode="after")
    def _complete(self) -> MetricSpec:
        if self.compare == "baseline":
            if self.max_ratio is None and self.max_difference is None:
                raise ValueError(f"metric {self.name}: compare: baseline needs max_ratio or max_difference")
        elif self.success is None:
            raise ValueError(f"metric {self.name}: needs a success condition (or compare: baseline)")
        if self.inconclusive and self.inconclusive[0] > self.inconclusive[1]:
            raise ValueError(f"metric {self.name}: inconclusive range {list(self.inconclusive)} is reversed")
        return self


# the canary's own series: this process's version on this color, every one created at 0 at start-up
# (service/ragservice/metrics.py), so increase() sees all of a new process's growth; no `or vector(0)`:
# an absent series is no data, never a confident 0
OWN = 'color="{{color}}",version="{{version}}"'
RESPONSES = "rag_http_responses_total{" + OWN + "%s}"
# how many scrapes of the canary's own series lie in the window (fewer than 2: nothing to measure)
SAMPLES_QUERY = "min(count_over_time(" + RESPONSES % "" + "[{{window}}]))"


def default_metrics(max_error_rate: float, max_p95_ms: float) -> list[MetricSpec]:
    """The guide's two criteria (error rate <= 5 %, p95 <= 2 s) written as PromQL on the colors' metrics."""
    buckets = f'rag_http_request_duration_seconds_bucket{{color="{{{{color}}}}",{NOT_TRAFFIC}}}'
    errors, answers = RESPONSES % ',class="5xx"', RESPONSES % ""
    return [
        MetricSpec(name="error_rate", success=f"result <= {max_error_rate:g}",
                   query=f"sum(increase({errors}[{{{{window}}}}])) / sum(increase({answers}[{{{{window}}}}]))"),
        MetricSpec(name="p95_latency_s", success=f"result <= {max_p95_ms / 1000:g}",
                   query=f"histogram_quantile(0.95, sum by (le) (rate({buckets}[{{{{window}}}}])))"),
    ]


def window_problems(analysis: Any, canary_step_pause: float, scrape_interval: float) -> list[str]:
    """`deploy.analysis.window` (and a canary step_pause, used as its window) of at least two scrapes."""
    if analysis.provider != "prometheus":
        return []
    windows = [("deploy.analysis.window", analysis.window)]
    if canary_step_pause:
        windows.append(("deploy.canary.step_pause", canary_step_pause))
    return [f"{key} ({seconds:g}s) is shorter than 2 x monitoring.scrape_interval ({scrape_interval:g}s): "
            "a range that holds fewer than two samples of a new process has nothing to measure"
            for key, seconds in windows if seconds < 2 * scrape_interval]


Provider = Literal["builtin", "prometheus"]
OnInconclusive = Literal["pause", "fail"]
