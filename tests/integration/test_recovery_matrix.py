"""The recovery fault matrix: `db recover` killed (-9) or interrupted (Ctrl-C) at its journaled phases, then
`--resume` or `--abort`; damaged and missing objects. Each scenario either recovers exactly or refuses
before the first change naming the object; after each the environment serves with one primary.
One local stack for all of them (each scenario leaves it serving; the order matters: the missing history
file needs the timelines the earlier recovers made). The rows go to $RAGOPS_MATRIX_REPORT when set
(bench/recovery_matrix.py prints them as a table)."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import run_sql, running_stack

pytestmark = pytest.mark.integration
ROWS: list[dict] = []


@pytest.fixture(scope="module")
def stack():
    with running_stack("matrix") as running:
        yield running
    report = os.environ.get("RAGOPS_MATRIX_REPORT")
    if report:
        Path(report).write_text(json.dumps(ROWS, indent=2))


class World:
    def __init__(self, stack):
        from ragops.config import load_config

        self.stack = stack
        self.config = load_config(stack.config_path)
        self.store = stack.config_path.parent / "backups"
        password = (stack.state_dir / "secrets" / "db-password").read_text().strip()
        self.dsn = (f"host=127.0.0.1 port={self.config.database.primary.port} user=postgres password={password} "
                    "connect_timeout=5 dbname=")

    def sql(self, *statements: str, dbname: str = "rag"):
        return run_sql(self.dsn + dbname, *statements)

    def rows(self) -> list[str]:
        return [r[0] for r in self.sql("SELECT label FROM mx ORDER BY id")]

    def write(self, label: str) -> None:
        self.sql(f"INSERT INTO mx (label) VALUES ('{label}')")

    def moment(self) -> str:
        time.sleep(1.1)
        text = self.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")[0][0]
        time.sleep(1.1)
        return text

    def state(self) -> str:
        """'serving, 1 primary' or what is wrong."""
        nodes = self.stack.json("db", "status")["nodes"]
        primaries = [n["name"] for n in nodes if n["role"] == "primary"]
        try:
            code = httpx.get(self.stack.router_url + "/readyz", timeout=5).status_code
        except httpx.HTTPError as exc:
            code = str(exc)
        return f"{'serving' if code == 200 else f'NOT serving ({code})'}, {len(primaries)} primary"

    def phase(self) -> str | None:
        try:
            return json.loads((self.stack.state_dir / "recover.json").read_text()).get("phase")
        except (OSError, ValueError):
            return None

    def interrupt_at(self, target: str, phase: str, sig: int) -> None:
        proc = self.stack.spawn("db", "recover", "--to-time", target, "--yes")
        deadline = time.monotonic() + 180
        while self.phase() != phase:
            if proc.poll() is not None:
                raise AssertionError(f"recover ended before phase {phase}: {proc.communicate()[1][-2000:]}")
            assert time.monotonic() < deadline, f"phase {phase} never came"
            time.sleep(0.02)
        proc.send_signal(sig)
        proc.communicate(timeout=120)

    def flip(self, path: Path, offset: int | None = None) -> bytes:
        original = path.read_bytes()
        where = offset if offset is not None else len(original) // 2
        path.write_bytes(original[:where] + bytes([original[where] ^ 0xFF]) + original[where + 1:])
        return original


@pytest.fixture(scope="module")
def world(stack):
    world = World(stack)
    world.sql("CREATE TABLE mx (id serial PRIMARY KEY, label text NOT NULL)")
    world.write("before-base")
    stack.json("backup", "physical", "create")
    return world


def _record(scenario: str, outcome: str, named: str, world: World) -> None:
    ROWS.append({"scenario": scenario, "outcome": outcome, "named": named, "after": world.state()})
    assert ROWS[-1]["after"] == "serving, 1 primary", ROWS[-1]


def _interrupted(world: World, phase: str, sig: int, then: str, scenario: str) -> None:
    world.write(f"{scenario}-kept")
    target = world.moment()
    world.write(f"{scenario}-lost")
    before = world.rows()
    world.interrupt_at(target, phase, sig)
    if phase != "laying-down":
        up = world.stack.cli("up")
        assert up.returncode == 1 and "--resume" in up.stderr, up.stderr[-1000:]
        assert world.stack.cli("status").returncode == 3
        world.stack.json(*(["db", "recover", f"--{then}", "--yes"]), timeout=600)
    assert world.phase() is None
    if phase == "laying-down":   # nothing was stopped: the extraction beside the primary is gone, nothing else changed
        from ragops.pg.pgctl import managed_node

        parent = managed_node(world.config, world.config.database.primary.name).data_dir.parent
        assert not list(parent.glob("*.recovering-*"))
    expected = before if then in ("abort", "nothing") else before[:-1]
    assert world.rows() == expected
    if then == "abort":   # what the attempt wrote is kept, named for what it is, and removable
        kept = world.stack.json("db", "kept")
        failed = [k for k in kept["kept"] if k["kind"] == "failed-attempt"]
        assert failed and kept["total_bytes"] >= sum(k["bytes"] for k in failed) > 0, kept
        world.stack.json("db", "kept", "--remove", failed[0]["id"], "--yes")
        assert failed[0]["id"] not in [k["id"] for k in world.stack.json("db", "kept")["kept"]]
    _record(scenario, f"exact rows ({len(expected)})", f"phase {phase}", world)


@pytest.mark.parametrize("phase,sig,then", [
    ("laying-down", signal.SIGINT, "nothing"),
    ("replaying", signal.SIGKILL, "abort"),
    ("replaying", signal.SIGKILL, "resume"),
    ("promoted", signal.SIGKILL, "resume"),
])
def test_interrupted_recover(world, phase, sig, then):
    _interrupted(world, phase, sig, then, f"{signal.Signals(sig).name.lower()}-{phase}-{then}")


def _refused(world: World, scenario: str, damage, expect_named: str) -> None:
    world.write(f"{scenario}-row")
    target = world.moment()
    before = world.rows()
    restore = damage()
    try:
        proc = world.stack.cli("db", "recover", "--to-time", target, "--yes", timeout=600)
    finally:
        restore()
    assert proc.returncode == 1 and expect_named in proc.stderr, proc.stderr[-2000:]
    assert "maintenance on" not in proc.stderr and world.rows() == before
    _record(scenario, "refused before any change", expect_named, world)


def _newest(store: Path, pattern: str) -> Path:
    return sorted(store.glob(pattern), key=lambda p: p.stat().st_mtime)[-1]


def test_flipped_byte_in_a_base(world):
    base = _newest(world.store, "*/base.tar.zst.age")
    _refused(world, "flipped byte in the base", lambda: (lambda data: lambda: base.write_bytes(data))(world.flip(base)),
             base.parent.name)


def test_flipped_byte_in_a_segment(world):
    from ragops.backup.catalog import read_json, storages

    storage, _copy = storages(world.config)
    newest_base = sorted(p.parent.name for p in world.store.glob("*/base.tar.zst.age"))[-1]
    first = read_json(storage, f"{newest_base}/manifest.json")["physical"]["stop_wal_file"]
    segment = world.store / "wal" / first[:8] / f"{first}.zst.age"
    _refused(world, "flipped byte in a segment", lambda: (lambda data: lambda: segment.write_bytes(data))(
        world.flip(segment)), first)


def test_missing_history_file(world):
    history = _newest(world.store, "wal/*/*.history.json")
    name = history.name[:-len(".json")]
    aside = history.with_name(history.name + ".aside")

    def damage():
        history.rename(aside)
        return lambda: aside.rename(history)

    _refused(world, "missing history file", damage, name)


def _archive_now(world: World) -> None:
    segment = world.sql("SELECT pg_walfile_name(pg_current_wal_lsn())", dbname="postgres")[0][0]
    world.sql("SELECT pg_switch_wal()", dbname="postgres")
    deadline = time.monotonic() + 30
    while (world.sql("SELECT last_archived_wal FROM pg_stat_archiver", dbname="postgres")[0][0] or "") < segment:
        assert time.monotonic() < deadline, f"{segment} was not archived"
        time.sleep(0.1)
    assert world.stack.cli("backup", "wal", "ship").returncode == 0


def _readme_procedure() -> str:
    """The bash blocks of the README's by-hand section, verbatim, in order."""
    import re

    from tests.conftest import REPO

    section = (REPO / "README.md").read_text().split("### By hand, when ragops itself is broken", 1)[1]
    return "\n".join(re.findall(r"```bash\n(.*?)```", section.split("\n## ", 1)[0], re.S))


def test_readme_by_hand_procedure_restores_exact_rows(world):
    """After the recovers above (several timelines, bases left behind on old ones): the README's blocks,
    run as written with age, zstd, tar and the PostgreSQL binaries, give exactly the rows at T."""
    import getpass
    import shutil
    import subprocess

    from ragops.netutil import free_port
    from ragops.pg import pgctl
    from tests.conftest import need, server_tmpdir

    need(shutil.which("age") is not None, "the age CLI (apt-get install age)")
    world.write("by-hand-kept")
    target = world.moment()
    world.write("by-hand-lost")
    expected = world.rows()[:-1]
    _archive_now(world)
    root = server_tmpdir("byhand")
    port = free_port()
    home = pgctl.server_home(world.config)
    binaries = Path(pgctl.Node("by-hand", root / "restored", port, root / "x.log", home=home).pg("pg_ctl")).parent
    env = {"STORE": str(world.store), "KEY": str(world.stack.state_dir / "secrets" / "backup-age-key"),
           "TARGET": target.replace("T", " ").rstrip("Z"), "DEST": str(root / "restored"), "PORT": str(port),
           "PGBIN": str(binaries), "RUNAS": pgctl.server_user() or getpass.getuser()}
    try:
        proc = subprocess.run(["bash", "-e", "-c", _readme_procedure()], env={**os.environ, **env}, text=True,
                              capture_output=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        password = (world.stack.state_dir / "secrets" / "db-password").read_text().strip()
        rows = run_sql(f"host=127.0.0.1 port={port} user=postgres password={password} dbname=rag",
                       "SELECT label FROM mx ORDER BY id")
        assert [r[0] for r in rows] == expected, proc.stdout
        _record("README by-hand procedure", f"exact rows ({len(expected)})", proc.stdout.strip().splitlines()[-1],
                world)
    finally:
        pgctl.Node("by-hand", root / "restored", port, root / "x.log", home=home).stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)
