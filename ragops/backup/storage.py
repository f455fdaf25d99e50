"""Where backups live: one small interface over `file://` directories and `s3://` buckets.

Objects are written through a writer that commits on a clean close and leaves nothing visible
otherwise: file storage writes to a temporary name and `os.replace`s it; S3 uses a multipart
upload (parts of PART_SIZE, so memory stays flat) that is completed on close and aborted on
failure. S3 calls are retried with backoff on 5xx, throttling, timeouts and connection errors,
then fail with one line naming the bucket and key. boto3 is imported inside the functions.
"""
from __future__ import annotations

import builtins
import hashlib
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from ragops.errors import ConfigError, OperationFailed, UsageError

PART_SIZE = 8 * 1024 * 1024          # S3 multipart part size (S3's minimum is 5 MiB)
READ_SIZE = 1024 * 1024              # chunk size when streaming an object out
TEMP_MARK = ".partial-"              # file storage: in-flight writes carry this in their name
S3_ATTEMPTS = int(os.environ.get("RAGOPS_S3_ATTEMPTS", "5"))


@dataclass
class StoredObject:
    key: str
    size: int
    modified: datetime | None = None


@dataclass
class PendingUpload:
    """An unfinished write: an S3 multipart upload or a file storage temporary file."""
    key: str
    upload_id: str | None
    started: datetime | None


class Storage(Protocol):
    url: str

    def describe(self, key: str) -> str: ...
    def writer(self, key: str) -> ObjectWriter: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """Create `key` only if no object has that name (False then, and nothing is changed)."""
    def get_bytes(self, key: str) -> bytes: ...
    def read_chunks(self, key: str, size: int = READ_SIZE, limit: int | None = None) -> Iterator[bytes]: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> builtins.list[StoredObject]: ...
    def delete(self, key: str) -> None: ...
    def pending_uploads(self) -> builtins.list[PendingUpload]: ...
    def abort_pending(self, pending: PendingUpload) -> None: ...


class ObjectWriter:
    """write() chunks, then commit() or abort(); as a context manager, commit on success."""

    key: str

    def write(self, data) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def commit(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


def put_stream(storage: Storage, key: str, chunks: Iterable[bytes]) -> tuple[int, str]:
    """Write an iterator of chunks as one object; return (size, sha256 hex)."""
    digest = hashlib.sha256()
    size = 0
    with storage.writer(key) as out:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return size, digest.hexdigest()


# ---- file:// --------------------------------------------------------------------------------

class FileWriter(ObjectWriter):
    def __init__(self, storage: FileStorage, key: str):
        self.key = key
        self.final = storage.path(key)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.temp = self.final.with_name(f"{TEMP_MARK}{socket.gethostname()}-{os.getpid()}-{self.final.name}")
        self.handle = open(self.temp, "wb")  # noqa: SIM115 - the writer owns it until commit()/abort()
        self.done = False

    def write(self, data) -> int:
        self.handle.write(data)
        return len(data)

    def commit(self) -> None:
        if self.done:
            return
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.temp, self.final)
        self.done = True

    def abort(self) -> None:
        if self.done:
            return
        self.handle.close()
        self.temp.unlink(missing_ok=True)
        self.done = True


class FileStorage:
    def __init__(self, url: str, root: Path):
        self.url = url
        self.root = root

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents and path != self.root.resolve():
            raise UsageError(f"object key {key!r} escapes the storage directory")
        return path

    def describe(self, key: str) -> str:
        return str(self.root / key)

    def writer(self, key: str) -> FileWriter:
        try:
            return FileWriter(self, key)
        except OSError as exc:
            raise OperationFailed(f"cannot write {self.describe(key)}: {exc.strerror}") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as out:
            out.write(data)

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        # written whole under a temporary name, then linked: link() refuses an existing name
        # atomically (os.replace would overwrite), and a reader never sees half an object
        with self.writer(key) as out:
            out.write(data)
            out.handle.flush()
            os.fsync(out.handle.fileno())
            out.handle.close()
            try:
                os.link(out.temp, out.final)
            except FileExistsError:
                return False
            except OSError as exc:
                raise OperationFailed(f"cannot create {self.describe(key)}: {exc.strerror}") from None
            finally:
                out.temp.unlink(missing_ok=True)
                out.done = True
        return True

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise OperationFailed(f"{self.describe(key)}: no such object") from None
        except OSError as exc:
            raise OperationFailed(f"cannot read {self.describe(key)}: {exc.strerror}") from None

    def read_chunks(self, key: str, size: int = READ_SIZE, limit: int | None = None) -> Iterator[bytes]:
        try:
            handle = open(self.path(key), "rb")  # noqa: SIM115 - closed by the generator's finally
        except FileNotFoundError:
            raise OperationFailed(f"{self.describe(key)}: no such object") from None
        with handle:
            remaining = limit
            while remaining is None or remaining > 0:
                chunk = handle.read(size if remaining is None else min(size, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str = "") -> builtins.list[StoredObject]:
        if not self.root.is_dir():
            return []
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(TEMP_MARK):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    stat = full.stat()
                    found.append(StoredObject(key, stat.st_size,
                                              datetime.fromtimestamp(stat.st_mtime, UTC)))
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self.root.resolve() and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def pending_uploads(self) -> builtins.list[PendingUpload]:
        if not self.root.is_dir():
            return []
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(TEMP_MARK):
                    full = Path(dirpath) / name
                    found.append(PendingUpload(full.relative_to(self.root).as_posix(), None,
                                               datetime.fromtimestamp(full.stat().st_mtime, UTC)))
        return sorted(found, key=lambda p: p.key)

    def abort_pending(self, pending: PendingUpload) -> None:
        self.delete(pending.key)


# ---- s3:// ----------------------------------------------------------------------------------

def _retryable(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = exc.response.get("Error", {}).get("Code", "")
        return status >= 500 or status == 429 or code in (
            "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling")
    return isinstance(exc, (BotoConnectionError, HTTPClientError, TimeoutError, ConnectionError))


CREDENTIAL_ERROR_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                          "TokenRefreshRequired")


def _credentials_problem(exc: BaseException) -> bool:
    """No credentials at all, partial ones, or ones the service rejects as unknown or expired."""
    from botocore.exceptions import ClientError, CredentialRetrievalError, NoCredentialsError, PartialCredentialsError

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
        return True
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in CREDENTIAL_ERROR_CODES


def _why(exc: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{err.get('Code') or 'error'} (HTTP {status})" + (f": {err['Message']}" if err.get("Message") else "")
    return f"{type(exc).__name__}: {exc}"


class S3Writer(ObjectWriter):
    def __init__(self, storage: S3Storage, key: str):
        self.storage = storage
        self.key = key
        self.full = storage.full_key(key)
        self.buffer = bytearray()
        self.parts: list[dict] = []
        self.upload_id: str | None = None
        self.done = False

    def _start(self) -> None:
        result = self.storage.call("create_multipart_upload", self.key, Bucket=self.storage.bucket, Key=self.full)
        self.upload_id = result["UploadId"]

    def _send_part(self, data: bytes) -> None:
        if self.upload_id is None:
            self._start()
        number = len(self.parts) + 1
        result = self.storage.call("upload_part", self.key, Bucket=self.storage.bucket, Key=self.full,
                                   UploadId=self.upload_id, PartNumber=number, Body=data)
        self.parts.append({"PartNumber": number, "ETag": result["ETag"]})

    def write(self, data) -> int:
        self.buffer += data
        while len(self.buffer) >= PART_SIZE:
            part = bytes(self.buffer[:PART_SIZE])
            del self.buffer[:PART_SIZE]
            self._send_part(part)
        return len(data)

    def commit(self) -> None:
        if self.done:
            return
        try:
            if self.upload_id is None:     # small object: one PUT
                self.storage.call("put_object", self.key, Bucket=self.storage.bucket, Key=self.full,
                                  Body=bytes(self.buffer))
            else:
                if self.buffer:
                    self._send_part(bytes(self.buffer))
                self.storage.call("complete_multipart_upload", self.key, Bucket=self.storage.bucket,
                                  Key=self.full, UploadId=self.upload_id,
                                  MultipartUpload={"Parts": self.parts})
            self.buffer = bytearray()
            self.done = True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        self.buffer = bytearray()
        if self.upload_id is not None:
            try:
                self.storage.call("abort_multipart_upload", self.key, Bucket=self.storage.bucket,
                                  Key=self.full, UploadId=self.upload_id)
            except OperationFailed:
                pass  # prune removes what is left (list_multipart_uploads)


class S3Storage:
    def __init__(self, url: str, bucket: str, prefix: str, *, endpoint_url: str | None, region: str,
                 access_key_id: str | None, secret_access_key: str | None):
        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config as BotoConfig

            cfg = BotoConfig(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10,
                             read_timeout=60, request_checksum_calculation="when_required",
                             response_checksum_validation="when_required")
            kwargs = {"region_name": self.region, "endpoint_url": self.endpoint_url, "config": cfg}
            if self._access_key_id and self._secret_access_key:
                kwargs.update(aws_access_key_id=self._access_key_id,
                              aws_secret_access_key=self._secret_access_key)
            self._client = boto3.session.Session().client("s3", **kwargs)
        return self._client

    def full_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.full_key(key)}"

    def call(self, operation: str, key: str | None, **kwargs):
        """One S3 call with retries (tenacity, exponential backoff), then one clear error line."""
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        method = getattr(self.client, operation)
        try:
            for attempt in Retrying(stop=stop_after_attempt(S3_ATTEMPTS),
                                    wait=wait_exponential(multiplier=0.25, max=8),
                                    retry=retry_if_exception(_retryable), reraise=True):
                with attempt:
                    return method(**kwargs)
        except Exception as exc:
            from botocore.exceptions import BotoCoreError, ClientError

            if not isinstance(exc, (BotoCoreError, ClientError, OSError)):
                raise
            where = self.describe(key) if key is not None else f"s3://{self.bucket}/{self.prefix}"
            if _credentials_problem(exc):   # configuration, not a failed backup or gate: exit 2
                raise ConfigError(f"backups.storage: no AWS credentials for {where} ({_why(exc)})",
                                  hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or an "
                                       "instance/pod role), or backups.s3.access_key_id/secret_access_key") from None
            tries = f" after {S3_ATTEMPTS} attempts" if _retryable(exc) else ""
            raise OperationFailed(f"S3 {operation} {where} failed{tries}: {_why(exc)}") from None

    def writer(self, key: str) -> S3Writer:
        return S3Writer(self, key)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.call("put_object", key, Bucket=self.bucket, Key=self.full_key(key), Body=data)

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        # S3's conditional write (If-None-Match: *): the store refuses an existing key with 412
        try:
            self.call("put_object", key, Bucket=self.bucket, Key=self.full_key(key), Body=data, IfNoneMatch="*")
            return True
        except OperationFailed as exc:
            if "PreconditionFailed" not in exc.message and "HTTP 412" not in exc.message:
                raise
        # a retried PUT whose first attempt landed also gets 412: the same bytes there are ours
        return self.get_bytes(key) == data

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.read_chunks(key))

    def read_chunks(self, key: str, size: int = READ_SIZE, limit: int | None = None) -> Iterator[bytes]:
        """Stream an object in ranged GETs of PART_SIZE (each retried), so a dropped connection
        costs one range, not the whole object."""
        offset = 0
        while limit is None or offset < limit:
            end = offset + PART_SIZE - 1
            if limit is not None:
                end = min(end, limit - 1)
            try:
                result = self.call("get_object", key, Bucket=self.bucket, Key=self.full_key(key),
                                   Range=f"bytes={offset}-{end}")
            except OperationFailed as exc:
                if "InvalidRange" in exc.message:   # past the end (or an empty object)
                    return
                if "NoSuchKey" in exc.message:
                    raise OperationFailed(f"{self.describe(key)}: no such object") from None
                raise
            body = result["Body"]
            got = 0
            while True:
                chunk = body.read(size)
                if not chunk:
                    break
                got += len(chunk)
                yield chunk
            body.close()
            offset += got
            total = int(result.get("ContentRange", "/0").rsplit("/", 1)[-1] or 0)
            if got == 0 or offset >= total:
                return

    def exists(self, key: str) -> bool:
        try:
            self.call("head_object", key, Bucket=self.bucket, Key=self.full_key(key))
            return True
        except OperationFailed as exc:
            if "404" in exc.message or "NotFound" in exc.message or "NoSuchKey" in exc.message:
                return False
            raise

    def list(self, prefix: str = "") -> builtins.list[StoredObject]:
        found = []
        base = f"{self.prefix}/" if self.prefix else ""
        token = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": base + prefix}
            if token:
                kwargs["ContinuationToken"] = token
            result = self.call("list_objects_v2", None, **kwargs)
            for item in result.get("Contents", []):
                found.append(StoredObject(item["Key"][len(base):], item["Size"], item.get("LastModified")))
            if not result.get("IsTruncated"):
                break
            token = result.get("NextContinuationToken")
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        self.call("delete_object", key, Bucket=self.bucket, Key=self.full_key(key))

    def pending_uploads(self) -> builtins.list[PendingUpload]:
        base = f"{self.prefix}/" if self.prefix else ""
        found = []
        kwargs = {"Bucket": self.bucket, "Prefix": base}
        while True:
            result = self.call("list_multipart_uploads", None, **kwargs)
            for item in result.get("Uploads", []):
                found.append(PendingUpload(item["Key"][len(base):], item["UploadId"], item.get("Initiated")))
            if not result.get("IsTruncated"):
                break
            kwargs["KeyMarker"] = result.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = result.get("NextUploadIdMarker")
        return sorted(found, key=lambda p: p.key)

    def abort_pending(self, pending: PendingUpload) -> None:
        self.call("abort_multipart_upload", pending.key, Bucket=self.bucket, Key=self.full_key(pending.key),
                  UploadId=pending.upload_id)

    # lifecycle rules (S3 only)
    def get_lifecycle(self) -> builtins.list[dict]:
        try:
            result = self.call("get_bucket_lifecycle_configuration", None, Bucket=self.bucket)
        except OperationFailed as exc:
            if "NoSuchLifecycleConfiguration" in exc.message:
                return []
            raise
        return result.get("Rules", [])

    def put_lifecycle(self, rules: builtins.list[dict]) -> None:
        if rules:
            self.call("put_bucket_lifecycle_configuration", None, Bucket=self.bucket,
                      LifecycleConfiguration={"Rules": rules})
        else:
            self.call("delete_bucket_lifecycle", None, Bucket=self.bucket)


def open_storage(config, url: str | None = None, key: str = "backups.storage") -> Storage:
    """The storage behind a `file://` or `s3://` URL (default: backups.storage)."""
    url = url or config.backups.storage
    scheme, sep, rest = url.partition("://")
    if not sep or not rest:
        raise ConfigError(f"{key}: expected file:///dir or s3://bucket/prefix, got {url!r}")
    if scheme == "file":
        return FileStorage(url, config.resolve_path(rest))
    if scheme == "s3":
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigError(f"{key}: no bucket in {url!r}")
        s3 = config.backups.s3
        return S3Storage(url, bucket, prefix, endpoint_url=s3.endpoint_url, region=s3.region,
                         access_key_id=config.reveal(s3.access_key_id, "backups.s3.access_key_id"),
                         secret_access_key=config.reveal(s3.secret_access_key, "backups.s3.secret_access_key"))
    raise ConfigError(f"{key}: unknown scheme {scheme!r} (expected file:// or s3://)")
