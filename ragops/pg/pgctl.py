"""PostgreSQL server processes on this machine: find the binaries, initdb, start, stop, clone.

PostgreSQL refuses to run as root. When ragops runs as root (CI, these machines) the servers run
as an unprivileged system user that owns the data directories; a normal account needs none of it.
"""
from __future__ import annotations

import errno
import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragops.errors import ConfigError, OperationFailed
from ragops.private_fs import private_dirs
from ragops.waiting import wait_until  # noqa: F401 - re-exported: pgctl.wait_until is what callers and tests use

if TYPE_CHECKING:
    from ragops.config import Config

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


def archive_settings(spool: Path, timeout_seconds: float) -> dict[str, str]:
    """The primary's WAL archive settings (postgresql.conf syntax): every finished segment is copied
    into `spool` by coreutils alone (no interpreter per segment), fsynced, then renamed into place;
    ragops's shipper takes it from there. Also used by Patroni-managed nodes (its `parameters`)."""
    target = str(spool).replace("'", "")
    command = (f"cp %p {target}/.%f.tmp && sync {target}/.%f.tmp && mv -f {target}/.%f.tmp {target}/%f")
    return {"archive_mode": "on", "archive_command": command,
            "archive_timeout": str(max(1, int(timeout_seconds)))}


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


def give_to_server_account(directory: Path) -> None:
    """Hand a tree ragops just wrote (a restored base, staged WAL) to the server account; as root only."""
    user = server_user()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.lchown(directory, entry.pw_uid, entry.pw_gid)


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


# ---- running as root: what the server account may reach ----------------------------------------
# As root, the server account gets a home of its own under SERVER_ROOT (root-owned, 0755, created by
# ragops): a copy of the binaries when the installed ones are out of its reach (a venv under a 0700
# home), the data directories and the server logs. The home is recorded in <state_dir>/SERVER_HOME_FILE
# so that `down --purge` removes it. ragops never changes the mode of a directory it did not create.
SERVER_ROOT = Path("/var/lib/ragops")
SERVER_HOME_FILE = "server-home"


_REACHABLE: dict[tuple[Path, Path], Path] = {}


def _reachable_cached(source: Path, home: Path) -> Path:
    key = (source, home)
    if key not in _REACHABLE:
        _REACHABLE[key] = reachable_bin_dir(source, home)
    return _REACHABLE[key]


def server_account() -> pwd.struct_passwd | None:
    user = server_user()
    return pwd.getpwnam(user) if user else None


def blocked_dir(path: Path, entry: pwd.struct_passwd) -> Path | None:
    """The first existing directory on the way to `path` the account cannot search, or None."""
    candidates = [path.absolute(), path.resolve()]
    for target in candidates:
        for directory in [*reversed(target.parents), target]:
            try:
                st = directory.stat()
            except FileNotFoundError:
                break   # created later by ragops, with a mode it chooses
            if not (st.st_mode & 0o040000):
                break
            if st.st_uid == entry.pw_uid:
                bit = 0o100
            elif st.st_gid == entry.pw_gid:
                bit = 0o010
            else:
                bit = 0o001
            if not st.st_mode & bit:
                return directory
    return None


def _check_reachable(path: Path, entry: pwd.struct_passwd) -> None:
    blocked = blocked_dir(path, entry)
    if blocked is not None:
        mode = oct(blocked.stat().st_mode & 0o7777)
        raise OperationFailed(f"the PostgreSQL account {entry.pw_name} cannot reach {path}: "
                              f"{blocked} is mode {mode[2:]}",
                              hint="keep the server's directories out of private homes (ragops leaves modes it "
                                   "did not set alone)")


def make_dirs(path: Path, mode: int = 0o755) -> None:
    """mkdir -p, giving `mode` only to the directories created here."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=mode)
        except FileExistsError:
            continue
        os.chmod(directory, mode)   # our own directory: the umask must not narrow it


def prepare_dir(path: Path) -> None:
    """Create a directory the server account owns; as root, stop first if the account could not
    reach it (a 0700 parent), without touching the modes of directories ragops did not create."""
    entry = server_account()
    if entry is None:
        private_dirs(path)   # the state directory too, when this creates it
        return
    _check_reachable(path, entry)
    make_dirs(path)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def server_home(config: Config, create: bool = False) -> Path | None:
    """As root: the server account's home for this environment, /var/lib/ragops/<project>/<env>-<hash of
    the state dir> (recorded in the state dir). None when ragops runs as a normal account."""
    if not _running_as_root():
        return None
    record = config.state_dir / SERVER_HOME_FILE
    try:
        return Path(record.read_text().strip())
    except OSError:
        pass
    digest = hashlib.sha256(str(config.state_dir.resolve()).encode()).hexdigest()[:10]
    home = SERVER_ROOT / config.project / f"{config.env_name}-{digest}"
    if create:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(f"{home}\n")
    return home


def remove_server_home(config: Config) -> Path | None:
    """`down --purge`: delete the environment's server home and the empty parents ragops made."""
    home = server_home(config)
    if home is None or not home.exists():
        return None
    shutil.rmtree(home)
    for parent in (home.parent, SERVER_ROOT):
        try:
            parent.rmdir()   # only when empty: other environments keep theirs
        except OSError:
            break
    return home


def _tree_stamp(root: Path) -> str:
    """A cheap content key for an installation: every file's path, size and mtime."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            digest.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def reachable_bin_dir(source: Path, home: Path) -> Path:
    """`source` if the server account can run it, else a copy of its installation under `home`
    (root-owned, 0755; refreshed when the installation changes)."""
    entry = server_account()
    if entry is None or blocked_dir(source / "pg_ctl", entry) is None:
        return source
    install = source.parent                                   # pginstall/{bin,lib,share}
    libs = install.parent.parent / f"{install.parent.name}.libs"   # a wheel's bundled libraries
    target = home / "pginstall"
    stamp = _tree_stamp(install) + (_tree_stamp(libs) if libs.is_dir() else "")
    stamp_file = target / ".stamp"
    bin_copy = target / install.parent.name / install.name / source.name
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return bin_copy
    _check_reachable(home, entry)
    make_dirs(home)
    tmp = home / f".pginstall-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(install, tmp / install.parent.name / install.name, symlinks=True,
                    ignore=shutil.ignore_patterns("include"))
    if libs.is_dir():
        shutil.copytree(libs, tmp / libs.name, symlinks=True)
    (tmp / ".stamp").write_text(stamp)
    open_tree(tmp)
    shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:   # another ragops of this environment put its copy there first
        shutil.rmtree(tmp, ignore_errors=True)
    return bin_copy


def open_tree(root: Path) -> None:
    """Our own copy: directories 0755, files readable (and executable where they were) by all."""
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                mode = path.stat().st_mode
                os.chmod(path, 0o755 if mode & 0o100 else 0o644)


def write_server_file(path: Path, text: str, append: bool = False) -> None:
    """Write a file inside a directory the server account owns, never through a symlink it planted;
    a created file is given to the account."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OperationFailed(f"refusing to write {path}: it is a symbolic link") from None
        raise
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        entry = server_account()
        if entry is not None:
            os.fchown(handle.fileno(), entry.pw_uid, entry.pw_gid)


def run_pg(args: list[str], *, env: dict[str, str] | None = None, check: bool = True, timeout: float = 300,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
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
    home: Path | None = None  # as root: the server account's home (binaries copied there when needed)

    def pg(self, name: str) -> str:
        source = bin_dir(self.bin)
        entry = server_account()
        if entry is not None:
            if self.home is not None:
                source = _reachable_cached(source, self.home)
            else:
                _check_reachable(source / name, entry)
        return str(source / name)

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

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
        parent = self.log_file.parent
        if parent.exists():    # maybe the user's (a restore's --target-dir beside it): never re-owned
            entry = server_account()
            if entry is not None:
                _check_reachable(parent, entry)
        else:
            prepare_dir(parent)
        write_server_file(self.log_file, "", append=True)   # the log file itself is ours, given to the account
        try:
            run_pg([self.pg("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                    "-o", f"-c port={self.port}", "-w", "-t", str(int(timeout)), "start"], timeout=timeout + 10)
        except OperationFailed as exc:
            raise OperationFailed(f"could not start database node {self.name} (port {self.port}): {exc}; "
                                  f"log {self.log_file}: {self.last_log_line()}") from None

    def last_log_line(self) -> str:
        """The server log's last non-empty line (why a start failed: port in use, permissions, ...)."""
        from ragops.process import tail

        lines = [line for line in tail(self.log_file, 20).splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(empty)"

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        if not self.running():
            return
        try:
            run_pg([self.pg("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(int(timeout)), "stop"],
                   timeout=timeout + 10)
        except OperationFailed as exc:
            raise OperationFailed(f"could not stop database node {self.name}: {exc}; "
                                  f"log {self.log_file}: {self.last_log_line()}") from None

    def kill9(self) -> None:
        pid = self.pid()
        if pid:
            os.kill(pid, 9)

    def init_primary(self, superuser: str, password: str, extra: dict[str, str] | None = None) -> None:
        """initdb with checksums and password auth on loopback, plus replication settings and `extra`
        (plain values, quoted here)."""
        prepare_dir(self.data_dir)
        pwfile = self.data_dir.parent / f".{self.name}.pw"
        pwfile.unlink(missing_ok=True)
        write_server_file(pwfile, password + "\n")
        try:
            run_pg([self.pg("initdb"), "-D", str(self.data_dir), "-U", superuser, "--pwfile", str(pwfile),
                    "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--data-checksums",
                    "-E", "UTF8", "--locale=C"])
        finally:
            pwfile.unlink(missing_ok=True)
        settings = "".join(f"{key} = {value}\n" for key, value in BASE_SETTINGS.items())
        settings += "".join(f"{key} = '{value.replace(chr(39), chr(39) * 2)}'\n" for key, value in (extra or {}).items())
        write_server_file(self.data_dir / "postgresql.conf", "\n# managed by ragops\n" + settings, append=True)
        write_server_file(self.data_dir / "pg_hba.conf", "host replication all 127.0.0.1/32 scram-sha-256\n",
                          append=True)

    def clone_from(self, primary: Node, superuser: str, password: str, slot: str) -> None:
        """pg_basebackup -R: a streaming replica of `primary` with its own replication slot."""
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        prepare_dir(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        run_pg([self.pg("pg_basebackup"), "-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(primary.port),
                "-U", superuser, "-R", "-X", "stream", "-C", "-S", slot, "--checkpoint=fast", "-w"],
               env={"PGPASSWORD": password}, timeout=600)


def managed_node(config: Config, name: str) -> Node:
    """The local platform's server for a configured node: <state_dir>/db/<name>, its log in
    <state_dir>/logs/db-<name>.log; as root, the same under the server account's home (see server_home)."""
    from ragops.pg.nodes import find_node

    node = find_node(config, name)
    state = config.state_dir
    home = server_home(config)
    base = state if home is None else home
    data_dir = base / "db" / node.name
    if home is not None and (state / "db" / node.name / "PG_VERSION").exists():
        data_dir = state / "db" / node.name   # created by an older ragops: keep the data where it is
    return Node(name=node.name, data_dir=data_dir, port=node.port, log_file=base / "logs" / f"db-{node.name}.log",
                bin=config.database.bin_dir, home=home)


def managed_nodes(config: Config) -> list[Node]:
    from ragops.pg.nodes import all_nodes

    return [managed_node(config, n.name) for n in all_nodes(config)]
