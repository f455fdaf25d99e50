#!/usr/bin/env python3
"""Analysis interval overhead: what one measurement costs with each metric provider.

Starts a local stack (real PostgreSQL, Traefik, a uvicorn color) with `monitoring.prometheus: local`
(Debian's prometheus, scrape interval 1s), sends a light bounded load through the router, then times
one analysis interval's work, repeated:
  - builtin:    scrape + parse the color's /metrics (what the builtin provider does per interval)
  - prometheus: the prometheus provider's measurement of the guide's two metrics (two PromQL
                queries, parsed and judged)
  - plain:      the same two queries as bare HTTP GETs to /api/v1/query (the plain tool)
and prints medians with the spread over the repeats and the ratio prometheus / plain.

Usage: python bench/analysis_bench.py [--rounds 40] [--repeats 5] [--port 9590]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ragops.devstack import write_local_config  # noqa: E402
from ragops.loadgen import LoadRunner  # noqa: E402


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(config), "-q", *args],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "CI": "1"})


def timed(fn, rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - start) / rounds * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--port", type=int, default=9590, help="the local Prometheus' port (loopback)")
    args = parser.parse_args()

    import httpx
    import yaml

    from ragops.deploy.analysis.builtin import scrape
    from ragops.deploy.analysis.prometheus import PrometheusClient, Target, measure, render
    from ragops.settings.analysis import default_metrics

    directory = Path(tempfile.mkdtemp(prefix="ragops-analysis-bench-"))
    directory.chmod(0o755)
    config = write_local_config(directory, extra={"monitoring": {"prometheus": "local", "scrape_interval": "1s",
                                                                  "listen": f"127.0.0.1:{args.port}"}})
    env = yaml.safe_load(config.read_text())["environments"]["test"]
    color_url = f"http://127.0.0.1:{env['service']['port']}"
    router_url = "http://" + env["router"]["listen"]
    prom = f"http://127.0.0.1:{args.port}"
    up = cli(config, "up")
    if up.returncode != 0:
        print(up.stderr, file=sys.stderr)
        return 1
    try:
        with LoadRunner(router_url + "/version", rps=20, seconds=120, max_in_flight=8):
            time.sleep(6)                                   # a few scrapes: the queries have data
            metrics = default_metrics(0.05, 2000)
            client = PrometheusClient(prom)
            target = Target(color="blue", version="v1", window_text="5s")
            queries = [render(m.query, "blue", "v1", "5s") for m in metrics]
            plain_client = httpx.Client(timeout=5)
            results: dict[str, list[float]] = {"builtin": [], "prometheus": [], "plain": []}
            for _ in range(args.repeats):
                results["builtin"].append(timed(lambda: scrape(color_url), args.rounds))
                results["prometheus"].append(timed(lambda: [measure(client, m, target) for m in metrics], args.rounds))
                results["plain"].append(timed(lambda: [plain_client.get(prom + "/api/v1/query", params={"query": q})
                                                      for q in queries], args.rounds))
            values = [measure(client, m, target).summary() for m in metrics]
    finally:
        cli(config, "down", "--purge", "--yes")
    print(f"one analysis interval's work, ms (median of {args.repeats} repeats x {args.rounds} rounds; min-max):")
    for name, series in results.items():
        print(f"  {name:<11} {statistics.median(series):7.2f}  ({min(series):.2f}-{max(series):.2f})")
    ratios = [p / q for p, q in zip(results["prometheus"], results["plain"], strict=True)]
    print(f"prometheus provider / plain queries: {statistics.median(ratios):.2f}x "
          f"({min(ratios):.2f}-{max(ratios):.2f}); vs builtin scrape: "
          f"{statistics.median(results['prometheus']) / statistics.median(results['builtin']):.2f}x")
    print("measured values:", ", ".join(f"{v['name']}={v['value']}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
