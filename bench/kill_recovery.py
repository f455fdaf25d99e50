"""kill -9 of the router and of the live color under loopback load: failed requests and time to recover.

    python bench/kill_recovery.py                 # the supervisor (ragops up starts it) heals by itself
    python bench/kill_recovery.py --manual-up     # `ragops up` is run right after each kill: the best an
                                                  # operator can do without a supervisor (run it from a
                                                  # checkout before the supervisor to measure "before")

Each case: 80 req/s through the router for 14 s; at 3 s the component is killed with SIGKILL.
"Recovered after" is from the kill to the last failed request (0 when none failed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ragops.devstack import write_local_config
from ragops.loadgen import LoadRunner


def ragops(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(config), *args],
                          capture_output=True, text=True, env={**os.environ, "CI": "1"}, timeout=300)


def pid_of(state: Path, name: str) -> int:
    return int(json.loads((state / "run" / f"{name}.pid").read_text())["pid"])


def case(config: Path, state: Path, url: str, target: str, manual_up: bool) -> dict:
    with LoadRunner(url + "/version", rps=80, seconds=14, max_in_flight=32) as stats:
        time.sleep(3)
        killed_at = time.time()
        os.kill(pid_of(state, target), signal.SIGKILL)
        if manual_up:
            ragops(config, "up")
        time.sleep(11)
    failed = [t for t, _v, status in stats.timeline if t >= killed_at and (status == 0 or status >= 500)]
    return {"killed": target, "requests": stats.requests, "failed": stats.failed,
            "recovered_after_s": round(max(failed) - killed_at, 2) if failed else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manual-up", action="store_true", help="run `ragops up` after each kill (no supervisor)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="ragops-kill-"))
    config = write_local_config(directory)
    try:
        up = ragops(config, "up")
        assert up.returncode == 0, up.stderr
        listen = json.loads(ragops(config, "--output", "json", "status").stdout)["router"]["address"]
        results = [case(config, directory / "state", listen, "router", args.manual_up)]
        time.sleep(2)
        live = [c for c in json.loads(ragops(config, "--output", "json", "status").stdout)["colors"] if c["weight"]]
        results.append(case(config, directory / "state", listen, live[0]["color"], args.manual_up))
        for r in results:
            print(json.dumps(r))
        print(ragops(config, "status").stdout.splitlines()[-1])
    finally:
        ragops(config, "down", "--purge", "--yes")
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
