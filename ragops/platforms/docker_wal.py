"""The WAL archive of the docker platform's database containers (ragops/pitr on docker).

When the platform owns the database (database containers, no `database.dsn`) and
`backups.wal.enabled`, every database node's container gets the primary's archive settings as
`-c` options (ragops.pg.pgctl.archive_settings: cp + sync + mv, no interpreter per segment) and
the spool bind-mounted at SPOOL_MOUNT:

  <host dir>/wal-spool   (state_dir/docker/<instance>/wal-spool on this machine)

A replica has them too: archive_mode=on archives nothing on a standby, and a promoted replica
(`db promote`, failover) archives its new timeline into the same spool without a restart. On a
local engine the spool is a directory on this machine, so the local platform's shipper
(ragops.pitr.wal, a background process under state_dir/run) ships it unchanged; `down` drains it
and stops it.

Ownership: the container's server account (the image's USER, uid 10002) writes the segments.
  - ragops as root: the spool is created by ragops and handed to that uid (0700), as the local
    platform hands its spool to the server account; the shipper only reads (O_NOFOLLOW) and unlinks.
  - ragops as a normal user (docker group): the spool stays the user's (2770, setgid), the
    containers join the user's group (group_add) and archive_command makes each segment group
    readable before the rename, so the user reads and removes it. Nothing is world-writable.
On an ssh:// host the spool is on that host (<docker.remote_dir>/<instance>/wal-spool; the same
ownership rules with the ssh account in place of this one), and the shipper on this machine reads
and removes the segments through SFTP on its own verified ssh connection (SftpSpool, the
Platform.wal_spool seam), reconnecting after an error. backups.wal.spool_dir (a path on this
machine) is refused there.
"""
from __future__ import annotations

import os
import posixpath
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragops.errors import ConfigError, OperationFailed

if TYPE_CHECKING:
    from ragops.config import Config
    from ragops.platforms.docker_host import DockerHost

SPOOL = "wal-spool"                        # under the host's directory
SPOOL_MOUNT = "/var/lib/ragops-wal-spool"  # inside the database containers
DEFAULT_UID = 10002                        # scripts/postgres-image/Dockerfile's USER


def wanted(config: Config) -> bool:
    """Whether the database containers archive WAL (and ragops ships it)."""
    return bool(config.backups.wal.enabled) and not config.database.dsn


def active(config: Config, host: DockerHost) -> bool:
    if wanted(config) and host.is_ssh and config.backups.wal.spool_dir:
        raise ConfigError(f"environments.{config.env_name}.backups.wal.spool_dir: a path on this machine, but the "
                          f"database runs on ssh host {host.label} (its spool is <docker.remote_dir>/<instance>/"
                          f"{SPOOL}); remove it")
    return wanted(config)


def spool_path(config: Config, host: DockerHost) -> str:
    """The spool: backups.wal.spool_dir, else <host dir>/wal-spool (on the ssh host for an ssh:// one)."""
    configured = config.backups.wal.spool_dir
    if configured and not host.is_ssh:
        return str(config.resolve_path(configured))
    return host.dir.path(SPOOL)


def remote_spool(config: Config, host: DockerHost) -> str:
    """An ssh host's spool path without connecting: relative to the ssh account's home unless
    docker.remote_dir is absolute (SFTP resolves it the same way)."""
    return posixpath.join(config.env.docker.remote_dir, host.instance, SPOOL)


def container_settings(config: Config, group_readable: bool) -> dict[str, str]:
    """archive_mode/archive_command/archive_timeout for the containers, into SPOOL_MOUNT."""
    from ragops.pg.pgctl import archive_settings

    settings = archive_settings(Path(SPOOL_MOUNT), config.backups.wal.archive_timeout)
    if group_readable:   # a normal account reads the segments through the group: make each group readable
        settings["archive_command"] = settings["archive_command"].replace(
            " && sync ", f" && chmod 0640 {SPOOL_MOUNT}/.%f.tmp && sync ", 1)
    return settings


def prepare_spool(config: Config, host: DockerHost, image: str) -> dict:
    """Create the spool (see the module's note on ownership); the container options that mount it:
    {"volumes": {...}, "group_add": [...], "group_readable": bool}."""
    if host.is_ssh:
        return _prepare_remote(host, image, spool_path(config, host))
    path = Path(spool_path(config, host))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise OperationFailed(f"the WAL spool {path} is not a directory (a symlink?); remove it and run up again")
    options: dict = {"volumes": {str(path): {"bind": SPOOL_MOUNT, "mode": "rw"}}, "group_readable": os.geteuid() != 0}
    if os.geteuid() == 0:
        uid, gid = _image_user(host, image)
        if (info.st_uid, info.st_gid) != (uid, gid):
            os.chown(path, uid, gid, follow_symlinks=False)
        if info.st_mode & 0o7777 != 0o700:
            os.chmod(path, 0o700, follow_symlinks=False)
    else:
        if info.st_uid != os.geteuid():
            raise OperationFailed(f"the WAL spool {path} belongs to uid {info.st_uid}, not to this account")
        os.chmod(path, 0o2770)
        options["group_add"] = [str(info.st_gid)]
    return options


def _prepare_remote(host: DockerHost, image: str, path: str) -> dict:
    """The same on an ssh host, through SFTP: the ssh account's uid decides (root, or not)."""
    sftp = host.dir.sftp
    host.dir.makedirs(".")
    try:
        sftp.mkdir(path, mode=0o700)
    except OSError:
        pass   # there already (SFTP says only "Failure"): checked below
    info = sftp.lstat(path)
    if not stat.S_ISDIR(info.st_mode or 0):
        raise OperationFailed(f"the WAL spool {host.label}:{path} is not a directory (a symlink?); remove it")
    options: dict = {"volumes": {path: {"bind": SPOOL_MOUNT, "mode": "rw"}}}
    if sftp.stat(host.dir.root).st_uid == 0:
        uid, gid = _image_user(host, image)
        if (info.st_uid, info.st_gid) != (uid, gid):
            sftp.chown(path, uid, gid)
        sftp.chmod(path, 0o700)
        return {**options, "group_readable": False}
    sftp.chmod(path, 0o2770)
    return {**options, "group_add": [str(info.st_gid)], "group_readable": True}


def _image_user(host: DockerHost, image: str) -> tuple[int, int]:
    """The uid:gid the database image runs as (its USER), numeric; else the bundled image's."""
    try:
        user = host.client.images.get(image).attrs.get("Config", {}).get("User") or ""
    except Exception:  # noqa: BLE001 - docker API errors: fall back to the bundled image's uid
        user = ""
    uid, _, gid = user.partition(":")
    if uid.isdigit():
        return int(uid), int(gid) if gid.isdigit() else int(uid)
    return DEFAULT_UID, DEFAULT_UID


def outdated(container, archive: dict) -> bool:
    """Whether a running database container was started with other WAL archive settings or spool
    than `archive` (DockerDatabase._archive): `up` restarts it with the wanted ones (archive_mode
    needs a restart; an environment started before the archive, or with it switched off since)."""
    names = ("archive_mode", "archive_command", "archive_timeout")
    have = sorted(arg for arg in container.attrs.get("Config", {}).get("Cmd") or [] if arg.split("=", 1)[0] in names)
    want = sorted(f"{key}={value}" for key, value in archive.get("settings", {}).items())
    mounts = {m.get("Source") for m in container.attrs.get("Mounts") or [] if m.get("Destination") == SPOOL_MOUNT}
    return have != want or mounts != set(archive.get("volumes", {}))


class SftpSpool:
    """The spool on an ssh host for the shipper (ragops.pitr.wal.Shipper): SFTP on a connection of its
    own, verified as every ssh connection of ragops; after an error the next call reconnects. Every
    failure is an OSError (the shipper retries), a vanished file a FileNotFoundError."""

    def __init__(self, host: DockerHost, path: str):
        self.host = host
        self.path = path
        self._ssh: Any = None
        self._sftp: Any = None

    def __str__(self) -> str:
        return f"{self.host.label}:{self.path}"

    def client(self):
        if self._sftp is None:
            self._ssh = self.host._connect_ssh()
            self._sftp = self._ssh.open_sftp()
        return self._sftp

    def call(self, action):
        import paramiko

        try:
            return action(self.client())
        except FileNotFoundError:
            raise
        except (OSError, EOFError, paramiko.SSHException, OperationFailed) as exc:
            self.reset()
            raise OSError(f"ssh host {self.host.label}: {getattr(exc, 'message', None) or exc}") from None

    def reset(self) -> None:
        for thing in (self._sftp, self._ssh):
            try:
                if thing is not None:
                    thing.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self._ssh = self._sftp = None

    def names(self) -> list[str]:
        try:
            return self.call(lambda sftp: sftp.listdir(self.path))
        except FileNotFoundError:
            return []

    def reader(self, name: str) -> SftpFileReader:
        return SftpFileReader(self, posixpath.join(self.path, name))

    def archived_at(self, name: str) -> str:
        from ragops.backup.catalog import iso

        info = self.call(lambda sftp: sftp.lstat(posixpath.join(self.path, name)))
        return iso(datetime.fromtimestamp(info.st_mtime or 0, UTC))

    def remove(self, name: str) -> None:
        try:
            self.call(lambda sftp: sftp.remove(posixpath.join(self.path, name)))
        except FileNotFoundError:
            pass


class SftpFileReader:
    """The reader stage over one spooled file on an ssh host (a regular file only: never a link)."""

    name = "wal-file"

    def __init__(self, spool: SftpSpool, path: str):
        self.spool = spool
        self.path = path
        self.handle = None

    def __enter__(self) -> SftpFileReader:
        from ragops.backup.pipeline import CountingReader

        def open_regular(sftp):
            info = sftp.lstat(self.path)
            if not stat.S_ISREG(info.st_mode or 0):
                raise OSError(f"{self.path} is not a regular file")
            handle = sftp.open(self.path, "rb")
            handle.prefetch(info.st_size)
            return handle

        self.handle = self.spool.call(open_regular)
        self.stream = CountingReader(_Guarded(self.spool, self.handle))
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.handle is not None:
                self.handle.close()
        except Exception:  # noqa: BLE001 - a broken connection; the error that matters is raised already
            pass

    def finish(self) -> None:
        pass


class _Guarded:
    """read() of an SFTP file whose connection errors become OSError (the shipper retries those)."""

    def __init__(self, spool: SftpSpool, handle):
        self.spool = spool
        self.handle = handle

    def read(self, size: int = -1) -> bytes:
        return self.spool.call(lambda _sftp: self.handle.read(size))

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)
