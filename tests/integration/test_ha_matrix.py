"""The HA fault matrix on a real Patroni + etcd cluster (one for the module), database.ha_sync: on,
ttl 20 / loop_wait 1 and database.ha_fast_release (a node whose processes are all gone is released
at once; it never shortens a freeze or a dead Patroni alone, whose processes exist).

Each fault runs once under two writers (through the service, and one client connected directly with
target_session_attrs=read-write) and a probe every 100 ms (ragops/ha/matrix.py), and must show:
0 moments in which two nodes accept writes (directly or through the endpoint), 0 acknowledged
writes lost, and a status that names the fault within 5 s where the fault lasts that long.

The rows reproduce the losses found on main fdfa92e: a Patroni killed alone (two primaries for 2.7 s,
82 writes lost), a Patroni frozen past the ttl (two primaries for 24 s, ~720 lost), down + up after a
failover (the stale configured primary promoted, 39 lost), and a status that said nothing."""
from __future__ import annotations

import shutil

import pytest

from tests.conftest import need, server_tmpdir
from tests.integration.conftest import _pair_port, _start_stack
from tests.integration.test_patroni import _free_block

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def matrix_stack():
    import importlib.util

    need(importlib.util.find_spec("patroni") is not None, "Patroni (pip install -e '.[ha]')")
    need(shutil.which("haproxy") is not None, "haproxy (apt-get install haproxy)")
    from ragops.ha.etcd import etcd_binary

    try:
        etcd_binary()
    except Exception as exc:  # noqa: BLE001
        need(False, f"etcd ({exc})")
    directory = server_tmpdir("hamatrix")
    extra = {"database": {"ha": "patroni", "ha_fast_release": True, "ha_sync": "on",
                          "patroni": {"ttl": 20, "loop_wait": 1, "retry_timeout": 3,
                                      "rest_port": _pair_port(), "etcd_port": _free_block(7)}}}
    stack = _start_stack(directory, extra=extra)
    try:
        yield stack
    finally:
        stack.cli("down", "--purge", "--yes", timeout=180)
        shutil.rmtree(directory, ignore_errors=True)


def _config(stack):
    from ragops.config import load_config

    return load_config(stack.config_path)


#: (fault, what else must hold for it)
ROWS = [
    ("patroni", "restarted at once: same leader, no promotion"),
    ("freeze", "fenced before the key expired; the replica took over"),
    ("postmaster", "Patroni restarts its PostgreSQL"),
    ("node", "released at once and promoted"),
    ("etcd-member", "nothing changes, status stays quiet"),
    ("etcd-quorum", "read-only leader, no promotion, status says so"),
    ("switchover", "planned"),
    ("down-up", "the leader before down leads after up, no new timeline"),
]


@pytest.mark.parametrize(("fault", "expect"), ROWS, ids=[r[0] for r in ROWS])
def test_fault(matrix_stack, fault, expect):
    from ragops.ha.matrix import run_fault

    row = run_fault(_config(matrix_stack), fault, progress=lambda m: print(f"  {m}", flush=True))
    print({k: v for k, v in row.items() if k != "status_seen"})
    print("status within 5 s:", row["status_seen"])
    assert row["endpoint_split_ms"] == 0, row
    assert row["two_writable_ms"] == 0, row
    assert row["acked_service"] > 0 and row["acked_direct"] > 0, row
    assert (row["lost_service"], row["lost_direct"]) == (0, 0), row
    assert row["status_ok"] is not False, row
    if fault == "patroni":
        assert row["new_leader"] == row["old_leader"] and row["promotion_s"] is None, row
        assert row["timeline"][0] == row["timeline"][1], row
    if fault in ("freeze", "node"):
        assert row["new_leader"] != row["old_leader"], row
    if fault == "down-up":   # the leader before down leads after up, on the same timeline
        assert row["new_leader"] == row["old_leader"] and row["timeline"][0] == row["timeline"][1], row


def test_status_names_a_frozen_leader_and_exits_3(matrix_stack):
    """The CLI itself, while the leader's Patroni is frozen (short of the fence): first line, exit 3."""
    import os
    import signal
    import time

    from ragops.ha import patroni
    from ragops.ha.matrix import wait_whole

    config = _config(matrix_stack)
    wait_whole(config)
    leader = patroni.leader(config)
    assert leader
    pid = patroni.find(config, leader).proc.pid()
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(2.5)   # the endpoint's checks time out first
        proc = matrix_stack.cli("status")
        db = matrix_stack.cli("db", "status")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].startswith(f"HA: LEADER {leader}: ITS PATRONI DOES NOT ANSWER"), proc.stdout
    assert db.returncode == 3 and db.stdout.splitlines()[0].startswith("HA: LEADER"), db.stdout
    wait_whole(config)
    healthy = matrix_stack.cli("status")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
