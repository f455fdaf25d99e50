"""database.ha_fast_release: release a dead leader's key in etcd so Patroni promotes within a loop
instead of waiting out the key's ttl (at least 20 s).

It acts only on proof that the leader is gone, never on a leader that is only unreachable: the node
named by the leader key must have NO Patroni process (the pid ragops started it with, checked
against its command line; a zombie counts as gone) AND NO postmaster (postmaster.pid's pid does not
exist) on this machine. A paused (SIGSTOP), slow or partitioned leader still has its processes, so
its key is never touched. The delete is a transaction that only succeeds while the key still names
that node at the same revision, so a leader elected meanwhile is never released.
"""
from __future__ import annotations

import base64
import json
import urllib.request

from ragops.ha import patroni
from ragops.ha.etcd import EtcdCluster

NAMESPACE = "/service"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _post(etcd: EtcdCluster, path: str, body: dict) -> dict | None:
    for member in etcd.members:
        request = urllib.request.Request(f"{member.client_url}{path}", data=json.dumps(body).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=1) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError):
            continue
    return None


def leader_key(config) -> str:
    return f"{NAMESPACE}/{patroni.scope(config)}/leader"


def read_leader(config, etcd: EtcdCluster) -> tuple[str, str] | None:
    """(leader name, mod revision) from etcd, or None."""
    data = _post(etcd, "/v3/kv/range", {"key": _b64(leader_key(config))})
    kvs = (data or {}).get("kvs") or []
    if not kvs:
        return None
    return base64.b64decode(kvs[0]["value"]).decode(), kvs[0]["mod_revision"]


def processes_gone(config, name: str) -> bool:
    """True only when neither the node's Patroni nor its postmaster exists on this machine."""
    from ragops.ha.watchdog import postmaster_alive

    node = patroni.find(config, name)
    return node.proc.pid() is None and not postmaster_alive(node)


def release_dead_leader(config, etcd: EtcdCluster | None = None) -> str | None:
    """Delete the leader key when (and only when) its node's processes are proven gone; returns the
    released node's name, else None."""
    etcd = etcd or EtcdCluster(config)
    found = read_leader(config, etcd)
    if found is None:
        return None
    name, revision = found
    try:
        if not processes_gone(config, name):
            return None
    except Exception:  # noqa: BLE001 - a node ragops does not know: no proof, no release
        return None
    key = _b64(leader_key(config))
    result = _post(etcd, "/v3/kv/txn", {
        "compare": [{"key": key, "target": "VALUE", "result": "EQUAL", "value": _b64(name)},
                    {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": revision}],
        "success": [{"request_delete_range": {"key": key}}]})
    return name if (result or {}).get("succeeded") else None
