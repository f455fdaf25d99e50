"""The HA fault matrix (database.ha: patroni on the local platform), printed as a table.

    python bench/ha_matrix.py                        # every fault, ha_sync off then on
    python bench/ha_matrix.py --sync on --faults freeze,patroni
    python bench/ha_matrix.py --fast-release         # database.ha_fast_release: true

For each ha_sync setting it starts a throwaway stack (three etcd members, Patroni on a primary and a
replica, the leader-aware endpoint and the fence watchdogs, Traefik, the service) on free loopback
ports at ttl 20 / loop_wait 1, then runs each fault once under two writers (through the service at
20/s, and a direct client with target_session_attrs=read-write at 10/s) and a 100 ms probe
(ragops/ha/matrix.py). Columns: acknowledged writes lost (service / direct), milliseconds in which
two nodes accepted writes (direct / through the endpoint), the longest write pause through the
service, seconds to a new leader (- when none was needed), and whether status named the fault within
5 s (y/n, - when the fault does not last that long). The load average is printed with each table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.auto_failover_bench import free_block
from ragops.devstack import pair_port, write_local_config

HEADER = f"{'fault':<12} {'lost svc/dir':>12} {'2-writable ms':>14} {'pause s':>8} {'promo s':>8} {'status':>6}"


def row_line(row: dict) -> str:
    promo = "-" if row["promotion_s"] is None else f"{row['promotion_s']:.1f}"
    status = {True: "y", False: "n", None: "-"}[row["status_ok"]]
    return (f"{row['fault']:<12} {row['lost_service']:>5} / {row['lost_direct']:<4} "
            f"{row['two_writable_ms']:>6} / {row['endpoint_split_ms']:<5} {row['write_pause_s']:>8.1f} "
            f"{promo:>8} {status:>6}")


def run_matrix(sync: str, faults: list[str], fast_release: bool, out) -> list[dict]:
    directory = Path(tempfile.mkdtemp(prefix=f"ragops-hamatrix-{sync}-"))
    directory.chmod(0o755)   # as root, the PostgreSQL account must reach the data directories in it
    extra = {"database": {"ha": "patroni", "ha_sync": sync, "ha_fast_release": fast_release,
                          "patroni": {"ttl": 20, "loop_wait": 1, "retry_timeout": 3,
                                      "rest_port": pair_port(), "etcd_port": free_block(7)}}}
    config_path = write_local_config(directory, extra=extra)
    root = Path(__file__).resolve().parent.parent
    cli = [sys.executable, "-m", "ragops.cli.main", "-c", str(config_path), "--yes"]
    from ragops.config import load_config
    from ragops.ha.matrix import run_fault

    rows = []
    try:
        subprocess.run([*cli, "up"], check=True, cwd=root, stdout=subprocess.DEVNULL)
        config = load_config(config_path)
        for fault in faults:
            before = os.getloadavg()[0]
            row = run_fault(config, fault, progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
            row["load"] = [round(before, 1), round(os.getloadavg()[0], 1)]
            rows.append(row)
            print(json.dumps(row), file=out, flush=True)
    finally:
        subprocess.run([*cli, "down", "--purge"], cwd=root, stdout=subprocess.DEVNULL)
    return rows


def main() -> None:
    from ragops.ha.matrix import FAULTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sync", choices=["off", "on", "both"], default="both")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated: {', '.join(FAULTS)}")
    parser.add_argument("--fast-release", action="store_true", help="database.ha_fast_release: true")
    parser.add_argument("--json", type=Path, help="also append every row as JSON to this file")
    args = parser.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)} (one of {', '.join(FAULTS)})")
    out = open(args.json, "a") if args.json else open(os.devnull, "w")   # noqa: SIM115 - closed below
    try:
        for sync in (["off", "on"] if args.sync == "both" else [args.sync]):
            load = os.getloadavg()
            rows = run_matrix(sync, faults, args.fast_release, out)
            print(f"\nha_sync: {sync}   (fast release {'on' if args.fast_release else 'off'}; load average at start "
                  f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, now {' '.join(f'{x:.1f}' for x in os.getloadavg())})")
            print("two-writable ms: direct / through the endpoint; lost: acknowledged writes missing afterwards")
            print(HEADER)
            for row in rows:
                print(row_line(row) + f"   load {row['load'][0]}->{row['load'][1]}")
            sys.stdout.flush()
    finally:
        out.close()


if __name__ == "__main__":
    main()
