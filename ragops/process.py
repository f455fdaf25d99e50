"""Background processes owned by ragops: start detached, remember by pid file, stop by process group.

A pid file alone is not trusted: the recorded command-line marker must match /proc/<pid>/cmdline,
so a recycled pid is never signalled. Each process leads its own session and process group
(start_new_session), and stop() signals the whole group, so children of a process (and children a
killed process left behind) are stopped with it: nothing ragops started outlives its pid file.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ragops.fsutil import write_atomic
from ragops.private_fs import FILE_MODE, private_dirs

if TYPE_CHECKING:
    from ragops.config import Config


@dataclass
class ManagedProcess:
    name: str
    run_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def _record(self) -> dict | None:
        try:
            return json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None

    def pid(self) -> int | None:
        record = self._record()
        if not record:
            return None
        pid = record.get("pid")
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        if record.get("marker") and record["marker"] not in cmdline:
            return None  # the pid was recycled by another program
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().split(")")[-1].split()[0] == "Z":
                    return None  # exited, waiting to be reaped
        except OSError:
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
              marker: str | None = None) -> int:
        """Start detached (own session, survives ragops exiting); output appended to the log.
        A previous process under this name (or what is left of its group) is stopped first, so a
        restart never leaves an untracked one behind."""
        self.stop(timeout=10)
        private_dirs(self.run_dir)   # the state directory too, when this creates it
        private_dirs(self.log_dir)
        log = open_log(self.log_file)
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        finally:
            log.close()
        # the kernel shows an empty command line for a moment around exec, and pid() recognises the
        # process by its marker in it: wait until it is visible (a fast caller saw "not running")
        deadline = time.monotonic() + 2
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                    break
            except OSError:
                break
            time.sleep(0.002)
        # its own session: the process group id is its pid (stop() signals the whole group)
        record = {"pid": proc.pid, "pgid": proc.pid, "marker": marker or args[-1], "started": time.time(),
                  "args": args[:6]}
        write_atomic(self.pid_file, json.dumps(record), mode=FILE_MODE)
        return proc.pid

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> bool:
        """SIGTERM to the process group, wait up to `timeout`, then SIGKILL. Returns True if it had to kill.
        When the leader is already gone, the rest of its group (children of a killed parent) is killed."""
        record = self._record() or {}
        pid = self.pid()
        pgid = record.get("pgid")
        if pid is None:
            if pgid and not Path(f"/proc/{pgid}").exists():
                # the leader is gone, so no new group can have taken its id: what is left is ours
                _signal_group(int(pgid), signal.SIGKILL)
            self.pid_file.unlink(missing_ok=True)
            return False
        group = int(pgid) if pgid else None
        killed = False
        try:
            _signal(pid, group, sig)
            if not self._wait_gone(pid, group, timeout):
                _signal(pid, group, signal.SIGKILL)
                killed = True
                self._wait_gone(pid, group, 5)
        except ProcessLookupError:
            pass
        self.pid_file.unlink(missing_ok=True)
        return killed

    def _wait_gone(self, pid: int, group: int | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            if self.pid() is None and not (group and group_members(group)):
                _reap(pid)
                return True
            time.sleep(0.05)
        return False


def ensure_ragops_process(proc: ManagedProcess, module: str, config: Config, say: Callable[[str], object],
                          message: str) -> bool:
    """Start a long-lived ragops process, `python -m <module> CONFIG ENV` (the supervisor, the WAL
    shipper), unless it runs; `message` is said first. True when it was started. The marker (module and
    config path) is how it is found again by its command line."""
    if proc.running():
        return False
    config_path = str(Path(config.path).resolve())
    say(message)
    proc.start([sys.executable, "-m", module, config_path, config.env_name], marker=f"{module} {config_path}")
    return True


def _signal(pid: int, group: int | None, sig: int) -> None:
    if group:
        _signal_group(group, sig)
    else:
        os.kill(pid, sig)


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def open_log(path: Path) -> BinaryIO:
    """Open a log for appending, never through a symbolic link: in a directory another account could
    once change (an older ragops gave the logs directory to the PostgreSQL account as root), a planted
    link must not redirect root's writes."""
    directory = path.parent
    st = directory.stat()
    if os.geteuid() == 0 and st.st_uid != 0:
        os.chown(directory, 0, 0)   # ours again: only root may add or replace entries   # ours again: only we may add or replace entries
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            from ragops.errors import OperationFailed

            raise OperationFailed(f"refusing to write log {path}: it is a symbolic link",
                                  hint=f"remove it (rm {path}) and run the command again") from None
        raise
    return os.fdopen(fd, "ab")


def _reap(pid: int) -> None:
    """Reap our own child if it exited (when ragops started it in this same process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def open_for_reading(path: Path) -> BinaryIO:
    """A log opened for reading in binary, never through a symbolic link (a log directory of the server
    account may hold one pointing at a file only root should read)."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")


def tail(path: Path, lines: int = 50) -> str:
    if lines <= 0:
        return ""
    try:
        with open_for_reading(path) as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
