"""The WAL archive of the docker platform's database containers (ragops/pitr on docker).

When the platform owns the database (database containers, no `database.dsn`) and
`backups.wal.enabled`, every database node's container gets the primary's archive settings as
`-c` options (ragops.db.pgctl.archive_settings: cp + sync + mv, no interpreter per segment) and
the spool bind-mounted at SPOOL_MOUNT:

  <host dir>/wal-spool   (state_dir/docker/<instance>/wal-spool on this machine)

A replica has them too: archive_mode=on archives nothing on a standby, and a promoted replica
(`db promote`, failover) archives its new timeline into the same spool without a restart. The
spool is a directory on this machine, so the local platform's shipper (ragops.pitr.wal, a
background process under state_dir/run) ships it unchanged; `down` drains it and stops it.

Ownership: the container's server account (the image's USER, uid 10002) writes the segments.
  - ragops as root: the spool is created by ragops and handed to that uid (0700), as the local
    platform hands its spool to the server account; the shipper only reads (O_NOFOLLOW) and unlinks.
  - ragops as a normal user (docker group): the spool stays the user's (2770, setgid), the
    containers join the user's group (group_add) and archive_command makes each segment group
    readable before the rename, so the user reads and removes it. Nothing is world-writable.
The spool of an ssh:// host would be on that host: not supported yet (a Spool seam through the
Docker API is the way); an explicit `backups.wal.enabled: true` is refused, the default skipped.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

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


def explicitly_enabled(config: Config) -> bool:
    return "enabled" in config.backups.wal.model_fields_set


def supported(config: Config, host: DockerHost) -> bool:
    """False on an ssh:// host (its spool would be on that host). An explicit
    `backups.wal.enabled: true` there is refused (ConfigError) instead."""
    if not host.is_ssh:
        return True
    if explicitly_enabled(config):
        raise ConfigError(f"environments.{config.env_name}.backups.wal.enabled: the WAL archive on ssh hosts "
                          f"({host.label}) is not supported yet; set backups.wal.enabled: false")
    return False


def active(config: Config, host: DockerHost) -> bool:
    return wanted(config) and supported(config, host)


def spool_path(config: Config, host: DockerHost) -> Path:
    """The spool on this machine: backups.wal.spool_dir, else <host dir>/wal-spool."""
    configured = config.backups.wal.spool_dir
    return config.resolve_path(configured) if configured else Path(host.dir.path(SPOOL))


def container_settings(config: Config) -> dict[str, str]:
    """archive_mode/archive_command/archive_timeout for the containers, into SPOOL_MOUNT."""
    from ragops.db.pgctl import archive_settings

    settings = archive_settings(Path(SPOOL_MOUNT), config.backups.wal.archive_timeout)
    if os.geteuid() != 0:   # the user reads the segments through the group: make each group readable
        settings["archive_command"] = settings["archive_command"].replace(
            " && sync ", f" && chmod 0640 {SPOOL_MOUNT}/.%f.tmp && sync ", 1)
    return settings


def prepare_spool(config: Config, host: DockerHost, image: str) -> dict:
    """Create the spool (see the module's note on ownership); the container options that mount it:
    {"volumes": {...}, "group_add": [...]}."""
    path = spool_path(config, host)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise OperationFailed(f"the WAL spool {path} is not a directory (a symlink?); remove it and run up again")
    options: dict = {"volumes": {str(path): {"bind": SPOOL_MOUNT, "mode": "rw"}}}
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
