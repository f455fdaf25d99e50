#!/usr/bin/env python3
"""Rollback benchmark on the local platform (real PostgreSQL, Traefik, uvicorn colors).

Brings a stack up, deploys v2 (v1 stays warm), then runs `ragops rollback --to V --yes` N times back
and forth between the two warm colors, in two rounds:
  - idle:  no load, only the probe below
  - load:  a bounded loopback load through the router besides the probe (--rps, default 150)
A probe thread sends one request at a time through the router (keep-alive, about --probe-rps a
second) and notes when each was sent and which version answered: sequential requests give the
moment of the switch to one round trip, where a load generator's own queueing would not.
For each rollback it records, from the moment the command is spawned:
  - served: until the first probe request sent after that moment is answered by the version
    rolled back to (goal < 500 ms; issue 13 item 14)
  - command: the whole command's wall time, and its CPU time (user + sys)
and prints the median and the spread (min-max, stdev) per round, beside the floor of any Python
command on this machine (`python -c pass`) and failed requests (goal 0).

The ragops commands run with bytecode caching on (PYTHONDONTWRITEBYTECODE removed from their
environment), as an installed ragops runs; one warm-up command fills the cache first.

With --webhook-delay S the rounds are instead idle rollbacks without a webhook and with
notify.webhook pointing at a local server that answers each POST after S seconds (notify.timeout
stays 5 s), interleaved one by one (the machine's load drifts): the switch must not wait for the
webhook (issue 25: within 10 % of the time without).

Usage: python bench/rollback_bench.py [--repeats 8] [--rps 150] [--probe-rps 100] [--webhook-delay 20] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ragops.devstack import write_local_config  # noqa: E402
from ragops.loadgen import LoadRunner  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"CI": "1"}


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(config), "-q", *args],
                          capture_output=True, text=True, cwd=REPO, env=ENV)


def timed(config: Path, *args: str) -> tuple[subprocess.CompletedProcess, float, float, float]:
    """(result, spawn time as wall clock, wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    spawned, started = time.time(), time.monotonic()
    proc = cli(config, *args)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, spawned, wall, cpu


class Probe(threading.Thread):
    """One request at a time through the router: (sent wall time, version that answered)."""

    def __init__(self, url: str, rps: float):
        super().__init__(daemon=True)
        self.url, self.pause = url, 1.0 / rps
        self.timeline: list[tuple[float, str, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.netloc, timeout=5)
        while not self.stop.is_set():
            sent = time.time()
            try:
                conn.request("GET", parts.path)
                resp = conn.getresponse()
                resp.read()
                self.timeline.append((sent, resp.getheader("x-rag-version", "?"), resp.status))
            except (OSError, http.client.HTTPException):
                self.timeline.append((sent, "-", 0))
                conn.close()
                conn = http.client.HTTPConnection(parts.netloc, timeout=5)
            self.stop.wait(max(0.0, self.pause - (time.time() - sent)))


def slow_webhook(delay: float) -> str:
    """A local webhook that answers every POST after `delay` seconds (a thread each); its URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(delay)
            try:
                self.send_response(200)
                self.end_headers()
            except OSError:
                pass     # the client gave up (notify.timeout)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


def set_webhook(config: Path, url: str | None) -> None:
    import yaml

    data = yaml.safe_load(config.read_text())
    env = data["environments"]["test"]
    env["notify"] = {"webhook": "${env:BENCH_WEBHOOK}"} if url else {}
    ENV.pop("BENCH_WEBHOOK", None)
    if url:
        ENV["BENCH_WEBHOOK"] = url
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def first_served(timeline, since: float, version: str) -> float | None:
    for sent, served, _status in sorted(timeline):
        if sent >= since and served == version:
            return sent - since
    return None


def python_floor(repeats: int = 5) -> float:
    walls = []
    for _ in range(repeats):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        walls.append(time.monotonic() - started)
    return statistics.median(walls)


def live_version(config: Path) -> str:
    status = json.loads(cli(config, "--output", "json", "status").stdout)
    colors = status["colors"]
    rows = colors.values() if isinstance(colors, dict) else colors
    return max(rows, key=lambda c: c.get("weight") or 0)["version"]


def one_round(config: Path, url: str, rps: float, probe_rps: float, repeats: int) -> tuple[list[dict], object, int]:
    """(rows, load stats, probe failures) of `repeats` rollbacks under `rps` of load (0: none)."""
    rows = []
    probe = Probe(url, probe_rps)
    load = LoadRunner(url, rps=rps, seconds=repeats * 8 + 30, max_in_flight=64) if rps else None
    stats = load.__enter__() if load else None
    probe.start()
    try:
        time.sleep(1.5)
        for _ in range(repeats):
            target = "v1" if live_version(config) == "v2" else "v2"
            # --to: a plain rollback after a rollback changes nothing ("already rolled back")
            proc, spawned, wall, cpu = timed(config, "--output", "json", "rollback", "--to", target, "--yes")
            if proc.returncode != 0:
                print(f"rollback failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
                continue
            time.sleep(0.3)
            served = first_served(list(probe.timeline), spawned, target)
            flip = json.loads(proc.stdout).get("switch_ms")
            rows.append({"target": target, "served": served, "wall": wall, "cpu": cpu, "confirm_ms": flip})
            time.sleep(0.5)
    finally:
        probe.stop.set()
        probe.join(10)
        if load:
            load.__exit__(None, None, None)
    return rows, stats, sum(1 for _, _, status in probe.timeline if status == 0 or status >= 500)


def spread(values: list[float]) -> str:
    if not values:
        return "no data"
    ms = [v * 1000 for v in values]
    stdev = statistics.stdev(ms) if len(ms) > 1 else 0.0
    return f"median {statistics.median(ms):6.0f} ms  [{min(ms):.0f}-{max(ms):.0f}]  stdev {stdev:.0f}"


def report(name: str, rows: list[dict], stats, probe_failed: int) -> None:
    served = [r["served"] for r in rows if r["served"] is not None]
    load = f"{stats.rps:.0f} rps of load, {stats.requests} requests, {stats.failed} failed" if stats else "no load"
    print(f"\n[{name}] {len(rows)} rollbacks; {load}; probe requests failed: {probe_failed} (goal 0)")
    print(f"  spawn -> router serves the previous version: {spread(served)}   (goal < 500 ms)")
    print(f"  whole command, wall:                         {spread([r['wall'] for r in rows])}")
    print(f"  whole command, CPU:                          {spread([r['cpu'] for r in rows])}")
    print(f"  router write -> confirmed (inside):          "
          f"{spread([r['confirm_ms'] / 1000 for r in rows if r['confirm_ms'] is not None])}")
    if len(served) < len(rows):
        print(f"  {len(rows) - len(served)} rollback(s) never seen served by the probe")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--rps", type=float, default=150, help="the bounded load of the second round")
    parser.add_argument("--probe-rps", type=float, default=100, help="the sequential probe's rate (both rounds)")
    parser.add_argument("--webhook-delay", type=float, default=None,
                        help="compare idle rollbacks without and with a webhook answering after this many seconds")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ragops-rollback-bench-"))
    config = write_local_config(workdir, analysis_window="2s")
    up = cli(config, "up")
    if up.returncode != 0:
        print(up.stderr, file=sys.stderr)
        return 1
    failed = 0
    try:
        deploy = cli(config, "deploy", "--version", "v2", "--yes")
        if deploy.returncode != 0:
            print(deploy.stderr, file=sys.stderr)
            return 1
        url = json.loads(cli(config, "--output", "json", "status").stdout)["router"]["address"] + "/version"
        floor = python_floor()
        print(f"stack in {workdir}; `python -c pass` on this machine: {floor * 1000:.0f} ms; "
              f"load average {os.getloadavg()[0]:.1f}")
        if args.webhook_delay is None:
            for name, rps in (("idle", 0.0), ("load", args.rps)):
                rows, stats, probe_failed = one_round(config, url, rps, args.probe_rps, args.repeats)
                report(name, rows, stats, probe_failed)
                failed += probe_failed + (stats.failed if stats else 0)
        else:   # interleaved, one rollback each in turn: the machine's load drifts between rounds
            hook = slow_webhook(args.webhook_delay)
            modes = [("idle, no webhook", None), (f"idle, webhook answering after {args.webhook_delay:g}s", hook)]
            results: dict[str, list[dict]] = {name: [] for name, _ in modes}
            probe_failures = {name: 0 for name, _ in modes}
            for _ in range(args.repeats):
                for name, target in modes:
                    set_webhook(config, target)
                    rows, _stats, probe_failed = one_round(config, url, 0.0, args.probe_rps, 1)
                    results[name] += rows
                    probe_failures[name] += probe_failed
            medians = []
            for name, _ in modes:
                report(name, results[name], None, probe_failures[name])
                failed += probe_failures[name]
                served = [r["served"] for r in results[name] if r["served"] is not None]
                medians.append(statistics.median(served) if served else None)
            if None not in medians:
                print(f"\nwith the slow webhook / without (medians): {medians[1] / medians[0]:.2f} (goal <= 1.10)")
        print(f"\nload average at the end {os.getloadavg()[0]:.1f} (2 cores: above ~2 every wall time stretches)")
    finally:
        if not args.keep:
            cli(config, "down", "--purge", "--yes")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
