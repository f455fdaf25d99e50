"""`database.ha_sync: off | on | strict`: Patroni's synchronous_mode / synchronous_mode_strict, the
guarantee each gives (`up` brings a running cluster to it: ragops/ha/manager.py)."""
from __future__ import annotations

GUARANTEES = {
    "off": "asynchronous replication: a failover may lose the acknowledged writes the promoted replica had "
           "not received, at most maximum_lag_on_failover bytes (Patroni promotes no replica further behind)",
    "on": "synchronous_mode: a commit is acknowledged only once the synchronous standby has it, and only "
          "that standby may be promoted: no single node, Patroni or etcd fault loses an acknowledged write; "
          "with no standby left the leader goes on alone (writes then live on one node until one rejoins)",
    "strict": "synchronous_mode_strict: as on, and with no synchronous standby the leader does not acknowledge "
              "writes (they wait) rather than go on alone: an acknowledged write is always on two nodes",
}


def sync_settings(config) -> dict[str, bool]:
    """The DCS keys `database.ha_sync` sets (database.patroni.synchronous_mode: true still means on)."""
    mode = config.database.ha_sync
    if mode == "off" and config.database.patroni.synchronous_mode:
        mode = "on"
    return {"synchronous_mode": mode != "off", "synchronous_mode_strict": mode == "strict"}


def mode_of(dcs: dict) -> str:
    """`off`, `on` or `strict` from Patroni's DCS config."""
    if dcs.get("synchronous_mode_strict") and dcs.get("synchronous_mode"):
        return "strict"
    return "on" if dcs.get("synchronous_mode") else "off"
