#!/usr/bin/env python3
"""Tracing overhead: the service's latency and CPU at a fixed loopback load with tracing off, sampled
at 10 % and at 100 % (spans exported over OTLP to a real local Jaeger).

A local stack is brought up with `monitoring.tracing: local` (PostgreSQL, Traefik, Jaeger). Three extra
service processes run beside it on the same database, identical but for RAG_OTEL_ENDPOINT /
RAG_OTEL_SAMPLE_RATIO; each round sends --rps query requests for --seconds straight to each process in
turn (off, 10 %, 100 %, then again), so a drift of the machine's speed touches every mode alike. Per mode:
client-side p50/p95 over all rounds, the process's CPU seconds per 1,000 requests (/proc/<pid>/stat), and
the ratio against tracing off, median and spread of the per-round ratios. Goal: p95 at 10 % within 5 %.

Usage: python bench/tracing_bench.py [--rps 50] [--seconds 20] [--rounds 3] [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ragops.devstack import free_port, write_local_config  # noqa: E402
from ragops.loadgen import run_load  # noqa: E402

MODES = {"off": None, "10%": 0.1, "100%": 1.0}


def cli(config: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(config), "-q", *args], check=True,
                   env={**os.environ, "CI": "1"})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_service(env: dict, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "ragservice.serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, cwd=REPO / "service", stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the service on {port} did not become ready: {log.read_text()[-500:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the stack and its directory")
    args = parser.parse_args()

    from ragops.config import load_config
    from ragops.db.connect import api_keys, app_dsn

    directory = Path(tempfile.mkdtemp(prefix="ragops-tracing-bench-"))
    directory.chmod(0o755)
    otlp, query = free_port(), free_port()
    config_path = write_local_config(directory, extra={"monitoring": {"tracing": "local", "otlp_listen": f"127.0.0.1:{otlp}",
                                                                      "tracing_listen": f"127.0.0.1:{query}"}})
    procs: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        cli(config_path, "up")
        config = load_config(config_path, "test")
        key = api_keys(config)[0]
        base = {**os.environ, "RAG_DATABASE_URL": app_dsn(config), "RAG_API_KEYS": key, "RAG_VERSION": "bench",
                "RAG_RATE_LIMIT_PER_MINUTE": "1000000", "PYTHONPATH": str(REPO / "service")}
        base.pop("RAG_OTEL_ENDPOINT", None)
        for mode, ratio in MODES.items():
            env = dict(base)
            if ratio is not None:
                env.update(RAG_OTEL_ENDPOINT=f"http://127.0.0.1:{otlp}/v1/traces", RAG_OTEL_SAMPLE_RATIO=str(ratio))
            port = free_port()
            procs[mode] = (start_service(env, port, directory / f"service-{mode.strip('%')}.log"), port)
        with httpx.Client(timeout=10) as client:   # something to find: a few documents
            for i in range(20):
                client.post(f"http://127.0.0.1:{procs['off'][1]}/api/v1/documents", headers={"X-API-Key": key},
                            json={"title": f"doc {i}", "content": f"backups are verified by restoring them, note {i}"})
        latencies: dict[str, list[float]] = {m: [] for m in MODES}
        cpu: dict[str, list[float]] = {m: [] for m in MODES}
        p95_rounds: dict[str, list[float]] = {m: [] for m in MODES}
        failed = dict.fromkeys(MODES, 0)
        load_avg = []
        for _round in range(args.rounds):
            for mode, (proc, port) in procs.items():
                before = cpu_seconds(proc.pid)
                stats = run_load(f"http://127.0.0.1:{port}", args.rps, args.seconds, api_key=key)
                spent = cpu_seconds(proc.pid) - before
                latencies[mode] += stats.latencies_ms
                cpu[mode].append(1000 * spent / max(stats.requests, 1))
                p95_rounds[mode].append(stats.p95_ms)
                failed[mode] += stats.failed
                load_avg.append(os.getloadavg()[0])
        print(f"tracing overhead at {args.rps:g} rps, {args.rounds} rounds x {args.seconds:g} s per mode; "
              f"load average {min(load_avg):.1f}-{max(load_avg):.1f}")
        print(f"{'mode':6} {'requests':>8} {'failed':>6} {'p50 ms':>7} {'p95 ms':>7} {'CPU s/1k req':>13} "
              f"{'p95 vs off (median [min-max])':>32} {'CPU vs off':>11}")
        for mode in MODES:
            ordered = sorted(latencies[mode])
            p50, p95 = ordered[len(ordered) // 2], ordered[int(0.95 * len(ordered))]
            ratios = [a / b for a, b in zip(p95_rounds[mode], p95_rounds["off"], strict=True)]
            cpu_ratio = statistics.median(cpu[mode]) / statistics.median(cpu["off"])
            print(f"{mode:6} {len(ordered):8d} {failed[mode]:6d} {p50:7.1f} {p95:7.1f} {statistics.median(cpu[mode]):13.3f} "
                  f"{statistics.median(ratios):10.3f} [{min(ratios):.3f}-{max(ratios):.3f}]{'':>9} {cpu_ratio:11.3f}")
        traced = httpx.get(f"http://127.0.0.1:{query}/api/traces", params={"service": "rag-engine", "limit": 5000},
                           timeout=10).json().get("data") or []
        print(f"traces in Jaeger afterwards: {len(traced)}")
    finally:
        for proc, _port in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
        if not args.keep:
            subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(config_path), "-q", "down", "--purge",
                            "--yes"], env={**os.environ, "CI": "1"}, check=False)
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
