"""Backups against a real PostgreSQL (the shared pg_cluster fixture; our own databases in it) and
the moto server over HTTP. The CLI runs in-process through main(), or as a subprocess to kill."""
from __future__ import annotations

import http.client
import http.server
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ragops.cli.main import main
from ragops.netutil import free_port
from tests.integration.conftest import run_sql

pytestmark = pytest.mark.integration

S3_SECRET = "s3-secret-" + secrets.token_hex(8)


def _age_key() -> str:
    from pyrage import x25519

    return str(x25519.Identity.generate())


AGE_KEY = _age_key()
OTHER_AGE_KEY = _age_key()


def _dsn(pg, dbname: str) -> str:
    return pg["dsn"].replace("dbname=postgres", f"dbname={dbname}")


def _fingerprint(dsn: str) -> tuple:
    return tuple(run_sql(dsn, "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks), "
                            "(SELECT md5(string_agg(id::text || title, ',' ORDER BY id)) FROM documents), "
                            "(SELECT md5(string_agg(id::text || body, ',' ORDER BY id)) FROM chunks)")[0])


def _new_db(pg, prefix: str) -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    run_sql(pg["dsn"], f"CREATE DATABASE {name}")
    return name


def _fill(dsn: str, documents: int = 50, chunks_per_doc: int = 4) -> None:
    run_sql(dsn,
          "CREATE TABLE documents (id serial PRIMARY KEY, title text NOT NULL)",
          "CREATE TABLE chunks (id serial PRIMARY KEY, document_id int REFERENCES documents(id), body text)",
          "CREATE INDEX ON chunks (document_id)",
          f"INSERT INTO documents (title) SELECT 'doc ' || g FROM generate_series(1, {documents}) g",
          f"INSERT INTO chunks (document_id, body) SELECT d.id, md5(d.id::text || '-' || c) "
          f"FROM documents d, generate_series(1, {chunks_per_doc}) c")


@pytest.fixture(scope="module")
def source_db(pg_cluster):
    name = _new_db(pg_cluster, "backup_test")
    _fill(_dsn(pg_cluster, name))
    yield name
    run_sql(pg_cluster["dsn"], f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def scratch_dbs(pg_cluster):
    """Databases a test creates; dropped afterwards."""
    made: list[str] = []

    def make(prefix: str = "backup_target") -> str:
        name = _new_db(pg_cluster, prefix)
        made.append(name)
        return name

    yield make
    for name in made:
        run_sql(pg_cluster["dsn"], f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def write_config(tmp_path, pg_cluster, monkeypatch):
    monkeypatch.setenv("BT_PG_PASSWORD", pg_cluster["password"])
    monkeypatch.setenv("BT_AGE_KEY", AGE_KEY)
    monkeypatch.setenv("BT_S3_KEY", "testing-key-id")
    monkeypatch.setenv("BT_S3_SECRET", S3_SECRET)
    monkeypatch.delenv("RAGOPS_ENV", raising=False)

    def write(dbname: str, storage: str | None = None, *, name: str = "ragops.yaml", key_var: str = "BT_AGE_KEY",
              endpoint: str | None = None, copy_to: str | None = None, retention: dict | None = None,
              lifecycle: list | None = None) -> Path:
        backups = {"storage": storage or f"file://{tmp_path}/store",
                   "encryption_key": "${env:" + key_var + "}",
                   "tables": ["documents", "chunks", "missing_table"]}
        if endpoint:
            backups["s3"] = {"endpoint_url": endpoint, "access_key_id": "${env:BT_S3_KEY}",
                             "secret_access_key": "${env:BT_S3_SECRET}"}
        if copy_to:
            backups["copy_to"] = copy_to
        if retention:
            backups["retention"] = retention
        if lifecycle:
            backups["lifecycle"] = lifecycle
        config = {"project": "backuptest", "default_env": "test", "environments": {"test": {
            "platform": "local", "state_dir": str(tmp_path / "state"),
            "database": {"name": dbname, "superuser": "postgres", "password": "${env:BT_PG_PASSWORD}",
                         "primary": {"name": "primary", "host": "127.0.0.1", "port": pg_cluster["primary"].port},
                         "replicas": []},
            "backups": backups}}}
        path = tmp_path / name
        path.write_text(json.dumps(config))   # JSON is YAML
        return path

    return write


class Cli:
    def __init__(self, capsys):
        self.capsys = capsys
        self.seen: list[str] = []

    def __call__(self, config: Path, *args: str, json_out: bool = True):
        argv = ["-c", str(config), *(["-o", "json"] if json_out else []), *args]
        code = main(argv)
        captured = self.capsys.readouterr()
        self.seen += [captured.out, captured.err]
        data = None
        if json_out and captured.out.strip():
            data = json.loads(captured.out)
        return code, data, captured.err


@pytest.fixture
def cli(capsys):
    runner = Cli(capsys)
    yield runner
    everything = "\n".join(runner.seen)
    # no secret in any output
    for secret in (AGE_KEY, OTHER_AGE_KEY, S3_SECRET, os.environ.get("BT_PG_PASSWORD") or "unset-pw"):
        assert secret not in everything


def _objects(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


# ---- the main path: file:// ---------------------------------------------------------------------

def test_create_list_verify_restore_file(cli, write_config, source_db, scratch_dbs, pg_cluster, tmp_path):
    config = write_config(source_db)
    code, plan, _ = cli(config, "backup", "create", "--dry-run")
    assert code == 0 and plan["dry_run"] and not (tmp_path / "store").exists()

    code, manifest, err = cli(config, "backup", "create", "--label", "first")
    assert code == 0, err
    assert manifest["row_counts"] == {"documents": 50, "chunks": 200}   # missing_table is skipped
    assert manifest["label"] == "first" and manifest["environment"] == "test"
    assert manifest["database"] == source_db and manifest["server_version"].startswith("16")
    assert manifest["encryption"]["key_id"].startswith("age-") and manifest["compression"]["algorithm"] == "zstd"
    assert manifest["raw_bytes"] > 0 and manifest["stored_bytes"] > 0 and len(manifest["sha256"]) == 64
    assert "/" in manifest["wal_lsn"]
    stored = (tmp_path / "store" / manifest["id"] / "manifest.json").read_text()
    for secret in (AGE_KEY, pg_cluster["password"], S3_SECRET):
        assert secret not in stored
    assert (tmp_path / "store" / manifest["id"] / "backup.dump.zst.age").read_bytes().startswith(b"age-encryption.org/v1")

    code, listing, _ = cli(config, "backup", "list")
    assert code == 0 and [b["id"] for b in listing["backups"]] == [manifest["id"]]
    assert listing["backups"][0]["verified"] is None

    code, result, err = cli(config, "backup", "verify", "latest", "--restore")
    assert code == 0, err
    assert result["ok"] and {c["name"] for c in result["checks"]} >= {"rows documents", "rows chunks", "restore", "amcheck",
                                                                       "service sanity"}
    code, listing, _ = cli(config, "backup", "list")
    assert listing["backups"][0]["verified"] is True and listing["backups"][0]["restore_tested"] is True
    # the scratch database is gone
    assert not run_sql(pg_cluster["dsn"], "SELECT 1 FROM pg_database WHERE datname LIKE 'ragops_verify_%'")

    code, shown, _ = cli(config, "backup", "show", manifest["id"])
    assert code == 0 and shown["manifest"]["sha256"] == manifest["sha256"] and shown["verification"]["ok"]

    target = scratch_dbs()
    # no terminal and no --yes: refused, nothing touched
    code, _, err = cli(config, "backup", "restore", "latest", "--target", _dsn(pg_cluster, target))
    assert code == 5 and "--yes" in err
    code, plan, err = cli(config, "backup", "restore", "latest", "--target", _dsn(pg_cluster, target), "--dry-run")
    assert code == 0, err
    assert plan["dry_run"] and "would stream" in plan["steps"][-1]
    assert run_sql(_dsn(pg_cluster, target), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    code, restored, err = cli(config, "backup", "restore", "latest", "--target", _dsn(pg_cluster, target), "--yes")
    assert code == 0, err
    assert restored["backup_id"] == manifest["id"] and restored["elapsed_seconds"] >= 0
    assert "restored" in err and "elapsed" in err          # progress with the elapsed time
    assert _fingerprint(_dsn(pg_cluster, target)) == _fingerprint(_dsn(pg_cluster, source_db))

    # --clean into the same target again works too
    code, _, err = cli(config, "backup", "restore", manifest["id"], "--target", _dsn(pg_cluster, target),
                       "--clean", "--yes")
    assert code == 0, err
    assert _fingerprint(_dsn(pg_cluster, target)) == _fingerprint(_dsn(pg_cluster, source_db))

    code, checked, _ = cli(config, "backup", "check", "--max-age", "1h", "--metrics-file", str(tmp_path / "m.prom"))
    assert code == 0 and checked["newest_id"] == manifest["id"]
    metrics = (tmp_path / "m.prom").read_text()
    assert "ragops_backup_last_success_timestamp_seconds" in metrics and "ragops_backup_last_size_bytes" in metrics
    code, _, err = cli(config, "backup", "check", "--max-age", "0s", "--metrics-file", str(tmp_path / "m.prom"))
    assert code == 3 and "older" not in err and "old" in err
    assert 'ragops_backup_check_ok{environment="test",project="backuptest"} 0' in (tmp_path / "m.prom").read_text()


def test_restore_with_create(cli, write_config, pg_cluster, tmp_path):
    name = _new_db(pg_cluster, "backup_create")
    try:
        _fill(_dsn(pg_cluster, name), documents=5, chunks_per_doc=2)
        config = write_config(name)
        code, manifest, err = cli(config, "backup", "create")
        assert code == 0, err
        before = _fingerprint(_dsn(pg_cluster, name))
        run_sql(pg_cluster["dsn"], f"DROP DATABASE {name} WITH (FORCE)")
        code, _, err = cli(config, "backup", "restore", manifest["id"], "--to-env", "test", "--create", "--yes")
        assert code == 0, err
        assert _fingerprint(_dsn(pg_cluster, name)) == before
    finally:
        run_sql(pg_cluster["dsn"], f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---- faults -------------------------------------------------------------------------------------

def test_flipped_byte_detected_and_refused(cli, write_config, source_db, scratch_dbs, pg_cluster, tmp_path):
    config = write_config(source_db)
    code, manifest, _ = cli(config, "backup", "create")
    assert code == 0
    obj = tmp_path / "store" / manifest["id"] / "backup.dump.zst.age"
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data))

    code, result, err = cli(config, "backup", "verify", manifest["id"])
    assert code == 3
    assert str(obj) in err and "SHA-256 mismatch" in err
    assert result["ok"] is False
    code, listing, _ = cli(config, "backup", "list")
    assert listing["backups"][0]["verified"] is False

    target = scratch_dbs()
    run_sql(_dsn(pg_cluster, target), "CREATE TABLE sentinel (x int)", "INSERT INTO sentinel VALUES (42)")
    code, _, err = cli(config, "backup", "restore", manifest["id"], "--target", _dsn(pg_cluster, target), "--yes")
    assert code == 1
    assert str(obj) in err and "not touched" in err
    tables = run_sql(_dsn(pg_cluster, target), "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert tables == [("sentinel",)]
    # the newest good backup is the corrupt one no longer
    code, _, err = cli(config, "backup", "check", "--max-age", "1h")
    assert code == 3


def test_wrong_key_fails_before_the_target_is_touched(cli, write_config, source_db, scratch_dbs, pg_cluster,
                                                      tmp_path, monkeypatch):
    config = write_config(source_db)
    code, manifest, _ = cli(config, "backup", "create")
    assert code == 0
    monkeypatch.setenv("BT_OTHER_KEY", OTHER_AGE_KEY)
    other = write_config(source_db, name="other.yaml", key_var="BT_OTHER_KEY")
    target = scratch_dbs()
    run_sql(_dsn(pg_cluster, target), "CREATE TABLE sentinel (x int)", "INSERT INTO sentinel VALUES (7)")
    code, _, err = cli(other, "backup", "restore", manifest["id"], "--target", _dsn(pg_cluster, target), "--yes")
    assert code == 1 and "wrong key" in err and "not touched" in err
    assert run_sql(_dsn(pg_cluster, target), "SELECT * FROM sentinel") == [(7,)]
    assert run_sql(_dsn(pg_cluster, target), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(1,)]
    code, result, err = cli(other, "backup", "verify", manifest["id"])
    assert code == 3 and "wrong key" in err


def test_killed_upload_leaves_nothing_listed_and_prune_removes_it(cli, write_config, pg_cluster, tmp_path):
    name = _new_db(pg_cluster, "backup_big")
    try:
        run_sql(_dsn(pg_cluster, name),
              "CREATE TABLE documents (id bigint PRIMARY KEY, title text)",
              "INSERT INTO documents SELECT g, md5(g::text) || md5((g * 7)::text) || md5(random()::text) "
              "FROM generate_series(1, 1500000) g")
        config = write_config(name)
        store = tmp_path / "store"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "ragops.cli.main", "-c", str(config), "backup", "create"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        partial = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            found = [p for p in store.rglob(".partial-*")] if store.exists() else []
            if found and found[0].stat().st_size > 1024 * 1024:
                partial = found[0]
                break
            time.sleep(0.01)
        assert partial is not None, "the upload never started (or finished too fast to kill)"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # pg_dump, its child, sees a closed pipe and exits by itself
        assert partial.exists()

        code, listing, _ = cli(config, "backup", "list")
        assert code == 0 and listing["backups"] == []
        code, _, err = cli(config, "backup", "show", "latest")
        assert code == 1
        code, plan, _ = cli(config, "backup", "prune")
        assert code == 0 and not plan["applied"]
        kinds = {(a["kind"], a["target"].split("/")[-1]) for a in plan["delete"]}
        assert ("pending-upload", partial.name) in kinds and ("orphan", "lock.json") in kinds
        assert partial.exists()
        code, plan, _ = cli(config, "backup", "prune", "--yes")
        assert code == 0 and plan["applied"]
        assert _objects(store) == []
    finally:
        run_sql(pg_cluster["dsn"], f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---- retention ----------------------------------------------------------------------------------

def test_retention_dry_run_then_real_run(cli, write_config, source_db, tmp_path):
    config = write_config(source_db, retention={"keep_last": 2, "hourly_hours": 0, "daily_days": 0})
    ids = []
    for _ in range(4):
        code, manifest, _ = cli(config, "backup", "create")
        assert code == 0
        ids.append(manifest["id"])
    assert ids == sorted(ids)
    code, result, _ = cli(config, "backup", "verify", ids[0])
    assert code == 0 and result["ok"]

    code, plan, _ = cli(config, "backup", "prune")
    assert code == 0 and plan["applied"] is False
    assert [a["target"] for a in plan["delete"] if a["kind"] == "backup"] == [ids[1]]
    assert "newest verified" in plan["keep"][ids[0]]
    code, listing, _ = cli(config, "backup", "list")
    assert [b["id"] for b in listing["backups"]] == ids          # a dry run deletes nothing

    code, plan, _ = cli(config, "backup", "prune", "--yes")
    assert code == 0 and plan["applied"] is True
    code, listing, _ = cli(config, "backup", "list")
    assert [b["id"] for b in listing["backups"]] == [ids[0], ids[2], ids[3]]
    assert not (tmp_path / "store" / ids[1]).exists()
    code, text, _ = cli(config, "backup", "list", json_out=False)
    assert code == 0


# ---- S3 (moto server over HTTP) -------------------------------------------------------------------

def _s3(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing-key-id", aws_secret_access_key=S3_SECRET)


def test_s3_roundtrip_with_second_copy(cli, write_config, source_db, scratch_dbs, pg_cluster, moto_server, aws_env):
    s3 = _s3(moto_server)
    bucket, second = f"bk-{secrets.token_hex(4)}", f"bk2-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=second)
    config = write_config(source_db, f"s3://{bucket}/prod/db", endpoint=moto_server,
                          copy_to=f"s3://{second}/copy",
                          lifecycle=[{"id": "archive", "days": 90, "storage_class": "GLACIER"}])
    code, manifest, err = cli(config, "backup", "create", "--label", "s3")
    assert code == 0, err
    assert manifest["copies"] == [f"s3://{second}/copy"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"prod/db/{manifest['id']}/manifest.json", f"prod/db/{manifest['id']}/backup.dump.zst.age"}
    assert f"copy/{manifest['id']}/backup.dump.zst.age" in {o["Key"] for o in s3.list_objects_v2(Bucket=second)["Contents"]}

    code, result, err = cli(config, "backup", "verify", "latest", "--restore")
    assert code == 0, err
    assert sum(c["name"].startswith("digest s3://") for c in result["checks"]) == 2

    target = scratch_dbs()
    code, _, err = cli(config, "backup", "restore", "latest", "--target", _dsn(pg_cluster, target), "--yes")
    assert code == 0, err
    assert _fingerprint(_dsn(pg_cluster, target)) == _fingerprint(_dsn(pg_cluster, source_db))

    # a damaged second copy is caught by verify, naming that object
    key = f"copy/{manifest['id']}/backup.dump.zst.age"
    body = bytearray(s3.get_object(Bucket=second, Key=key)["Body"].read())
    body[-5] ^= 0xFF
    s3.put_object(Bucket=second, Key=key, Body=bytes(body))
    code, _, err = cli(config, "backup", "verify", manifest["id"])
    assert code == 3 and f"s3://{second}/{key}" in err

    # an unfinished multipart upload (a killed backup) is not listed and prune aborts it
    orphan_key = "prod/db/20200101T000000.000Z/backup.dump.zst.age"
    upload = s3.create_multipart_upload(Bucket=bucket, Key=orphan_key)
    s3.upload_part(Bucket=bucket, Key=orphan_key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1024)
    code, listing, _ = cli(config, "backup", "list")
    assert [b["id"] for b in listing["backups"]] == [manifest["id"]]
    code, plan, _ = cli(config, "backup", "prune")
    assert [a["target"] for a in plan["delete"] if a["kind"] == "pending-upload"] == ["20200101T000000.000Z/backup.dump.zst.age"]
    code, plan, _ = cli(config, "backup", "prune", "--yes")
    assert code == 0
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")

    # lifecycle: a plan first, then applied
    code, plan, _ = cli(config, "backup", "lifecycle")
    assert code == 0 and plan["storages"][0]["add"] == ["archive"] and not plan["applied"]
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):   # no lifecycle configuration yet
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    code, plan, _ = cli(config, "backup", "lifecycle", "--yes")
    assert code == 0 and plan["applied"]
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rules[0]["ID"] == "archive" and rules[0]["Transitions"][0]["StorageClass"] == "GLACIER"
    assert rules[0]["Filter"]["Prefix"] == "prod/db/"
    code, plan, _ = cli(config, "backup", "lifecycle")
    assert plan["storages"][0]["unchanged"] == ["archive"]


class _FailingProxy:
    """A tiny HTTP proxy in front of moto that answers 500 to the first `failures` requests."""

    def __init__(self, upstream: str, failures: int):
        self.upstream = upstream.split("//", 1)[1]
        self.failures = failures
        self.seen = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.seen += 1
                    fail = proxy.seen <= proxy.failures
                if fail:
                    payload = b"<?xml version='1.0'?><Error><Code>InternalError</Code><Message>injected</Message></Error>"
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_s3_500s_are_retried_then_fail_clearly(cli, write_config, source_db, moto_server, aws_env):
    s3 = _s3(moto_server)
    bucket = f"flaky-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    proxy = _FailingProxy(moto_server, failures=3)
    try:
        config = write_config(source_db, f"s3://{bucket}/b", endpoint=proxy.url)
        code, manifest, err = cli(config, "backup", "create")
        assert code == 0, err                              # three 500s retried away
        assert proxy.seen > 3
        proxy.failures = 10 ** 6                           # now S3 is down for good
        started = time.monotonic()
        code, _, err = cli(config, "backup", "create")
        assert code == 1
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and f"s3://{bucket}/b/" in lines[0] and "attempts" in lines[0] and "500" in lines[0]
        assert time.monotonic() - started < 60
        assert "Traceback" not in err
    finally:
        proxy.close()
    code, listing, _ = cli(write_config(source_db, f"s3://{bucket}/b", endpoint=moto_server), "backup", "list")
    assert [b["id"] for b in listing["backups"]] == [manifest["id"]]


def test_s3_storage_multipart_streams_and_aborts(moto_server, aws_env):
    """Objects larger than a part go up as a multipart upload and come back in ranged reads; a
    failed write aborts its upload, leaving nothing behind."""
    import hashlib

    from ragops.backup.storage import PART_SIZE, S3Storage, put_stream

    s3 = _s3(moto_server)
    bucket = f"mp-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    storage = S3Storage(f"s3://{bucket}/p", bucket, "p", endpoint_url=moto_server, region="us-east-1",
                        access_key_id=None, secret_access_key=None)
    chunks = [os.urandom(1024 * 1024) for _ in range(2 * PART_SIZE // (1024 * 1024) + 3)]
    size, digest = put_stream(storage, "x/big", iter(chunks))
    assert size == sum(map(len, chunks))
    back = hashlib.sha256()
    got = 0
    for chunk in storage.read_chunks("x/big"):
        back.update(chunk)
        got += len(chunk)
    assert got == size and back.hexdigest() == digest == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert b"".join(storage.read_chunks("x/big", limit=100)) == chunks[0][:100]
    assert [o.key for o in storage.list()] == ["x/big"]

    def failing():
        yield from chunks[:PART_SIZE // (1024 * 1024) + 1]       # one part uploaded, then a failure
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        put_stream(storage, "x/failed", failing())
    assert storage.pending_uploads() == [] and [o.key for o in storage.list()] == ["x/big"]


# ---- concurrent backups (issue 24: two at once printed one id, one was lost) ----------------------

def test_ten_concurrent_backups_are_ten_listed_and_verified(cli, write_config, source_db, tmp_path):
    config = write_config(source_db)
    procs = [subprocess.Popen([sys.executable, "-m", "ragops.cli.main", "-c", str(config), "-q", "-o", "json",
                               "backup", "create", "--label", f"c{n}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(10)]
    outputs = [(p.wait(timeout=240), *p.communicate()) for p in procs]
    assert [code for code, _, _ in outputs] == [0] * 10, [err for _, _, err in outputs]
    created = {json.loads(out)["id"]: json.loads(out)["sha256"] for _, out, _ in outputs}
    assert len(created) == 10, "every backup printed an id of its own"
    code, listing, _ = cli(config, "backup", "list")
    assert code == 0
    assert {b["id"]: b["label"] for b in listing["backups"]} == {
        json.loads(out)["id"]: f"c{n}" for n, (_, out, _) in enumerate(outputs)}
    for backup_id, digest in created.items():
        code, result, err = cli(config, "backup", "verify", backup_id)
        assert code == 0 and result["ok"], err
        code, shown, _ = cli(config, "backup", "show", backup_id)
        assert shown["manifest"]["sha256"] == digest


def test_a_taken_backup_id_is_refused_by_the_storage(monkeypatch, tmp_path, moto_server, aws_env):
    """Two backups given the same id (a clock, a race): the second is refused before it writes
    data, and a manifest is never replaced, on file:// (link) and on s3:// (If-None-Match: *)."""
    from ragops.backup import catalog, create
    from ragops.backup.storage import FileStorage, S3Storage
    from ragops.errors import OperationFailed

    s3 = _s3(moto_server)
    bucket = f"excl-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    stores = [FileStorage(f"file://{tmp_path}/s", tmp_path / "s"),
              S3Storage(f"s3://{bucket}/p", bucket, "p", endpoint_url=moto_server, region="us-east-1",
                        access_key_id=None, secret_access_key=None)]
    taken = "20250101T000000.000Z-abcdef"
    monkeypatch.setattr(create, "new_backup_id", lambda: taken)
    for storage in stores:
        assert storage.put_bytes_if_absent("a/manifest.json", b"first")
        assert not storage.put_bytes_if_absent("a/manifest.json", b"second")
        assert storage.get_bytes("a/manifest.json") == b"first"
        assert [o.key for o in storage.list()] == ["a/manifest.json"], "no temporary object is left"

        streamed: list[str] = []

        def stream(backup_id, started, second=None, storage=storage, streamed=streamed):
            streamed.append(backup_id)
            storage.put_bytes(f"{backup_id}/{catalog.DATA}", f"data {len(streamed)}".encode())
            if second:
                with pytest.raises(OperationFailed, match="is taken"):   # while the first runs
                    create.commit_backup(storage, None, None, "dumping", "dumped", stream)
            return _manifest(backup_id, str(len(streamed)))

        create.commit_backup(storage, None, None, "dumping", "dumped",
                             lambda i, s, stream=stream: stream(i, s, second=True))
        with pytest.raises(OperationFailed, match="is taken"):             # after the first finished
            create.commit_backup(storage, None, None, "dumping", "dumped", stream)
        assert streamed == [taken], "a refused backup writes nothing"
        assert storage.get_bytes(f"{taken}/{catalog.DATA}") == b"data 1"
        assert json.loads(storage.get_bytes(f"{taken}/{catalog.MANIFEST}"))["sha256"] == "1"
        assert sorted(o.key for o in storage.list() if o.key.startswith(taken)) == [
            f"{taken}/{catalog.DATA}", f"{taken}/{catalog.MANIFEST}"]


def _manifest(backup_id: str, digest: str):
    from ragops.backup.catalog import Manifest

    return Manifest(id=backup_id, project="p", environment="e", database="d", server_version="16",
                    started_at="2025-01-01T00:00:00Z", finished_at="2025-01-01T00:00:01Z", duration_seconds=1,
                    wal_lsn="0/0", wal_file=None, raw_bytes=1, stored_bytes=1, sha256=digest, compression={},
                    encryption={}, row_counts={}, ragops_version="0")
