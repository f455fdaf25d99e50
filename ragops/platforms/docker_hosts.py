"""Connections to Docker hosts: the local engine socket, or `ssh://user@host[:port]`.

For an ssh:// host ragops opens ONE paramiko connection itself, with the host key checked against
`known_hosts` (an unknown or changed key is refused with a one-line error naming the host, unless
the host is listed in `trust_host_keys`). That verified connection then carries everything:
  - the Docker API (the docker SDK's paramiko adapter, handed our connected client: the SDK never
    opens a connection of its own, so it cannot accept a key we did not check);
  - SFTP for the router's config directory and the deploy lock (temp file + posix-rename, which
    is rename(2) on the host: atomic, the file provider never sees a partial file);
  - local TCP tunnels (direct-tcpip) to ports bound on the host's 127.0.0.1 (colors, Traefik API).
The local engine uses the same interface with plain files and no tunnels.

paramiko and docker are imported inside functions only: `ragops --help` never loads them.
"""
from __future__ import annotations

import os
import posixpath
import select
import socket
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from ragops.errors import OperationFailed
from ragops.platforms.base import TokenFileLock


class HostKeyRefused(OperationFailed):
    """An ssh host presented a key that is not in known_hosts (or a different one)."""


def host_key_id(spec: str) -> tuple[str, int, str]:
    parsed = urlparse(spec)
    return parsed.hostname or "", parsed.port or 22, parsed.username or os.environ.get("USER", "root")


def _trusted(spec: str, trust: list[str]) -> bool:
    host, port, user = host_key_id(spec)
    forms = {spec, f"{host}:{port}", f"[{host}]:{port}", f"{user}@{host}:{port}"}
    if port == 22:
        forms.add(host)
    return any(entry in forms for entry in trust)


def _fingerprint(key) -> str:
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def ssh_connect(spec: str, *, known_hosts: str | None, trust: list[str], key_file: str | None,
                timeout: float = 10.0):
    """A connected paramiko.SSHClient whose host key was verified (or explicitly trusted)."""
    import logging

    import paramiko

    # a tunnel to a port that is not listening yet is expected (readiness polling): no log noise
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)

    host, port, user = host_key_id(spec)
    known = Path(known_hosts or "~/.ssh/known_hosts").expanduser()
    trusted = _trusted(spec, trust)
    lookup = host if port == 22 else f"[{host}]:{port}"

    class Refuse(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            raise HostKeyRefused(
                f"host {spec}: unknown host key ({_fingerprint(key)}), not in {known}; refusing to connect",
                hint=f"verify the fingerprint, then add it (ssh-keyscan -p {port} {host} >> {known}) "
                     f"or list '{host}:{port}' in trust_host_keys")

    class TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            # explicitly trusted in ragops.yaml: remember the key so the next connection verifies it
            client.get_host_keys().add(hostname, key.get_name(), key)
            known.parent.mkdir(parents=True, exist_ok=True)
            entries = paramiko.HostKeys(str(known)) if known.exists() else paramiko.HostKeys()
            entries.add(hostname, key.get_name(), key)
            entries.save(str(known))

    client = paramiko.SSHClient()
    if known.exists() and not trusted:
        try:
            client.load_host_keys(str(known))
        except (OSError, paramiko.SSHException) as exc:
            raise OperationFailed(f"host {spec}: cannot read known_hosts {known}: {exc}") from None
    elif known.exists() and trusted:
        # a trusted host may present a new key (re-provisioned): accept it and record it
        entries = paramiko.HostKeys(str(known))
        for name in list(entries.keys()):
            if name != lookup:
                for key_type, key in entries[name].items():
                    client.get_host_keys().add(name, key_type, key)
    client.set_missing_host_key_policy(TrustOnFirstUse() if trusted else Refuse())
    try:
        client.connect(host, port=port, username=user, key_filename=key_file,
                       look_for_keys=key_file is None, allow_agent=key_file is None,
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
    except HostKeyRefused:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyRefused(
            f"host {spec}: host key CHANGED: it presents {_fingerprint(exc.key)}, known_hosts {known} has "
            f"{_fingerprint(exc.expected_key)}; refusing to connect (possible man-in-the-middle)",
            hint=f"if the host was re-provisioned, verify and replace its line in {known}") from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise OperationFailed(f"host {spec}: ssh authentication failed for {user}: {exc}",
                              hint="set docker.ssh_key in ragops.yaml or load the key into ssh-agent") from None
    except (OSError, paramiko.SSHException) as exc:
        client.close()
        raise OperationFailed(f"host {spec}: cannot connect over ssh: {exc}") from None
    return client


def docker_over_ssh(spec: str, ssh_client, reconnect, timeout: int = 60):
    """A docker.DockerClient whose API requests travel over our verified paramiko connection."""
    from unittest import mock

    import docker
    import docker.api.client as api_module
    import requests.adapters
    from docker import constants
    from docker.transport.sshconn import SSHHTTPAdapter

    class VerifiedSSHAdapter(SSHHTTPAdapter):
        def __init__(self, base_url, timeout=60, pool_connections=constants.DEFAULT_NUM_POOLS,
                     max_pool_size=constants.DEFAULT_MAX_POOL_SIZE, shell_out=False):
            from urllib3._collections import RecentlyUsedContainer

            self.ssh_client = ssh_client     # connected, host key verified by ssh_connect
            self.ssh_params = {}
            self.ssh_host = base_url[len("ssh://"):] if base_url.startswith("ssh://") else base_url
            self.timeout = timeout
            self.max_pool_size = max_pool_size
            self.pools: RecentlyUsedContainer[str, Any] = RecentlyUsedContainer(pool_connections,
                                                                                dispose_func=lambda p: p.close())
            requests.adapters.HTTPAdapter.__init__(self)

        def _connect(self):
            # never paramiko's own connect (system known_hosts, other policy): reconnect through ours
            self.ssh_client = reconnect()

    with mock.patch.object(api_module, "SSHHTTPAdapter", VerifiedSSHAdapter):
        api = docker.APIClient(base_url=spec, version="auto", timeout=timeout, use_ssh_client=False)
    client = docker.DockerClient.__new__(docker.DockerClient)
    client.api = api
    return client


class Tunnel:
    """127.0.0.1:<local port> here -> <remote host>:<port> through the ssh connection."""

    def __init__(self, transport, remote: tuple[str, int]):
        self.transport = transport
        self.remote = remote
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"tunnel-{remote[1]}").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pump, args=(conn, peer), daemon=True).start()

    def _pump(self, conn: socket.socket, peer) -> None:
        try:
            chan = self.transport.open_channel("direct-tcpip", self.remote, peer, timeout=10)
        except Exception:  # noqa: BLE001 - the remote port refused: close like a refused connect
            conn.close()
            return
        try:
            while True:
                ready, _, _ = select.select([conn, chan], [], [], 30)
                if conn in ready:
                    data = conn.recv(65536)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in ready:
                    data = chan.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
        except OSError:
            pass
        finally:
            chan.close()
            conn.close()

    def close(self) -> None:
        self._closed = True
        try:
            self.sock.close()
        except OSError:
            pass


# ---- a directory on the host: router config and lock ----------------------------------------------

class LocalDir:
    """A directory on this machine (the local engine bind-mounts it)."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, name: str) -> str:
        return str(self.root / name)

    def makedirs(self, name: str) -> None:
        (self.root / name).mkdir(parents=True, exist_ok=True)

    def write_text(self, name: str, text: str) -> None:
        from ragops.fsutil import write_atomic

        write_atomic(self.root / name, text)

    def read_text(self, name: str) -> str | None:
        try:
            return (self.root / name).read_text()
        except FileNotFoundError:
            return None

    def write_yaml(self, name: str, data: dict) -> None:
        self.write_text(name, yaml.safe_dump(data, sort_keys=False))

    def read_yaml(self, name: str) -> dict | None:
        try:
            return yaml.safe_load((self.root / name).read_text()) or {}
        except FileNotFoundError:
            return None
        except (OSError, yaml.YAMLError):
            return {}

    def create_excl(self, name: str, text: str) -> bool:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return True

    def unlink(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def write_secret(self, name: str, text: str) -> None:
        """A file a container mounts read-only: mode 0444 inside a 0700 folder only its owner enters."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)

    def remove_tree(self) -> None:
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


class SubDir:
    """A folder inside a host directory, as the router's ConfigStore (ragops.routing.base)."""

    def __init__(self, parent, prefix: str):
        self.parent = parent
        self.prefix = prefix

    def read_text(self, name: str) -> str | None:
        return self.parent.read_text(posixpath.join(self.prefix, name))

    def write_text(self, name: str, text: str) -> None:
        self.parent.write_text(posixpath.join(self.prefix, name), text)

    def makedirs(self, name: str) -> None:
        self.parent.makedirs(posixpath.join(self.prefix, name))


class SftpDir:
    """A directory on an ssh host, through SFTP on the verified connection."""

    def __init__(self, sftp, root: str):
        self.sftp = sftp
        self.root = root

    def path(self, name: str) -> str:
        return posixpath.join(self.root, name)

    def makedirs(self, name: str) -> None:
        current = ""
        for part in posixpath.normpath(self.path(name)).split("/"):
            if part == "":
                continue
            current = current + "/" + part
            try:
                self.sftp.stat(current)
            except FileNotFoundError:
                self.sftp.mkdir(current)

    def write_bytes_atomic(self, name: str, data: bytes) -> None:
        target = self.path(name)
        directory = posixpath.dirname(target)
        tmp = posixpath.join(directory, f".tmp-{uuid.uuid4().hex}.partial")
        try:
            with self.sftp.open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
            # posix-rename@openssh.com: rename(2) on the host, replacing the target atomically
            self.sftp.posix_rename(tmp, target)
        except BaseException:
            try:
                self.sftp.remove(tmp)
            except OSError:
                pass
            raise

    def write_text(self, name: str, text: str) -> None:
        self.makedirs(posixpath.dirname(name) or ".")
        self.write_bytes_atomic(name, text.encode())

    def read_text(self, name: str) -> str | None:
        try:
            with self.sftp.open(self.path(name), "rb") as handle:
                return handle.read().decode()
        except FileNotFoundError:
            return None

    def write_yaml(self, name: str, data: dict) -> None:
        self.write_text(name, yaml.safe_dump(data, sort_keys=False))

    def read_yaml(self, name: str) -> dict | None:
        try:
            with self.sftp.open(self.path(name), "rb") as handle:
                return yaml.safe_load(handle.read().decode()) or {}
        except FileNotFoundError:
            return None
        except (OSError, yaml.YAMLError):
            return {}

    def create_excl(self, name: str, text: str) -> bool:
        self.makedirs(posixpath.dirname(name) or ".")
        try:
            # SFTP open with CREATE|EXCL: the server's open(2) with O_EXCL, atomic on the host
            with self.sftp.open(self.path(name), "wx") as handle:
                handle.write(text.encode())
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            try:
                self.sftp.stat(self.path(name))
                return False
            except FileNotFoundError:
                raise exc from None
        return True

    def unlink(self, name: str) -> None:
        try:
            self.sftp.remove(self.path(name))
        except FileNotFoundError:
            pass

    def write_secret(self, name: str, text: str) -> None:
        """As LocalDir.write_secret, on the ssh host: 0444 inside a 0700 folder."""
        folder = posixpath.dirname(name) or "."
        self.makedirs(folder)
        self.sftp.chmod(self.path(folder), 0o700)
        self.write_bytes_atomic(name, text.encode())
        self.sftp.chmod(self.path(name), 0o444)

    def remove_tree(self) -> None:
        import stat

        def walk(path: str) -> None:
            try:
                entries = self.sftp.listdir_attr(path)
            except FileNotFoundError:
                return
            for entry in entries:
                child = posixpath.join(path, entry.filename)
                if stat.S_ISDIR(entry.st_mode):
                    walk(child)
                else:
                    self.sftp.remove(child)
            self.sftp.rmdir(path)

        walk(self.root)


class DirLock(TokenFileLock):
    """The deploy lock as a file in the host's ragops directory, created with O_EXCL semantics."""

    NAME = "lock.json"

    def __init__(self, directory):
        self.dir = directory

    def read(self) -> dict | None:
        data = self.dir.read_yaml(self.NAME)   # JSON is YAML
        if data is None:
            return None
        return data if isinstance(data, dict) and data else {"token": "?", "owner": "unreadable lock file",
                                                             "expires_at": 0}

    def create(self, record: dict) -> bool:
        import json

        return self.dir.create_excl(self.NAME, json.dumps(record))

    def _write(self, record: dict) -> None:
        self.dir.write_yaml(self.NAME, record)

    def _remove(self) -> None:
        self.dir.unlink(self.NAME)


class MultiHostLock:
    """One lock file per host; taking the lock means creating it on every host (all or none)."""

    def __init__(self, locks: list[tuple[str, DirLock]]):
        self.locks = locks

    def read(self) -> dict | None:
        for _, lock in self.locks:
            record = lock.read()
            if record is not None:
                return record
        return None

    def create(self, record: dict) -> bool:
        taken: list[DirLock] = []
        for _, lock in self.locks:
            if not lock.create(record):
                for done in taken:
                    done.delete(record.get("token"))
                return False
            taken.append(lock)
        return True

    def replace(self, expected_token: str, record: dict) -> bool:
        results = [lock.replace(expected_token, record) for _, lock in self.locks]
        return all(results)

    def delete(self, expected_token: str | None = None) -> bool:
        results = [lock.delete(expected_token) for _, lock in self.locks]
        return any(results)
