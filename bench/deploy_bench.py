#!/usr/bin/env python3
"""Deploy benchmark on the local platform (real PostgreSQL, router, uvicorn).

Runs N blue-green deploys and one rollback under a bounded loopback load (default 150 rps,
GET /version through the router) and prints:
  - failed requests (goal 0)
  - switch latency: from the router-config write (the switch call) until the first request sent
    through the router is answered by the new version (goal < 100 ms)
  - rollback flip time: the same for the rollback's flip (goal < 1 s), and the command's wall time

With --routers traefik,haproxy the same run is made once per router.kind (one stack each, one
after the other) and the switch-to-served latencies are printed side by side (median and spread).

Usage: python bench/deploy_bench.py [--deploys 5] [--rps 150] [--routers traefik,haproxy] [--keep]
"""
from __future__ import annotations

import argparse
import json
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


def first_served(timeline, since: float, version: str) -> float | None:
    """Seconds from `since` until the first request sent after it was answered by `version`."""
    for sent, served, _status in sorted(timeline):
        if sent >= since and served == version:
            return sent - since
    return None


def switch_step(record: dict) -> dict:
    steps = [s for s in record["steps"] if s.get("written_at") and s.get("weights")
             and max(s["weights"].values()) == 100]
    return steps[0]


def run_stack(args, kind: str) -> tuple[list, object] | None:
    """Up a stack with router.kind `kind`, run the deploys and the rollback under load; (results, stats)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"ragops-deploy-bench-{kind}-"))
    config = write_local_config(workdir, analysis_window="3s", router_kind=kind)
    up = cli(config, "up")
    if up.returncode != 0:
        print(up.stderr, file=sys.stderr)
        return None
    router = json.loads(cli(config, "--output", "json", "status").stdout)["router"]["address"]
    print(f"[{kind}] stack up in {workdir}; load {args.rps:.0f} rps on {router}/version")

    results = []
    runner = LoadRunner(router + "/version", rps=args.rps, seconds=args.deploys * 30 + 60, max_in_flight=64)
    with runner as stats:
        time.sleep(2)
        for index in range(args.deploys):
            version = f"v{index + 2}"
            started = time.monotonic()
            proc = cli(config, "--output", "json", "deploy", "--version", version, "--yes")
            wall = time.monotonic() - started
            if proc.returncode != 0:
                print(f"[{kind}] deploy {version} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            record = json.loads(proc.stdout)
            step = switch_step(record)
            time.sleep(0.5)
            served = first_served(stats.timeline, step["written_at"], version)
            results.append(("deploy", version, served, record.get("switch_ms"), wall))
        previous = f"v{args.deploys}"
        started = time.monotonic()
        proc = cli(config, "--output", "json", "rollback", "--yes")
        rollback_wall = time.monotonic() - started
        time.sleep(1)
        if proc.returncode == 0:
            record = json.loads(proc.stdout)
            step = switch_step(record)
            served = first_served(stats.timeline, step["written_at"], previous)
            results.append(("rollback", previous, served, record.get("switch_ms"), rollback_wall))
        else:
            print(f"[{kind}] rollback failed: {proc.stderr}", file=sys.stderr)
        time.sleep(1)
    if not args.keep:
        cli(config, "down", "--purge", "--yes")
    return results, stats


def report(kind: str, results: list, stats) -> None:
    print()
    print(f"[{kind}]")
    print(f"{'op':9} {'version':8} {'switch->served ms':>17} {'router confirm ms':>18} {'command s':>10}")
    for op, version, served, confirm, wall in results:
        shown = f"{served * 1000:.0f}" if served is not None else "never"
        print(f"{op:9} {version:8} {shown:>17} {confirm or 0:>18.0f} {wall:>10.1f}")
    deploy_served = [r[2] * 1000 for r in results if r[0] == "deploy" and r[2] is not None]
    rollback = [r for r in results if r[0] == "rollback"]
    print(f"requests: {stats.requests} at {stats.rps:.0f} rps; failed: {stats.failed} (goal 0); "
          f"statuses {dict(stats.statuses)}")
    if deploy_served:
        print(f"switch call -> new color serving: median {statistics.median(deploy_served):.0f} ms, "
              f"max {max(deploy_served):.0f} ms (goal < 100 ms)")
    if rollback and rollback[0][2] is not None:
        print(f"rollback flip: {rollback[0][2] * 1000:.0f} ms until the old version served, "
              f"router confirmed in {rollback[0][3]:.0f} ms, whole command {rollback[0][4]:.2f} s (goal < 1 s)")


def side_by_side(runs: dict) -> None:
    """One line per router: switch-to-served over every switch (deploys and rollback)."""
    print()
    print(f"{'router':8} {'switches':>8} {'median ms':>10} {'min ms':>7} {'max ms':>7} {'stdev ms':>9} {'failed':>7}")
    for kind, (results, stats) in runs.items():
        served = [r[2] * 1000 for r in results if r[2] is not None]
        if not served:
            print(f"{kind:8} {0:>8} {'-':>10}")
            continue
        spread = statistics.stdev(served) if len(served) > 1 else 0.0
        print(f"{kind:8} {len(served):>8} {statistics.median(served):>10.1f} {min(served):>7.1f} "
              f"{max(served):>7.1f} {spread:>9.1f} {stats.failed:>7}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploys", type=int, default=5)
    parser.add_argument("--rps", type=float, default=150)
    parser.add_argument("--routers", default="traefik", help="comma-separated router.kind values, e.g. traefik,haproxy")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()

    runs = {}
    for kind in [k.strip() for k in args.routers.split(",") if k.strip()]:
        outcome = run_stack(args, kind)
        if outcome is None:
            return 1
        runs[kind] = outcome
        report(kind, *outcome)
    if len(runs) > 1:
        side_by_side(runs)
    return 0 if all(stats.failed == 0 for _, stats in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
