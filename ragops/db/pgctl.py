"""PostgreSQL server processes on this machine: find the binaries, initdb, start, stop, clone.

PostgreSQL refuses to run as root. When ragops runs as root (CI, these machines) the servers run
as an unprivileged system user that owns the data directories; a normal account needs none of it.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ragops.errors import OperationFailed, ConfigError

PG_SYSTEM_USER = "ragops-pg"

# settings every managed node gets; the port is given on the command line so a clone can differ
BASE_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "hot_standby": "on",
    "wal_log_hints": "on",            # pg_rewind needs it (we also initdb with checksums)
    "wal_keep_size": "256MB",
    "wal_sender_timeout": "10s",
    "wal_receiver_status_interval": "1s",
    "hot_standby_feedback": "on",
    "logging_collector": "off",
    "shared_buffers": "64MB",
    "max_connections": "100",
}


def bin_dir(configured: str | None = None) -> Path:
    """The directory holding initdb/pg_ctl/pg_dump: configured, else the pgserver wheel's."""
    if configured:
        path = Path(configured).expanduser()
        if not (path / "pg_ctl").exists():
            raise ConfigError(f"database.bin_dir: no pg_ctl in {path}")
        return path
    import importlib.util

    # locate the wheel without importing it: only its binaries are used, and its import is noisy
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.origin:
        raise ConfigError("database.bin_dir: not set and the pgserver package is not installed")
    path = Path(spec.origin).parent / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise ConfigError(f"database.bin_dir: the pgserver wheel has no pg_ctl in {path}")
    return path


def tool(name: str, configured_bin_dir: str | None = None) -> str:
    return str(bin_dir(configured_bin_dir) / name)


def _running_as_root() -> bool:
    return os.geteuid() == 0


def server_user() -> str | None:
    """The account the server runs as: None (ourselves) unless we are root."""
    if not _running_as_root():
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        PG_SYSTEM_USER], check=True, capture_output=True)
    return PG_SYSTEM_USER


def prepare_dir(path: Path) -> None:
    """Create a directory the server account owns, and make sure it can reach it."""
    path.mkdir(parents=True, exist_ok=True)
    user = server_user()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    # the server account must traverse every parent; add only the search bit where missing
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


def run_pg(args: list[str], *, env: dict | None = None, check: bool = True, timeout: float = 300,
           input: str | None = None) -> subprocess.CompletedProcess:
    """Run a PostgreSQL binary as the server account; raise OperationFailed with its stderr."""
    full_env = {**os.environ, **(env or {})}
    user = server_user()
    try:
        # the server account's own group too: with gid 0 kept, a root-owned 0701 parent denies traversal
        group = pwd.getpwnam(user).pw_gid if user else None
        proc = subprocess.run(args, env=full_env, user=user, group=group, extra_groups=[] if user else None,
                              capture_output=True, text=True, timeout=timeout, input=input, cwd="/")
    except subprocess.TimeoutExpired:
        raise OperationFailed(f"{Path(args[0]).name} did not finish within {timeout:.0f}s") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise OperationFailed(f"{Path(args[0]).name} failed: {detail[-1] if detail else 'exit ' + str(proc.returncode)}")
    return proc


@dataclass
class Node:
    """One managed server: its data directory, port and log."""
    name: str
    data_dir: Path
    port: int
    log_file: Path
    bin: str | None = None   # configured bin_dir

    def pg(self, name: str) -> str:
        return tool(name, self.bin)

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    @property
    def is_replica(self) -> bool:
        return (self.data_dir / "standby.signal").exists()

    def pid(self) -> int | None:
        """The postmaster's pid if it is alive (from postmaster.pid)."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 60) -> None:
        if self.running():
            return
        prepare_dir(self.log_file.parent)
        if not self.log_file.exists():
            self.log_file.touch()
        user = server_user()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        run_pg([self.pg("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                "-o", f"-c port={self.port}", "-w", "-t", str(int(timeout)), "start"], timeout=timeout + 10)

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        if not self.running():
            return
        run_pg([self.pg("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(int(timeout)), "stop"],
               timeout=timeout + 10)

    def kill9(self) -> None:
        pid = self.pid()
        if pid:
            os.kill(pid, 9)

    def init_primary(self, superuser: str, password: str) -> None:
        """initdb with checksums and password auth on loopback, plus replication settings."""
        prepare_dir(self.data_dir)
        pwfile = self.data_dir.parent / f".{self.name}.pw"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        user = server_user()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        try:
            run_pg([self.pg("initdb"), "-D", str(self.data_dir), "-U", superuser, "--pwfile", str(pwfile),
                    "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--data-checksums",
                    "-E", "UTF8", "--locale=C"])
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as handle:
            handle.write("\n# managed by ragops\n")
            for key, value in BASE_SETTINGS.items():
                handle.write(f"{key} = {value}\n")
        hba = self.data_dir / "pg_hba.conf"
        with hba.open("a") as handle:
            handle.write("host replication all 127.0.0.1/32 scram-sha-256\n")

    def clone_from(self, primary: "Node", superuser: str, password: str, slot: str) -> None:
        """pg_basebackup -R: a streaming replica of `primary` with its own replication slot."""
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        prepare_dir(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        run_pg([self.pg("pg_basebackup"), "-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(primary.port),
                "-U", superuser, "-R", "-X", "stream", "-C", "-S", slot, "--checkpoint=fast", "-w"],
               env={"PGPASSWORD": password}, timeout=600)


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def managed_node(config, name: str) -> Node:
    """The local platform's server for a configured node: <state_dir>/db/<name>, its log in
    <state_dir>/logs/db-<name>.log."""
    from ragops.db.connect import find_node

    node = find_node(config, name)
    state = config.state_dir
    return Node(name=node.name, data_dir=state / "db" / node.name, port=node.port,
                log_file=state / "logs" / f"db-{node.name}.log", bin=config.database.bin_dir)


def managed_nodes(config) -> list[Node]:
    from ragops.db.connect import all_nodes

    return [managed_node(config, n.name) for n in all_nodes(config)]
