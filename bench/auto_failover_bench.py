"""Automatic failover benchmark (database.ha: patroni on the local platform).

    python bench/auto_failover_bench.py                  # 5 kill -9 runs at Patroni's floor
    python bench/auto_failover_bench.py --runs 3 --steady 600   # plus 10 minutes of steady load
    python bench/auto_failover_bench.py --sync           # synchronous_mode: true (0 acknowledged writes lost)
    python bench/auto_failover_bench.py --fast-release   # database.ha_fast_release: true (goal <= 10 s)

Starts its own throwaway stack (three etcd members, Patroni on a primary and a replica, Traefik, the
service) on free loopback ports with ttl 20, loop_wait 1, retry_timeout 3. Each run: write load
through the router, kill -9 of the leader node (its Patroni and postmaster), no ragops command;
measured until a write is accepted again through the router, and until the killed node streams
again as a replica (the supervisor restarts its Patroni once the other node leads). Prints every
run, the median and min-max, and the median against Patroni's ttl (the floor: a dead leader's key
lives that long) and against the goal (25 s). `--steady` counts leader changes under load (the
false-failover risk of these timings; goal 0).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ragops.devstack import pair_port, write_local_config
from ragops.netutil import port_open

GOAL_SECONDS = 25.0


def free_block(size: int) -> int:
    import random

    for _ in range(200):
        base = random.randint(20000, 60000)
        if not any(port_open("127.0.0.1", base + i) for i in range(size)):
            return base
    raise RuntimeError("no block of free ports")


def cli(config_path: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(config_path), "--yes", *args],
                   check=True, cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL)


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f}s (min {min(values):.1f}, max {max(values):.1f}, n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steady", type=float, default=0, help="seconds of steady load counting leader changes")
    parser.add_argument("--sync", action="store_true", help="synchronous_mode: true")
    parser.add_argument("--ttl", type=int, default=20)
    parser.add_argument("--fast-release", action="store_true", help="database.ha_fast_release: true")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="ragops-autofailover-"))
    directory.chmod(0o755)   # as root, the PostgreSQL account must reach the data directories in it
    patroni = {"ttl": args.ttl, "loop_wait": 1, "retry_timeout": 3, "synchronous_mode": args.sync,
               "rest_port": pair_port(), "etcd_port": free_block(7)}
    config_path = write_local_config(directory, extra={"database": {"ha": "patroni", "patroni": patroni,
                                                                    "ha_fast_release": args.fast_release}})
    from ragops.config import load_config
    from ragops.ha import patroni as patroni_mod
    from ragops.ha.drill import leader_changes, measure_auto_failover

    try:
        cli(config_path, "up")
        config = load_config(config_path)
        runs = []
        for index in range(args.runs):
            result = measure_auto_failover(config, progress=lambda m: print(f"  {m}", file=sys.stderr))
            runs.append(result)
            print(json.dumps({"run": index + 1, **result}))
            patroni_mod.wait_for(lambda: patroni_mod.leader(config), 60, "a leader")
        accepted = [r["writes_accepted_seconds"] for r in runs]
        rejoined = [r["rejoined_seconds"] for r in runs]
        print(f"\nPatroni ttl {args.ttl}, loop_wait 1, retry_timeout 3, synchronous_mode {args.sync}, "
              f"fast release {args.fast_release}")
        print(f"kill -9 leader -> writes accepted through the router: {spread(accepted)}")
        print(f"  ratio to the ttl floor: {statistics.median(accepted) / args.ttl:.2f}; "
              f"to the goal ({GOAL_SECONDS:.0f} s): {statistics.median(accepted) / GOAL_SECONDS:.2f}")
        print(f"kill -9 leader -> old node streams again: {spread(rejoined)}")
        print(f"acknowledged writes lost: {[r['lost_acked_writes'] for r in runs]} "
              f"(RPO seconds {[r['rpo_seconds'] for r in runs]})")
        if args.steady:
            steady = leader_changes(config, args.steady)
            print(f"steady load {args.steady:.0f}s: {steady['leader_changes']} leader changes "
                  f"({steady['writes']} writes, {steady['failed_writes']} failed)")
    finally:
        subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(config_path), "--yes", "down", "--purge"],
                       cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
