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

MARK = "# ragops point-in-time restore (removed after the promotion)"
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


def prepare_recovery(directory: Path, wal_dir: Path, target, archive: bool = False,
                     server_version: str = "") -> None:
    """recovery.signal and the recovery settings (postgresql.auto.conf overrides postgresql.conf);
    archiving off: a restored copy must never write into the live environment's archive."""
    settings = {"restore_command": f"cp {wal_dir}/%f %p", "recovery_target_action": "promote",
                "recovery_target_timeline": "latest", "primary_conninfo": "", "primary_slot_name": ""}
    if _syncfs_supported(server_version):
        # The server makes the untarred files durable before it replays: one syncfs() per file system
        # instead of an fsync per file (measured on 88 MB, ~1,000 files, a busy shared disk: 0.2 s
        # instead of 5-7 s). Linux >= 5.8 reports write-back errors to syncfs as fsync does.
        settings["recovery_init_sync_method"] = "syncfs"
    if not archive:
        settings["archive_mode"] = "off"
    if target.time:
        moment = parse_iso(target.time)   # PostgreSQL's own format: no "T", no "Z"
        settings["recovery_target_time"] = moment.strftime("%Y-%m-%d %H:%M:%S.%f+00")
    elif target.lsn:
        settings["recovery_target_lsn"] = target.lsn
    lines = "".join(f"{key} = '{value}'\n" for key, value in settings.items())
    with open(directory / "postgresql.auto.conf", "a") as handle:
        handle.write(f"\n{MARK}\n" + lines)
    (directory / "recovery.signal").write_text("")
    _give_to_server_account(directory)


def _syncfs_supported(server_version: str) -> bool:
    """recovery_init_sync_method = syncfs: PostgreSQL 14 or later, on Linux 5.8 or later."""
    import platform
    import sys

    major = re.match(r"(\d+)", server_version or "")
    kernel = re.match(r"(\d+)\.(\d+)", platform.release())
    return (sys.platform.startswith("linux") and major is not None and int(major.group(1)) >= 14
            and kernel is not None and (int(kernel.group(1)), int(kernel.group(2))) >= (5, 8))


def _give_to_server_account(directory: Path) -> None:
    from ragops.pg.pgctl import server_user

    user = server_user()
    if user is None:
        return
    import pwd

    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.lchown(directory, entry.pw_uid, entry.pw_gid)


def replay(config, directory: Path, port: int | None, progress: Progress, name: str = "pitr-restore"):
    """Start the restored server on a loopback port; wait until it left recovery. Returns (node,
    commit time of the last replayed transaction)."""
    from ragops.netutil import free_port
    from ragops.pg import pgctl

    node = pgctl.Node(name, directory, port or free_port(), directory.parent / f"{directory.name}.log",
                      bin=config.database.bin_dir, home=pgctl.server_home(config))
    say(progress, f"replaying WAL on 127.0.0.1:{node.port} (log {node.log_file})")
    try:
        node.start(timeout=RECOVERY_TIMEOUT)
    except OperationFailed:
        raise OperationFailed(f"recovery failed: {_log_errors(node)} (log {node.log_file})") from None
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    # recovery.signal goes first; the server takes writes only once pg_control says "in production"
    # (set together with the end of recovery): a caller writing right after the first got "read-only"
    while (directory / "recovery.signal").exists() or not _in_production(node):
        if not node.running():
            raise OperationFailed(f"recovery failed: {_log_errors(node)} (log {node.log_file})")
        if time.monotonic() > deadline:
            raise OperationFailed(f"recovery did not finish within {RECOVERY_TIMEOUT:.0f}s (log {node.log_file})")
        time.sleep(0.05)
    import shutil

    shutil.rmtree(directory / "pg_ragops_restore", ignore_errors=True)
    _drop_recovery_settings(directory)
    return node, recovered_time(node.log_file.read_text(errors="replace"))


def _in_production(node) -> bool:
    from ragops.pg import pgctl

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


def _log_errors(node) -> str:
    """The server log's error lines (the first reason and the last word), else its last line."""
    try:
        lines = node.log_file.read_text(errors="replace").splitlines()
    except OSError:
        return node.last_log_line()
    errors = [ln.strip() for ln in lines if re.search(r"\b(FATAL|ERROR|PANIC):|invalid|syntax error", ln)]
    restored = [ln.strip() for ln in lines if "restored log file" in ln or "redo done at" in ln]
    if not errors:
        return node.last_log_line()
    text = errors[-1] if "recovery ended before" in errors[-1] else errors[0]
    return text + (f" (last: {restored[-1]})" if restored else "")
