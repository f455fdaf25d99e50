"""Point-in-time recovery benchmark on the service-shaped dataset (bench/dataset.py: documents + chunks
with 256-dim vectors and the HNSW index).

    python bench/pitr_bench.py                 # ~1 GB dataset
    python bench/pitr_bench.py --size-mb 100   # a quick run

Starts its own throwaway PostgreSQL 16 with the WAL archive on (archive_command into a spool, as
`ragops up` configures it), then prints:

- physical backup: `ragops backup physical create` vs `pg_basebackup -D - -Ft -X fetch --checkpoint=fast
  | zstd -3 > file`, alternated pairs, wall and CPU ratios with their spread; ragops compresses with
  backups.compression_threads zstd workers (2), so a second series compares against `zstd -3 -T<same>`
  (what the rest of ragops's pipeline costs: age, SHA-256, the copies); peak RSS of ragops
  (VmHWM sampled from /proc). ragops also encrypts (age) and hashes (SHA-256). Both sides ask for
  --checkpoint=fast and each run follows a CHECKPOINT, so neither waits for a spread checkpoint.
  ragops's wall time split: CLI start-up, streaming (the manifest's duration), manifest + exit.
- restore: `ragops backup physical restore --to-latest` (untar + prefetched WAL + replay + promote) vs
  `ragops backup restore` of a logical backup of the same database (pg_restore rebuilds HNSW); the
  physical side split from the restored server's log (before the server starts, its fsync of the
  data directory, replay, end-of-recovery checkpoint, shutdown).
- WAL archive under bounded writes (--write-mb-per-s for --write-seconds): the shipper as its own
  process; per segment, the lag from archive_command's copy into the spool to the sidecar stored
  (p50, p95, max), gaps, and the shipper's share of one CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backup_bench import compare, pairs, run_measured, sh_measured
from ragops.netutil import free_port
from ragops.pg import pgctl


class PitrBench:
    def __init__(self, work: Path, node: pgctl.Node, password: str, spool: Path, db: str):
        self.work, self.node, self.password, self.db = work, node, password, db
        self.bindir = pgctl.bin_dir()
        self.env = {**os.environ, "PGPASSWORD": password, "PGHOST": "127.0.0.1", "PGPORT": str(node.port),
                    "PGUSER": "postgres"}
        self.store = work / "store"
        self.config = work / "ragops.yaml"
        self.config.write_text(json.dumps({"project": "bench", "default_env": "bench", "environments": {"bench": {
            "platform": "local", "state_dir": str(work / "state"),
            "database": {"name": db, "superuser": "postgres", "password": "${env:BENCH_PG_PASSWORD}",
                         "primary": {"name": "primary", "host": "127.0.0.1", "port": node.port}, "replicas": []},
            "backups": {"storage": f"file://{self.store}", "wal": {"spool_dir": str(spool), "poll_interval": "0.2s"},
                        "tables": ["documents", "chunks"]}}}}))
        self.renv = {**os.environ, "BENCH_PG_PASSWORD": password}
        self.ragops = [sys.executable, "-m", "ragops.cli.main", "-c", str(self.config), "-q"]
        self.rss: list[float] = []
        self.engine: list[float] = []
        self.steps: list[tuple[float, float, float]] = []

    def sql(self, statement: str, db: str = "postgres") -> str:
        return subprocess.run([f"{self.bindir}/psql", "-qAt", "-d", db, "-c", statement], env=self.env, check=True,
                              capture_output=True, text=True).stdout.strip()

    def threads(self) -> int:
        from ragops.config import load_config

        return load_config(self.config).backups.compression_threads

    def checkpoint(self) -> None:
        self.sql("CHECKPOINT")

    def plain_backup(self, threads: int | None = None) -> tuple[float, float]:
        # `sync FILE` at the end: ragops fsyncs what it stored before it reports success, so the baseline does too
        out = f"{self.work}/plain.tar.zst"
        workers = f" -T{threads}" if threads else ""
        return sh_measured(f"{self.bindir}/pg_basebackup -D - -Ft -X fetch --checkpoint=fast -h 127.0.0.1 "
                           f"-p {self.node.port} -U postgres | zstd -q -3{workers} > {out} && sync {out}", self.env)

    def ours_backup(self) -> tuple[float, float]:
        spawned = time.time()
        wall, cpu, vmhwm, _maxrss = run_measured(self.ragops + ["backup", "physical", "create"], self.renv)
        exited = time.time()
        self.rss.append(vmhwm)
        newest = json.loads(sorted(self.store.glob("*/manifest.json"))[-1].read_text())
        self.engine.append(newest["duration_seconds"])   # without the CLI's start-up
        from ragops.backup.catalog import parse_iso

        # where the wall time goes: the CLI's start-up (process spawned -> backup started: imports,
        # configuration, key, storage), the streaming (the manifest's duration: psql, pg_basebackup and
        # its checkpoint, the pipeline), the rest (manifest, lock, exit)
        start = parse_iso(newest["started_at"]).timestamp()
        self.steps.append((start - spawned, newest["duration_seconds"],
                           exited - parse_iso(newest["finished_at"]).timestamp()))
        return wall, cpu


def archive_lag(bench: PitrBench, mb_per_s: float, seconds: float) -> dict:
    """Bounded writes with the shipper running as its own process; lag per shipped segment."""
    before = {p.name for p in bench.store.glob("wal/*/*.json")}
    shipper = subprocess.Popen([sys.executable, "-m", "ragops.pitr.wal", str(bench.config), "bench"], env=bench.renv,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.sql("CREATE TABLE IF NOT EXISTS lag_probe (v text)", bench.db)
    start = time.monotonic()
    ticks0 = _cpu_ticks(shipper.pid)
    try:
        while time.monotonic() - start < seconds:
            tick = time.monotonic()
            bench.sql(f"INSERT INTO lag_probe SELECT md5(random()::text) || repeat('x', 990) "
                      f"FROM generate_series(1, {int(mb_per_s * 1000 / 5)})", bench.db)
            time.sleep(max(0.0, 0.2 - (time.monotonic() - tick)))
        last = bench.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        bench.sql("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 120
        while not list(bench.store.glob(f"wal/*/{last}.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        elapsed = time.monotonic() - start
        cpu = (_cpu_ticks(shipper.pid) - ticks0) / os.sysconf("SC_CLK_TCK")
    finally:
        shipper.kill()
        shipper.wait()
    lags = []
    for path in bench.store.glob("wal/*/*.json"):
        if path.name in before or not path.name[:24].isalnum():
            continue
        side = json.loads(path.read_text())
        from ragops.backup.catalog import parse_iso

        lags.append((parse_iso(side["shipped_at"]) - parse_iso(side["archived_at"])).total_seconds())
    lags.sort()
    check = subprocess.run(bench.ragops[:-1] + ["-o", "json", "backup", "wal", "check"], env=bench.renv,
                           capture_output=True, text=True)
    gaps = json.loads(check.stdout)["gaps"] if check.stdout.strip() else "check failed: " + check.stderr[-200:]
    p95 = lags[min(len(lags) - 1, int(0.95 * len(lags)))] if lags else None
    print(f"WAL archive, {mb_per_s} MB/s of inserts for {seconds:.0f}s: {len(lags)} segments shipped; lag spool -> "
          f"stored p50 {statistics.median(lags) if lags else float('nan'):.2f}s, p95 {p95 or float('nan'):.2f}s, "
          f"max {max(lags) if lags else float('nan'):.2f}s (goal p95 <= 5 s); gaps {gaps}; shipper CPU "
          f"{cpu:.1f}s over {elapsed:.0f}s = {100 * cpu / elapsed:.0f}% of one core", flush=True)
    return {"segments": len(lags), "lag_p95_s": p95, "lag_max_s": max(lags) if lags else None,
            "shipper_cpu_share": cpu / elapsed, "gaps": gaps}


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def restores(bench: PitrBench, rounds: int) -> dict:
    """Physical restore to the end of the archive vs a logical restore of the same database (both taken
    just before, so the physical side replays only the WAL written since its base backup)."""
    run_measured(bench.ragops + ["backup", "physical", "create"], bench.renv)
    run_measured(bench.ragops + ["backup", "create"], bench.renv)
    subprocess.run(bench.ragops + ["backup", "wal", "ship"], env=bench.renv, check=True)
    physical, logical, steps = [], [], []
    for index in range(rounds):
        target = bench.work / f"restored-{index}"
        spawned = time.time()
        physical.append(run_measured(bench.ragops + ["backup", "physical", "restore", "--to-latest",
                                                     "--target-dir", str(target)], bench.renv)[0])
        steps.append(server_steps(spawned, (bench.work / f"restored-{index}.log").read_text(errors="replace")))
        shutil.rmtree(target, ignore_errors=True)
        db = f"logical_{index}"
        bench.sql(f"CREATE DATABASE {db}")
        logical.append(run_measured(bench.ragops + ["--yes", "backup", "restore", "latest", "--target",
                                                    f"host=127.0.0.1 port={bench.node.port} user=postgres "
                                                    f"dbname={db} password={bench.password}"], bench.renv)[0])
        bench.sql(f"DROP DATABASE {db}")
    ratio = [lg / ph for ph, lg in zip(physical, logical, strict=True)]
    print(f"restore: physical + replay {statistics.median(physical):.2f}s (min {min(physical):.2f}, max "
          f"{max(physical):.2f}); logical (pg_restore, HNSW rebuilt) {statistics.median(logical):.2f}s (min "
          f"{min(logical):.2f}, max {max(logical):.2f}); logical / physical median {statistics.median(ratio):.1f}x "
          f"[{', '.join(f'{r:.1f}' for r in ratio)}] (goal >= 20x)", flush=True)
    medians = {name: round(statistics.median(step[name] for step in steps), 2) for name in steps[0]}
    print("  physical restore steps (medians): " + ", ".join(f"{k} {v:.2f}s" for k, v in medians.items()), flush=True)
    return {"physical_restore_s": statistics.median(physical), "logical_restore_s": statistics.median(logical),
            "speedup": statistics.median(ratio), "physical_restore_steps_s": medians}


def server_steps(spawned: float, log: str) -> dict:
    """Where a physical restore's time goes, from the restored server's log: ragops before the server
    starts (CLI start-up, checks, untar, WAL prefetch), the server's fsync of the data directory,
    the replay, the promotion with its end-of-recovery checkpoint, the shutdown."""
    from datetime import datetime

    def at(text: str) -> float:
        for line in log.splitlines():
            if text in line:
                moment = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")   # log_timezone: UTC, else local
                return (moment.replace(tzinfo=UTC) if line[24:27] in ("UTC", "GMT") else moment).timestamp()
        return float("nan")

    started, recovery, redo, done = (at(t) for t in ("starting PostgreSQL", "starting archive recovery",
                                                     "redo starts at", "archive recovery complete"))
    checkpoint, down = at("checkpoint complete"), at("database system is shut down")
    return {"before the server": started - spawned, "fsync of the data directory": recovery - started,
            "replay": done - redo, "checkpoint": checkpoint - done, "shutdown": down - checkpoint}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1000, help="dataset size (default 1000; 100 for quick runs)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated backup pairs")
    parser.add_argument("--restore-rounds", type=int, default=2, help="0 skips the restore comparison")
    parser.add_argument("--write-mb-per-s", type=float, default=4.0, help="bounded write rate for the archive lag")
    parser.add_argument("--write-seconds", type=float, default=30.0)
    args = parser.parse_args()
    if not shutil.which("zstd"):
        raise SystemExit("the zstd command-line tool is needed for the baseline (apt-get install zstd)")
    from bench.dataset import create_dataset

    work = Path(tempfile.mkdtemp(prefix="ragops-pitr-bench-"))
    work.chmod(0o755)
    password = "bench-" + secrets.token_hex(8)
    node = pgctl.Node("bench", work / "pgdata", free_port(), work / "logs" / "bench.log")
    spool = work / "spool"
    pgctl.prepare_dir(work)
    node.init_primary("postgres", password)
    pgctl.prepare_dir(spool)
    settings = {**pgctl.archive_settings(spool, 30), "shared_buffers": "256MB", "max_wal_size": "4GB",
                "maintenance_work_mem": "512MB"}
    pgctl.write_server_file(node.data_dir / "postgresql.conf",
                            "".join(f"{k} = '{v}'\n" for k, v in settings.items()), append=True)
    node.start()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    results: dict = {}
    try:
        bench = PitrBench(work, node, password, spool, "bench_pitr")
        bench.sql("CREATE DATABASE bench_pitr")
        stats = create_dataset(f"host=127.0.0.1 port={node.port} user=postgres dbname=bench_pitr "
                               f"password={password}", args.size_mb)
        print(f"database {stats['db_bytes'] / 1e6:.0f} MB, created in {stats['seconds']}s", flush=True)
        subprocess.run(bench.ragops + ["backup", "wal", "ship"], env=bench.renv, check=True)
        plain, ours = pairs(bench.plain_backup, bench.ours_backup, args.rounds, bench.checkpoint)
        threads = bench.threads()
        results.update(compare("physical backup", "pg_basebackup -Ft | zstd -3", plain,
                               f"ragops backup physical create (zstd -T{threads}: backups.compression_threads)", ours))
        if threads > 1:   # the same number of zstd workers on both sides: what the rest of the pipeline costs
            plain_t, ours_t = pairs(lambda: bench.plain_backup(threads), bench.ours_backup, args.rounds,
                                    bench.checkpoint)
            same = compare("physical backup, same zstd workers", f"pg_basebackup -Ft | zstd -3 -T{threads}",
                           plain_t, f"ragops backup physical create (zstd -T{threads})", ours_t)
            results.update({f"same_threads_{k}": v for k, v in same.items()})
        print(f"peak RSS of ragops backup physical create: {max(bench.rss):.0f} MB (VmHWM; goal <= 150 MB); "
              f"its streaming part alone (manifest duration, no CLI start-up): median "
              f"{statistics.median(bench.engine):.2f}s", flush=True)
        results["engine_median_s"] = statistics.median(bench.engine)
        startup, streaming, rest = (statistics.median(step) for step in zip(*bench.steps, strict=True))
        print(f"  its steps (medians): CLI start-up {startup:.2f}s, streaming {streaming:.2f}s, manifest + exit "
              f"{rest:.2f}s", flush=True)
        results["backup_steps_s"] = {"startup": round(startup, 3), "streaming": round(streaming, 3),
                                     "rest": round(rest, 3)}
        results["rss_mb"] = max(bench.rss)
        subprocess.run(bench.ragops + ["backup", "wal", "ship"], env=bench.renv, check=True)   # the backups' WAL
        results.update(archive_lag(bench, args.write_mb_per_s, args.write_seconds))
        if args.restore_rounds > 0:   # the logical side rebuilds HNSW: about 10 minutes a round at 1 GB
            subprocess.run(bench.ragops + ["backup", "wal", "ship"], env=bench.renv, check=True)
            results.update(restores(bench, args.restore_rounds))
    finally:
        node.stop(mode="immediate")
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print("summary:", json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
