"""Backup benchmark: ragops backup/restore against the plain PostgreSQL tools.

    python bench/backup_bench.py              # ~1 GB (pgbench -i -s 70)
    python bench/backup_bench.py --scale 280  # ~4 GB: adds the second RSS point (slow)
    python bench/backup_bench.py --scales 70,280

Starts its own throwaway PostgreSQL 16 (pgserver binaries, free port, a temp dir), builds the
database with pgbench, then prints, per scale:

- backup:  ragops backup create  vs  pg_dump -Fc -Z0 | zstd -<level>
  The pgserver build of pg_dump has no zstd (`-Z zstd` fails), so "pg_dump -Fc with the same
  compression" is done the fair way: pg_dump -Fc -Z0 piped into the zstd command-line tool at the
  same level as ragops (backups.compression_level, default 3), single-threaded like ragops, both
  writing a file on the same disk. ragops additionally encrypts (age) and hashes (SHA-256) and
  includes its own start-up (the CLI is run as a subprocess, as a user would).
- peak RSS of the ragops process during the backup (VmHWM sampled from /proc, plus wait4's
  ru_maxrss, which covers the process and the children it reaped, i.e. pg_dump).
- every measurement follows a CHECKPOINT, each tool runs --rounds times with the order alternated
  (these 2 cores are shared), and the best run of each is compared.
- restore: ragops backup restore (digest pre-pass + decrypt + decompress into pg_restore's stdin)
  vs  zstd -dc dump.zst | pg_restore, each into a fresh empty database, single job.

Goals from the issue: backup ratio <= 1.10, peak RSS <= 150 MB and flat, restore ratio <= 1.10.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ragops.db import pgctl
from ragops.netutil import free_port


def sh(cmd: str, env: dict) -> float:
    start = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, env=env)
    return time.monotonic() - start


def run_measured(args: list[str], env: dict) -> tuple[float, float, float]:
    """Wall time, peak VmHWM (MB) of the process, wait4 ru_maxrss (MB)."""
    start = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]) / 1024)
            except (OSError, ValueError):
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stderr = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    done.set()
    thread.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{stderr.decode()[-2000:]}")
    return elapsed, peak[0], usage.ru_maxrss / 1024


def bench_scale(scale: int, work: Path, node: pgctl.Node, password: str, level: int, rounds: int,
                skip_restore: bool) -> dict:
    env = {**os.environ, "PGPASSWORD": password, "PGHOST": "127.0.0.1", "PGPORT": str(node.port),
           "PGUSER": "postgres"}
    bindir = pgctl.bin_dir()
    db = f"bench_s{scale}"
    print(f"\n== scale {scale}: pgbench -i -s {scale} ({db}) ==", flush=True)
    sh(f"{bindir}/psql -q -d postgres -c 'DROP DATABASE IF EXISTS {db}' -c 'CREATE DATABASE {db}'", env)
    build = sh(f"{bindir}/pgbench -i -q -s {scale} {db} 2>/dev/null", env)
    size = subprocess.run([f"{bindir}/psql", "-At", "-d", db, "-c", f"SELECT pg_database_size('{db}')"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
    print(f"built in {build:.0f}s, database size {int(size) / 1e9:.2f} GB", flush=True)

    out = work / f"s{scale}"
    out.mkdir(exist_ok=True)
    store = out / "store"
    cfg = out / "ragops.yaml"
    cfg.write_text(json.dumps({
        "project": "bench", "default_env": "bench", "environments": {"bench": {
            "platform": "local", "state_dir": str(out / "state"),
            "database": {"name": db, "superuser": "postgres", "password": "${env:BENCH_PG_PASSWORD}",
                         "primary": {"name": "primary", "host": "127.0.0.1", "port": node.port}, "replicas": []},
            "backups": {"storage": f"file://{store}", "compression_level": level,
                        # the service's tables (absent from pgbench): as configured in production.
                        # Counting pgbench_accounts too would add one 7M-row scan (~1 s) to ragops.
                        "tables": ["documents", "chunks"]}}}}))
    renv = {**os.environ, "BENCH_PG_PASSWORD": password}
    ragops = [sys.executable, "-m", "ragops.cli.main", "-c", str(cfg), "-q"]

    def checkpoint() -> None:
        sh(f"{bindir}/psql -q -d postgres -c CHECKPOINT", env)

    # warm the cache the same way for both (one throwaway raw dump)
    sh(f"{bindir}/pg_dump -Fc -Z0 -d {db} > /dev/null", env)
    plain_times, our_times, rss = [], [], []
    for round_ in range(rounds):   # alternate the order: the machine is shared and noisy
        for which in (("plain", "ours") if round_ % 2 == 0 else ("ours", "plain")):
            checkpoint()
            if which == "plain":
                plain_times.append(sh(f"{bindir}/pg_dump -Fc -Z0 -d {db} | zstd -q -{level} -T1 "
                                      f"-o {out}/plain.dump.zst -f", env))
            else:
                shutil.rmtree(store, ignore_errors=True)
                elapsed, vmhwm, maxrss = run_measured(ragops + ["backup", "create"], renv)
                our_times.append(elapsed)
                rss.append((vmhwm, maxrss))
    base_dump, ours = min(plain_times), min(our_times)
    vmhwm, maxrss = max(r[0] for r in rss), max(r[1] for r in rss)
    stored = sum(p.stat().st_size for p in store.rglob("*.age"))
    plain = (out / "plain.dump.zst").stat().st_size
    print(f"backup:  pg_dump -Fc -Z0 | zstd -{level}: {base_dump:.1f}s ({plain / 1e6:.0f} MB) "
          f"[runs {', '.join(f'{t:.1f}' for t in plain_times)}]   ragops backup create: {ours:.1f}s "
          f"({stored / 1e6:.0f} MB) [runs {', '.join(f'{t:.1f}' for t in our_times)}]   "
          f"ratio {ours / base_dump:.2f} (goal <= 1.10)", flush=True)
    print(f"peak RSS of ragops backup create: {vmhwm:.0f} MB (VmHWM), {maxrss:.0f} MB (wait4 ru_maxrss, incl. "
          f"reaped children)  (goal <= 150 MB)", flush=True)

    result = {"scale": scale, "db_bytes": int(size), "backup_plain_s": base_dump, "backup_ragops_s": ours,
              "backup_ratio": ours / base_dump, "rss_vmhwm_mb": vmhwm, "rss_maxrss_mb": maxrss}
    if scale <= 100 and not skip_restore:   # restore comparison at the 1 GB point
        plain_r, our_r = [], []
        for round_ in range(rounds):
            for which in (("plain", "ours") if round_ % 2 == 0 else ("ours", "plain")):
                target_db = f"r_{which}_{db}"
                sh(f"{bindir}/psql -q -d postgres -c 'DROP DATABASE IF EXISTS {target_db}' "
                   f"-c 'CREATE DATABASE {target_db}'", env)
                checkpoint()
                if which == "plain":
                    plain_r.append(sh(f"zstd -dc {out}/plain.dump.zst | {bindir}/pg_restore -d {target_db}", env))
                else:
                    target = f"host=127.0.0.1 port={node.port} user=postgres dbname={target_db} password={password}"
                    our_r.append(run_measured(ragops + ["--yes", "backup", "restore", "latest", "--target", target],
                                              renv)[0])
                sh(f"{bindir}/psql -q -d postgres -c 'DROP DATABASE {target_db}'", env)
        base_restore, ours_restore = min(plain_r), min(our_r)
        print(f"restore: zstd -dc | pg_restore: {base_restore:.1f}s [runs {', '.join(f'{t:.1f}' for t in plain_r)}]"
              f"   ragops backup restore: {ours_restore:.1f}s [runs {', '.join(f'{t:.1f}' for t in our_r)}]   "
              f"ratio {ours_restore / base_restore:.2f} (goal <= 1.10)", flush=True)
        result.update(restore_plain_s=base_restore, restore_ragops_s=ours_restore,
                      restore_ratio=ours_restore / base_restore)
    sh(f"{bindir}/psql -q -d postgres -c 'DROP DATABASE {db}'", env)
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="70", help="pgbench scales, comma-separated (70 ~ 1 GB, 280 ~ 4 GB)")
    parser.add_argument("--scale-4gb", action="store_true", help="also run scale 280 (~4 GB; slow)")
    parser.add_argument("--level", type=int, default=3, help="zstd level for both sides")
    parser.add_argument("--rounds", type=int, default=2, help="runs per tool, order alternated; best is reported")
    parser.add_argument("--skip-restore", action="store_true", help="backup and RSS only")
    parser.add_argument("--workdir", default=None, help="where the cluster and dumps go (default: a temp dir)")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",") if s]
    if args.scale_4gb and 280 not in scales:
        scales.append(280)
    if not shutil.which("zstd"):
        raise SystemExit("the zstd command-line tool is needed for the baseline (apt-get install zstd)")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ragops-backup-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    password = "bench-" + secrets.token_hex(8)
    node = pgctl.Node("bench", work / "pgdata", free_port(), work / "logs" / "bench.log")
    pgctl.prepare_dir(work)
    node.init_primary("postgres", password)
    with (node.data_dir / "postgresql.conf").open("a") as handle:
        handle.write("shared_buffers = 256MB\nmax_wal_size = 4GB\nmaintenance_work_mem = 256MB\n")
    node.start()
    results = []
    try:
        for scale in scales:
            results.append(bench_scale(scale, work, node, password, args.level, args.rounds,
                                       args.skip_restore))
    finally:
        node.stop(mode="immediate")
        shutil.rmtree(work, ignore_errors=True)
    print("\nsummary:", json.dumps([{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}
                                    for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
