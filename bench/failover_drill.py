"""Failover drill: measured RTO and lost acknowledged writes, async and synchronous replication.

For each mode it starts a throwaway local environment (`ragops up`: PostgreSQL primary + replica,
Traefik, the service; a secondary "region" with its own router and service ports), runs write load
through the router (every acknowledged document id recorded), kills the primary postmaster with
SIGKILL, runs `ragops failover --yes`, keeps writing (clients follow "DNS" to the secondary
region's router once the failover reports it), then counts acknowledged writes missing on the new
primary.

    python bench/failover_drill.py                # both modes
    python bench/failover_drill.py --mode sync --writers 8 --load-seconds 8

Goals (issue 5): RTO <= 10 s here; lost writes <= ~1 s worth (async) and 0 (synchronous).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ragops.devstack import pair_port  # noqa: E402
from ragops.netutil import free_port  # noqa: E402


def write_config(directory: Path, synchronous: bool) -> Path:
    doc = {"project": "drill", "default_env": "drill", "environments": {"drill": {
        "platform": "local", "state_dir": str(directory / "state"),
        "service": {"path": str(REPO / "service"), "port": pair_port(), "version": "v1",
                    "rate_limit_per_minute": 1_000_000, "startup_timeout": "60s", "workers": 0},
        "router": {"listen": f"127.0.0.1:{free_port()}", "api": f"127.0.0.1:{free_port()}"},
        "database": {"primary": {"name": "primary", "port": free_port()},
                     "replicas": [{"name": "replica1", "port": free_port()}], "synchronous": synchronous},
        "backups": {"storage": f"file://{directory / 'backups'}"},
        "deploy": {"drain_timeout": "5s"},
        "slo": {"rto_seconds": 10, "rpo_seconds": 1},
        "regions": {"primary": {"database_node": "primary"},
                    "secondary": {"database_node": "replica1", "router": f"127.0.0.1:{free_port()}",
                                  "router_api": f"127.0.0.1:{free_port()}", "service_port": pair_port()}},
    }}}
    path = directory / "ragops.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def ragops(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(config), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env={**os.environ, "CI": "1"})


def _words() -> str:
    """Distinct content per document: thousands of identical vectors defeat the HNSW index, and
    the smoke test's query would then miss its own document."""
    return " ".join(f"w{uuid.uuid4().hex[:6]}" for _ in range(6))


class Load:
    """Writer threads posting documents; every acknowledged id is kept with its time."""

    def __init__(self, url: str, api_key: str, writers: int):
        self.url = url
        self.api_key = api_key
        self.writers = writers
        self.acked: list[tuple[float, str]] = []
        self.errors = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(writers)]

    def run(self) -> None:
        import httpx

        headers = {"X-API-Key": self.api_key}
        while not self.stop.is_set():
            url = self.url
            try:
                with httpx.Client(base_url=url, timeout=5) as client:
                    while not self.stop.is_set() and url == self.url:
                        r = client.post("/api/v1/documents", headers=headers,
                                        json={"title": f"drill {uuid.uuid4().hex[:8]}", "content": _words()})
                        if r.status_code in (200, 201):
                            with self.lock:
                                self.acked.append((time.time(), str(r.json()["id"])))
                        else:
                            self.errors += 1
                            time.sleep(0.02)
            except Exception:  # noqa: BLE001 - connection errors during the failover are expected
                self.errors += 1
                time.sleep(0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10)


def drill(mode: str, writers: int, load_seconds: float, keep: bool, warm: bool = False) -> dict:
    from ragops.config import load_config
    from ragops.pg import pgctl

    directory = Path(tempfile.mkdtemp(prefix=f"ragops-drill-{mode}-"))
    config_path = write_config(directory, synchronous=(mode == "sync"))
    config = load_config(config_path)
    result: dict = {"mode": mode}
    try:
        up = ragops(config_path, "up", timeout=240)
        if up.returncode != 0:
            raise SystemExit(f"ragops up failed:\n{up.stderr[-2000:]}")
        api_key = (config.state_dir / "secrets" / "api-key").read_text().strip()
        primary_router = "http://" + config.router.listen
        secondary_router = "http://" + config.env.regions["secondary"].router
        if mode == "sync":
            status = json.loads(ragops(config_path, "-o", "json", "db", "status").stdout)
            result["sync_state"] = next(n["sync_state"] for n in status["nodes"] if n["name"] == "replica1")
        if warm:
            from ragops.platforms import get_platform
            from ragops.readiness import wait_ready

            secondary = get_platform(config, region="secondary")
            secondary.start_router(lambda _m: None)
            secondary.start_color("blue", config.service.version, deploy_id="drill-warm-standby")
            wait_ready(secondary, "blue", 60)
            result["secondary"] = "warm (service running before the failure, no traffic)"
        else:
            result["secondary"] = "cold (started by the failover)"
        with Load(primary_router, api_key, writers) as load:
            time.sleep(load_seconds)
            before = len(load.acked)
            primary = pgctl.managed_node(config, "primary")
            kill_at = time.time()
            primary.kill9()
            failure_iso = datetime.fromtimestamp(kill_at, UTC).isoformat()
            proc = ragops(config_path, "--yes", "-o", "json", "failover", "--failure-time", failure_iso)
            command_seconds = time.time() - kill_at
            if proc.returncode != 0:
                result["failover_error"] = proc.stderr[-1500:]
            report = json.loads(proc.stdout) if proc.stdout.strip() else {}
            load.url = secondary_router        # clients follow DNS to the secondary region
            time.sleep(3)
        acked = load.acked
        times = sorted(t for t, _ in acked if t > kill_at - 1)
        # the client-observed outage: the longest pause between acknowledged writes around the kill
        gaps = [b - a for a, b in itertools.pairwise(times)]
        outage = max(gaps) if gaps else None
        # which acknowledged writes does the new primary have?
        password = (config.state_dir / "secrets" / "db-password").read_text().strip()
        import psycopg

        replica = config.database.replicas[0]
        with psycopg.connect(f"host=127.0.0.1 port={replica.port} user=postgres password={password} dbname=rag",
                             autocommit=True) as conn:
            present = {str(r[0]) for r in conn.execute("SELECT id FROM documents")}
        missing = [i for _, i in acked if i not in present]
        rate = before / load_seconds if load_seconds else 0
        result.update({
            "acked_writes": len(acked), "acked_before_kill": before, "write_rate_per_s": round(rate, 1),
            "lost_acked_writes": len(missing),
            "lost_seconds_worth": round(len(missing) / rate, 3) if rate else None,
            "rto_seconds_report": report.get("rto_seconds"),
            "rto_service_seconds": report.get("rto_service_seconds"),
            "failover_command_seconds": round(command_seconds, 2),
            "client_outage_seconds": round(outage, 2) if outage is not None else None,
            "rpo_bytes": report.get("rpo_bytes"), "rpo_seconds": report.get("rpo_seconds"),
            "rpo_source": report.get("rpo_source"), "errors_during_drill": load.errors,
            "steps": [(s["name"], s["seconds"]) for s in report.get("steps", [])],
            "passed": report.get("passed", False),
        })
    finally:
        if not keep:
            ragops(config_path, "down", "--purge", "--yes", timeout=180)
        else:
            result["kept"] = str(config_path)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["async", "sync", "both"], default="both")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--load-seconds", type=float, default=6.0)
    parser.add_argument("--keep", action="store_true", help="leave the environments running for inspection")
    parser.add_argument("--warm", action="store_true",
                        help="run the service in the secondary region before the failure (warm standby)")
    args = parser.parse_args()
    modes = ["async", "sync"] if args.mode == "both" else [args.mode]
    results = [drill(mode, args.writers, args.load_seconds, args.keep, args.warm) for mode in modes]
    for r in results:
        print(json.dumps(r, indent=2))
    print(f"\nsecondary region: {'warm' if args.warm else 'cold'}")
    print("mode   acked  lost  lost(s)  RTO(report)  RTO(service)  client outage  failover cmd  RPO bytes")
    for r in results:
        print(f"{r['mode']:<6} {r.get('acked_writes', '-'):>5}  {r.get('lost_acked_writes', '-'):>4}  "
              f"{r.get('lost_seconds_worth', '-')!s:>7}  {r.get('rto_seconds_report', '-')!s:>11}  "
              f"{r.get('rto_service_seconds', '-')!s:>12}  {r.get('client_outage_seconds', '-')!s:>14}  "
              f"{r.get('failover_command_seconds', '-')!s:>12}  {r.get('rpo_bytes', '-')!s:>9}")
    ok = all(r.get("passed") for r in results) and all(
        r.get("lost_acked_writes", 1) == 0 for r in results if r["mode"] == "sync")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
