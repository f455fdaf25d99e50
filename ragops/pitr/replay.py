"""The PostgreSQL side of a physical restore: untar the base backup, write the recovery settings,
start the server, wait until it promoted (or failed), read how far it got from its log."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ragops.backup.catalog import iso, parse_iso
from ragops.backup.pipeline import CommandSink, Meter, Progress, say
from ragops.errors import OperationFailed
from ragops.pg import pgctl

MARK = "# ragops point-in-time restore (removed after the promotion)"
COPY_MARK = "# ragops restored copy: never archives (kept after the promotion)"
RECOVERY_TIMEOUT = float(os.environ.get("RAGOPS_PITR_RECOVERY_TIMEOUT", "600"))


def extract_base(config, storage, base, compressor, crypter, directory: Path) -> None:
    """storage -> age -> zstd -> tar -x into a new directory ragops creates (0700, then given to the
    server account: everything in it was written by ragops)."""
    from ragops.backup import pipeline
    from ragops.pg.pgctl import prepare_dir

    prepare_dir(directory)
    os.chmod(directory, 0o700)
    sink = CommandSink("tar", ["tar", "-x", "-f", "-", "-C", str(directory), "--no-same-owner"], dict(os.environ))
    meter = Meter(progress=None, verb="restored", total=base.stored_bytes)
    pipeline.restore(storage.read_chunks(base.object_key), crypter, compressor, sink,
                     storage.describe(base.object_key), meter)
    for name in ("standby.signal", "postmaster.pid", "postmaster.opts"):
        (directory / name).unlink(missing_ok=True)


def lay_down(config, storage, plan, directory: Path, *, archive: bool, progress: Progress) -> None:
    """The plan's base (or chain) extracted into a new directory, with its recovery settings."""
    from ragops.backup.catalog import stages_of
    from ragops.pitr.incremental import apply_links

    for link in plan.chain:
        say(progress, f"restoring base backup {link.id} into {directory}"
                      + (" (incremental)" if link is not plan.chain[0] else ""))
        compressor, crypter = stages_of(config, link)
        extract_base(config, storage, link, compressor, crypter, directory)
    if len(plan.chain) > 1:
        removed = apply_links(directory, plan.base)
        say(progress, f"applied {len(plan.chain) - 1} incremental backup(s); {removed} file(s) dropped since the full one")
    prepare_recovery(directory, plan, archive=archive, server_version=plan.base.server_version)


def prepare_recovery(directory: Path, plan, archive: bool = False, server_version: str = "") -> None:
    """recovery.signal and the recovery settings (postgresql.auto.conf overrides postgresql.conf): replay
    to the plan's stop point on its timeline and pause there (ragops checks, then promotes). A copy
    (not `archive`) gets archiving off in a block that stays after the promotion: started again by
    hand later, it must never write into the live environment's archive."""
    settings = {"restore_command": f"cp {plan.wal_dir}/%f %p", "recovery_target_action": "pause",
                "recovery_target_timeline": str(plan.timeline), "hot_standby": "on",
                "primary_conninfo": "", "primary_slot_name": ""}
    if _syncfs_supported(server_version):
        # The server makes the untarred files durable before it replays: one syncfs() per file system
        # instead of an fsync per file (measured on 88 MB, ~1,000 files, a busy shared disk: 0.2 s
        # instead of 5-7 s). Linux >= 5.8 reports write-back errors to syncfs as fsync does.
        settings["recovery_init_sync_method"] = "syncfs"
    if plan.stop_lsn:
        settings["recovery_target_lsn"] = plan.stop_lsn
    else:
        settings["recovery_target"] = "immediate"
    lines = "".join(f"{key} = '{value}'\n" for key, value in settings.items())
    with open(directory / "postgresql.auto.conf", "a") as handle:
        if not archive:
            handle.write(f"\n{COPY_MARK}\narchive_mode = 'off'\narchive_command = ''\n")
        handle.write(f"\n{MARK}\n" + lines)
    (directory / "recovery.signal").write_text("")
    pgctl.give_to_server_account(directory)


def _syncfs_supported(server_version: str) -> bool:
    """recovery_init_sync_method = syncfs: PostgreSQL 14 or later, on Linux 5.8 or later."""
    import platform
    import sys

    major = re.match(r"(\d+)", server_version or "")
    kernel = re.match(r"(\d+)\.(\d+)", platform.release())
    return (sys.platform.startswith("linux") and major is not None and int(major.group(1)) >= 14
            and kernel is not None and (int(kernel.group(1)), int(kernel.group(2))) >= (5, 8))


def replay(config, directory: Path, port: int | None, progress: Progress, name: str = "pitr-restore", plan=None):
    """Start the restored server on a loopback port; wait until it paused at the plan's stop point, check
    the LSN it reached, promote, wait until it left recovery. Returns (node, commit time of the last
    replayed transaction)."""
    from ragops.netutil import free_port
    node = pgctl.Node(name, directory, port or free_port(), directory.parent / f"{directory.name}.log",
                      bin=config.database.bin_dir, home=pgctl.server_home(config))
    offset = node.log_file.stat().st_size if node.log_file.exists() else 0   # earlier runs' lines are not ours
    say(progress, f"replaying WAL on 127.0.0.1:{node.port} (log {node.log_file})")
    try:
        node.start(timeout=RECOVERY_TIMEOUT)
    except OperationFailed:
        raise OperationFailed(f"recovery failed: {_log_errors(node, offset)} (log {node.log_file})") from None
    reached = _wait_paused(config, node, offset)
    _check_reached(plan, reached)
    say(progress, f"replay paused at {reached} (planned stop {plan.stop_lsn or plan.base.physical['stop_lsn']}); promoting")
    _sql(config, node, "SELECT pg_promote(true, 60)")
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    # recovery.signal goes first; the server takes writes only once pg_control says "in production"
    # (set together with the end of recovery): a caller writing right after the first got "read-only"
    while (directory / "recovery.signal").exists() or not _in_production(node):
        if not node.running():
            raise OperationFailed(f"recovery failed: {_log_errors(node, offset)} (log {node.log_file})")
        if time.monotonic() > deadline:
            raise OperationFailed(f"recovery did not finish within {RECOVERY_TIMEOUT:.0f}s (log {node.log_file})")
        time.sleep(0.05)
    _drop_recovery_settings(directory)
    return node, recovered_time(_log_text(node, offset)) or plan.last_commit_time


def restored_credentials(config) -> dict:
    """Who can log in to a restored copy: the source's superuser. Only the credentials: resolving the live
    primary's address (source_params) fails on docker once that node was fenced or stopped by a promotion,
    and the copy listens on this machine's loopback anyway."""
    if config.database.dsn:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(config.reveal(config.database.dsn, "database.dsn"))
        return {k: params[k] for k in ("user", "password") if k in params}
    from ragops.db.connect import db_password

    return {"user": config.database.superuser, "password": db_password(config)}


def _sql(config, node, statement: str):
    from ragops.backup.pg import connect

    conn = connect({**restored_credentials(config), "dbname": "postgres", "host": "127.0.0.1", "port": node.port,
                    "connect_timeout": 5})
    try:
        return conn.execute(statement).fetchone()
    finally:
        conn.close()


def _wait_paused(config, node, offset: int) -> str:
    """The LSN replay reached once it paused at the target (the server exits if it cannot reach it)."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    last_error = None
    while time.monotonic() < deadline:
        if not node.running():
            raise OperationFailed(f"recovery failed: {_log_errors(node, offset)} (log {node.log_file})")
        try:
            state, lsn = _sql(config, node, "SELECT pg_get_wal_replay_pause_state(), pg_last_wal_replay_lsn()::text")
        except Exception as exc:  # noqa: BLE001 - not yet accepting connections; said if it never does
            state, lsn, last_error = None, None, exc
        if state == "paused":
            return lsn
        time.sleep(0.1)
    why = f"; the last check could not ask it: {str(last_error).strip().splitlines()[0]}" if last_error else ""
    raise OperationFailed(f"recovery did not reach its stop point within {RECOVERY_TIMEOUT:.0f}s{why} (log {node.log_file})")


def _check_reached(plan, reached: str) -> None:
    """Replay must have applied the plan's stop record (its LSN is the record's start: replay ends past it)."""
    from ragops.pitr.wal import SEGMENT_SIZE, parse_lsn, segment_name

    wanted = parse_lsn(plan.stop_lsn) + 1 if plan.stop_lsn else parse_lsn(plan.base.physical["stop_lsn"])
    if parse_lsn(reached) < wanted:
        segment = segment_name(plan.timeline, parse_lsn(reached) // SEGMENT_SIZE)
        raise OperationFailed(f"replay stopped at {reached}, before the planned {plan.stop_lsn}: in or after WAL segment "
                              f"{segment}; nothing was promoted")


def _in_production(node) -> bool:
    done = pgctl.run_pg([node.pg("pg_controldata"), "-D", str(node.data_dir)], check=False, timeout=30)
    return "in production" in done.stdout


def _drop_recovery_settings(directory: Path) -> None:
    """Once promoted, the recovery settings leave postgresql.auto.conf: a replica cloned from this
    server (pg_basebackup copies the file) must never replay to the old target and promote itself."""
    from ragops.pg.pgctl import write_server_file

    auto = directory / "postgresql.auto.conf"
    text = auto.read_text()
    if MARK in text:
        write_server_file(auto, text.split("\n" + MARK, 1)[0].rstrip("\n") + "\n")


def recovered_time(log_text: str) -> str | None:
    """The commit time of the last replayed transaction, from PostgreSQL's log."""
    found = re.findall(r"last completed transaction was at log time ([0-9-]+ [0-9:.]+[+-][0-9]+)", log_text)
    if not found:
        return None
    text = found[-1].replace(" ", "T", 1)
    if re.search(r"[+-]\d\d$", text):
        text += ":00"
    return iso(parse_iso(text))


def _log_text(node, offset: int) -> str:
    try:
        with open(node.log_file, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def _log_errors(node, offset: int = 0) -> str:
    """This run's server log error lines (the first reason and the last word), else its last line."""
    lines = _log_text(node, offset).splitlines()
    if not lines:
        return node.last_log_line()
    errors = [ln.strip() for ln in lines if re.search(r"\b(FATAL|ERROR|PANIC):|invalid|syntax error", ln)]
    restored = [ln.strip() for ln in lines if "restored log file" in ln or "redo done at" in ln]
    if not errors:
        return node.last_log_line()
    text = errors[-1] if "recovery ended before" in errors[-1] else errors[0]
    return text + (f" (last: {restored[-1]})" if restored else "")
