"""Backup benchmark: ragops backup/restore against the plain PostgreSQL tools, on the
service-shaped dataset (bench/dataset.py: documents + chunks with text and 256-dim vectors, HNSW).

    python bench/backup_bench.py                 # ~1 GB dataset, 5 alternated pairs each
    python bench/backup_bench.py --size-mb 100   # a quick run
    python bench/backup_bench.py --size-mb 1000,4000 --skip-restore   # adds the RSS point at 4 GB

Starts its own throwaway PostgreSQL 16 (pgserver binaries, free port, a temp dir), then prints:

- fixed overhead: each side on a database with the service's schema and no rows. What ragops
  adds there (CLI start-up, config, key, connection and snapshot, manifest) is the fixed cost that
  dominated the old pgbench runs; it is reported on its own, not hidden in a ratio.
- backup:  ragops backup create  vs  pg_dump -Fc -Z0 | zstd -<level>
  The pgserver build of pg_dump has no zstd (`-Z zstd` fails), so "pg_dump -Fc with the same
  compression" is done the fair way: pg_dump -Fc -Z0 piped into the zstd command-line tool at the
  same level as ragops (backups.compression_level, default 3), single-threaded like ragops, both
  writing a file on the same disk. ragops additionally encrypts (age) and hashes (SHA-256) and
  includes its own start-up (the CLI is run as a subprocess, as a user would).
- restore: ragops backup restore (digest and key checks + decrypt + decompress into pg_restore's
  stdin) vs  zstd -dc dump.zst | pg_restore, each into a fresh empty database, single job (both
  rebuild the HNSW index, as a real restore does).
- peak RSS of the ragops process during the backup (VmHWM sampled from /proc, plus wait4's
  ru_maxrss, which covers the process and the children it reaped, i.e. pg_dump).

Every measurement follows a CHECKPOINT; the two sides run in pairs with the order alternated
(A B, B A, ...: these 2 cores are shared and their speed drifts), and the report gives the median
and the min-max of each side and the median (min-max) of the per-pair ratios.

Goals from the issue: backup and restore ratio <= 1.10, peak RSS <= 150 MB and flat.
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
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ragops.netutil import free_port
from ragops.pg import pgctl

Run = tuple[float, float]   # (wall seconds, CPU seconds)


def sh(cmd: str, env: dict) -> float:
    start = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, env=env)
    return time.monotonic() - start


def sh_measured(cmd: str, env: dict) -> tuple[float, float]:
    """Wall time and client CPU seconds (user + sys of bash and the tools it reaped; not the server's)."""
    wall, cpu, _vmhwm, _maxrss = run_measured(["bash", "-o", "pipefail", "-c", cmd], env)
    return wall, cpu


def run_measured(args: list[str], env: dict) -> tuple[float, float, float, float]:
    """Wall time, CPU seconds (user + sys, reaped children included), peak VmHWM (MB) of the process,
    wait4 ru_maxrss (MB). The CPU seconds hardly depend on how busy the shared machine is."""
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
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, cpu, peak[0], usage.ru_maxrss / 1024


class Bench:
    """One database on the throwaway server, with a ragops config pointing at it."""

    def __init__(self, work: Path, node: pgctl.Node, password: str, db: str, level: int):
        self.node, self.password, self.db, self.level = node, password, db, level
        self.env = {**os.environ, "PGPASSWORD": password, "PGHOST": "127.0.0.1", "PGPORT": str(node.port),
                    "PGUSER": "postgres", "PGOPTIONS": "-c client_min_messages=warning"}
        self.bindir = pgctl.bin_dir()
        self.out = work / db
        self.out.mkdir(exist_ok=True)
        self.store = self.out / "store"
        cfg = self.out / "ragops.yaml"
        cfg.write_text(json.dumps({
            "project": "bench", "default_env": "bench", "environments": {"bench": {
                "platform": "local", "state_dir": str(self.out / "state"),
                "database": {"name": db, "superuser": "postgres", "password": "${env:BENCH_PG_PASSWORD}",
                             "primary": {"name": "primary", "host": "127.0.0.1", "port": node.port},
                             "replicas": []},
                # the service's tables, as configured in production (their rows are counted)
                "backups": {"storage": f"file://{self.store}", "compression_level": level,
                            "tables": ["documents", "chunks"]}}}}))
        self.renv = {**os.environ, "BENCH_PG_PASSWORD": password}
        self.ragops = [sys.executable, "-m", "ragops.cli.main", "-c", str(cfg), "-q"]
        self.rss: list[tuple[float, float]] = []

    def psql(self, *commands: str, db: str = "postgres") -> None:
        args = [f"{self.bindir}/psql", "-q", "-d", db]
        for command in commands:
            args += ["-c", command]
        subprocess.run(args, env=self.env, check=True)

    def conninfo(self, db: str) -> str:
        return f"host=127.0.0.1 port={self.node.port} user=postgres dbname={db} password={self.password}"

    def checkpoint(self) -> None:
        self.psql("CHECKPOINT")

    def plain_backup(self) -> tuple[float, float]:
        return sh_measured(f"{self.bindir}/pg_dump -Fc -Z0 -d {self.db} | zstd -q -{self.level} -T1 "
                  f"-o {self.out}/plain.dump.zst -f", self.env)

    def ours_backup(self) -> tuple[float, float]:
        shutil.rmtree(self.store, ignore_errors=True)
        wall, cpu, vmhwm, maxrss = run_measured(self.ragops + ["backup", "create"], self.renv)
        self.rss.append((vmhwm, maxrss))
        return wall, cpu

    def restore_pair(self) -> tuple[Callable[[], Run], Callable[[], Run]]:
        """(plain, ours): each restores into a fresh empty database, dropped afterwards."""
        def fresh(which: str, run: Callable[[str], Run]) -> Run:
            target_db = f"r_{which}_{self.db}"
            self.psql(f"DROP DATABASE IF EXISTS {target_db}", f"CREATE DATABASE {target_db}")
            self.checkpoint()
            try:
                return run(target_db)
            finally:
                self.psql(f"DROP DATABASE {target_db}")

        def plain() -> Run:
            return fresh("plain", lambda t: sh_measured(f"zstd -dc {self.out}/plain.dump.zst | "
                                               f"{self.bindir}/pg_restore -d {t}", self.env))

        def ours() -> Run:
            return fresh("ours", lambda t: run_measured(
                self.ragops + ["--yes", "backup", "restore", "latest", "--target", self.conninfo(t)],
                self.renv)[:2])
        return plain, ours


def pairs(plain: Callable[[], Run], ours: Callable[[], Run], rounds: int,
          before: Callable[[], None] | None = None) -> tuple[list[Run], list[Run]]:
    """`rounds` pairs, the order alternated (plain first, then ours first, ...)."""
    plain_runs: list[Run] = []
    our_runs: list[Run] = []
    for round_ in range(rounds):
        order = ((plain, plain_runs), (ours, our_runs))
        for run, into in (order if round_ % 2 == 0 else order[::-1]):
            if before:
                before()
            into.append(run())
    return plain_runs, our_runs


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f}s (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def compare(what: str, plain_name: str, plain: list[Run], our_name: str, ours: list[Run]) -> dict:
    """Wall time and CPU seconds of each side, and the per-pair ratios of both."""
    result = {}
    for i, figure in ((0, "wall"), (1, "cpu")):
        p, o = [r[i] for r in plain], [r[i] for r in ours]
        ratios = [b / a for a, b in zip(p, o, strict=True)]
        print(f"{what} ({figure} seconds):\n  {plain_name}: {spread(p)}\n  {our_name}: {spread(o)}\n"
              f"  ratio per pair: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
              f"max {max(ratios):.3f})  [pairs {', '.join(f'{r:.2f}' for r in ratios)}]   goal <= 1.10", flush=True)
        result.update({f"{what}_{figure}_plain_median_s": statistics.median(p),
                       f"{what}_{figure}_ragops_median_s": statistics.median(o),
                       f"{what}_{figure}_ratio_median": statistics.median(ratios),
                       f"{what}_{figure}_ratio_min": min(ratios), f"{what}_{figure}_ratio_max": max(ratios)})
    return result


BACKUP_NAMES = ("pg_dump -Fc -Z0 | zstd", "ragops backup create")
RESTORE_NAMES = ("zstd -dc | pg_restore", "ragops backup restore")


def fixed_overhead(bench: Bench, rounds: int) -> dict:
    """Both sides on the schema without rows: what ragops costs before and after the bytes flow."""
    print(f"\n== fixed overhead: the service's schema, no rows ({bench.db}) ==", flush=True)
    plain_b, ours_b = pairs(bench.plain_backup, bench.ours_backup, rounds, bench.checkpoint)
    plain_r, ours_r = pairs(*bench.restore_pair(), rounds)
    result = {}
    for what, names, plain, ours in (("backup", BACKUP_NAMES, plain_b, ours_b),
                                     ("restore", RESTORE_NAMES, plain_r, ours_r)):
        for i, figure in ((0, "wall"), (1, "cpu")):
            p, o = [r[i] for r in plain], [r[i] for r in ours]
            extra = statistics.median(o) - statistics.median(p)
            print(f"{what} of an empty database, {figure} seconds: {names[0]} {spread(p)}; {names[1]} {spread(o)}; "
                  f"fixed overhead {extra:+.2f}s (median difference)", flush=True)
            result[f"fixed_{what}_{figure}_s"] = extra
    return result


def bench_dataset(bench: Bench, size_mb: int, rounds: int, restore_rounds: int, skip_restore: bool) -> dict:
    from bench.dataset import create_dataset

    print(f"\n== service-shaped dataset, --size-mb {size_mb} ({bench.db}) ==", flush=True)
    stats = create_dataset(bench.conninfo(bench.db), size_mb)
    sh(f"{bench.bindir}/pg_dump -Fc -Z0 -d {bench.db} > /dev/null", bench.env)   # warm the cache for both
    plain_runs, our_runs = pairs(bench.plain_backup, bench.ours_backup, rounds, bench.checkpoint)
    stored = sum(p.stat().st_size for p in bench.store.rglob("*.age"))
    plain_size = (bench.out / "plain.dump.zst").stat().st_size
    print(f"database {stats['db_bytes'] / 1e6:.0f} MB, created in {stats['seconds']}s; compressed dump "
          f"{plain_size / 1e6:.0f} MB (zstd -{bench.level}), ragops stored {stored / 1e6:.0f} MB", flush=True)
    result = {"size_mb": size_mb, "db_bytes": stats["db_bytes"], "create_s": stats["seconds"],
              **compare("backup", BACKUP_NAMES[0], plain_runs, BACKUP_NAMES[1], our_runs)}
    vmhwm, maxrss = max(r[0] for r in bench.rss), max(r[1] for r in bench.rss)
    print(f"peak RSS of ragops backup create: {vmhwm:.0f} MB (VmHWM), {maxrss:.0f} MB (wait4 ru_maxrss, incl. "
          f"reaped children)  (goal <= 150 MB)", flush=True)
    result.update(rss_vmhwm_mb=vmhwm, rss_maxrss_mb=maxrss)
    if not skip_restore:
        plain_r, ours_r = pairs(*bench.restore_pair(), restore_rounds)
        result.update(compare("restore", RESTORE_NAMES[0], plain_r, RESTORE_NAMES[1], ours_r))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", default="1000", help="dataset sizes in MB, comma-separated (default 1000)")
    parser.add_argument("--level", type=int, default=3, help="zstd level for both sides")
    parser.add_argument("--rounds", type=int, default=5, help="alternated pairs per comparison")
    parser.add_argument("--restore-rounds", type=int, default=None,
                        help="pairs for the dataset restores (default: --rounds; each rebuilds the HNSW index)")
    parser.add_argument("--skip-restore", action="store_true", help="backup and RSS only")
    parser.add_argument("--skip-fixed", action="store_true", help="skip the empty-database overhead runs")
    parser.add_argument("--workdir", default=None, help="where the cluster and dumps go (default: a temp dir)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.size_mb.split(",") if s]
    if not shutil.which("zstd"):
        raise SystemExit("the zstd command-line tool is needed for the baseline (apt-get install zstd)")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ragops-backup-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if not args.workdir:
        work.chmod(0o755)   # mkdtemp makes it 0700: as root, the PostgreSQL account must reach it
    password = "bench-" + secrets.token_hex(8)
    node = pgctl.Node("bench", work / "pgdata", free_port(), work / "logs" / "bench.log")
    pgctl.prepare_dir(work)
    node.init_primary("postgres", password)
    with (node.data_dir / "postgresql.conf").open("a") as handle:
        handle.write("shared_buffers = 256MB\nmax_wal_size = 4GB\nmaintenance_work_mem = 512MB\n")
    node.start()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start "
          f"(shared: other jobs may run meanwhile)", flush=True)
    results: list[dict] = []
    try:
        if not args.skip_fixed:
            bench = new_bench(work, node, password, "bench_empty", args.level, rows_mb=0)
            results.append(fixed_overhead(bench, args.rounds))
        for size in sizes:
            bench = new_bench(work, node, password, f"bench_{size}mb", args.level)
            results.append(bench_dataset(bench, size, args.rounds, args.restore_rounds or args.rounds,
                                         args.skip_restore))
            bench.psql(f"DROP DATABASE {bench.db}")
    finally:
        node.stop(mode="immediate")
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    print("summary:", json.dumps([{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                                  for r in results]))
    return 0


def new_bench(work: Path, node: pgctl.Node, password: str, db: str, level: int, rows_mb: int | None = None) -> Bench:
    """A fresh database; with rows_mb=0 it gets the service's schema and no rows."""
    bench = Bench(work, node, password, db, level)
    bench.psql(f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}")
    if rows_mb == 0:
        from ragops.pg.migrate import apply_migrations, default_migrations_dir

        apply_migrations(bench.conninfo(db), default_migrations_dir())
    return bench


if __name__ == "__main__":
    sys.exit(main())
