"""Turning the WAL archive on for a platform that owns the database (local): the primary's archive
settings (ragops.pg.pgctl.archive_settings; under Patroni its node config carries them) and the
shipper process, at `up`; a last drain at `down`.
"""
from __future__ import annotations

from collections.abc import Callable

from ragops.events import Say as Progress
from ragops.events import quiet as _noop

SHIPPER = "wal-shipper"


def configure_primary(config, node, progress: Progress = _noop) -> list[str]:
    """ALTER SYSTEM the archive settings on `node` (a running managed primary); restart it when
    archive_mode changed (it needs a restart), reload otherwise. Idempotent."""
    from ragops.db.connect import connect, node_dsn
    from ragops.pg import pgctl
    from ragops.pitr.wal import spool_dir

    spool = spool_dir(config)
    pgctl.prepare_dir(spool)
    wanted = pgctl.archive_settings(spool, config.backups.wal.archive_timeout)
    with connect(node_dsn(config, node.name, dbname="postgres")) as conn:
        current = {name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0] for name in wanted}
        streaming = _streaming(conn)
        changed = [name for name, value in wanted.items() if _normal(name, current[name]) != _normal(name, value)]
        for name in changed:
            conn.execute(f"ALTER SYSTEM SET {name} = {_literal(wanted[name])}")
        if changed and "archive_mode" not in changed:
            conn.execute("SELECT pg_reload_conf()")
    if "archive_mode" in changed:
        progress(f"turning on the WAL archive on {node.name} (a restart: archive_mode)")
        node.stop()
        node.start()
        # the replicas reconnect on their own within wal_retrieve_retry_interval (5 s): `up` returns
        # with them streaming again, as it promises, not with a replica silently behind
        def caught_up() -> bool:
            try:
                with connect(node_dsn(config, node.name, dbname="postgres")) as conn:
                    return _streaming(conn) >= streaming
            except Exception:  # noqa: BLE001 - still starting
                return False

        if streaming and not pgctl.wait_until(caught_up, 20):
            progress(f"warning: not every replica streams from {node.name} again yet (see `ragops db status`)")
    return [f"archive WAL of {node.name} into {spool}"] if changed else []


def _streaming(conn) -> int:
    return int(conn.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()[0])


def _normal(name: str, value: str) -> str:
    if name == "archive_timeout":
        from ragops.durations import parse_duration

        text = value.strip()
        try:
            return str(int(parse_duration(text if not text.isdigit() else text + "s")))
        except (ValueError, TypeError):
            return text
    return value.strip()


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ensure_shipper(platform, progress: Progress = _noop) -> list[str]:
    from ragops.process import ensure_ragops_process

    started = ensure_ragops_process(platform.proc(SHIPPER), "ragops.pitr.wal", platform.config, progress,
                                    "starting the WAL shipper (spool -> zstd -> age -> backup storage)")
    return ["start wal-shipper"] if started else []


def dead_shipper(platform) -> list[tuple[str, Callable[[], object]]]:
    """For the supervisor: [(name, restart)] when the shipper was started (its pid file is there: `up`
    or `db recover` started it, `down` removes it) and is no longer running (killed, crashed)."""
    proc = platform.proc(SHIPPER)
    if not proc.pid_file.exists() or proc.running():
        return []
    return [(SHIPPER, lambda: ensure_shipper(platform))]


def start_archive(platform, progress: Progress = _noop) -> list[str]:
    """At `up`: archive settings on the live primary, then the shipper."""
    config = platform.config
    if not config.backups.wal.enabled or config.database.dsn:
        return []
    if config.database.ha != "manual":   # Patroni's config carries the archive settings (ragops/ha/patroni.py)
        return ensure_shipper(platform, progress)
    from ragops.db.bringup import live_primary
    from ragops.pg.pgctl import managed_node

    node = live_primary(config) or managed_node(config, config.database.primary.name)
    steps = configure_primary(config, node, progress)
    return steps + ensure_shipper(platform, progress)


def stop_archive(platform, progress: Progress = _noop) -> list[str]:
    """At `down` (after the database stopped): ship what is left in the spool, then stop the shipper."""
    proc = platform.proc(SHIPPER)
    was_running = proc.running()
    proc.stop(timeout=10)
    if not was_running:
        return []
    from ragops.errors import RagopsError
    from ragops.pitr.wal import Shipper

    try:
        result = Shipper(platform.config).ship_once()
    except RagopsError as exc:   # down goes on; the spool keeps the segments for the next shipper
        progress(f"the WAL spool was not drained: {exc.message}")
        return ["stop wal-shipper"]
    for name, error in result.failed.items():
        progress(f"WAL segment {name} stays in the spool: {error}")
    return ["stop wal-shipper"]
