"""The bundled RAG service against real PostgreSQL, as real processes over real HTTP.

Each database here gets its own app role (not a superuser) and is migrated with
ragops.pg.migrate, the way the local platform does it.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ragops.errors import OperationFailed
from ragops.netutil import free_port
from ragops.pg import migrate, pgctl
from tests.conftest import primary_and_replica

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SERVICE_DIR = REPO / "service"
MIGRATIONS = SERVICE_DIR / "migrations"
KEYS = ("key-one-" + secrets.token_hex(4), "key-two-" + secrets.token_hex(4))
SECURITY_HEADERS = ("strict-transport-security", "content-security-policy", "x-frame-options",
                    "x-content-type-options")


# --- helpers -------------------------------------------------------------------------------------

def make_database(admin_dsn: str, tag: str) -> dict:
    """CREATE ROLE + CREATE DATABASE as the platform does; returns the conninfos to use."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"rag_{tag}_{secrets.token_hex(3)}"
    password = "app-" + secrets.token_hex(8)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name)))
    return {"name": name, "password": password,
            "admin": make_conninfo(admin_dsn, dbname=name),
            "app": make_conninfo(admin_dsn, dbname=name, user=name, password=password)}


class Proc:
    """A ragservice process (serve or worker) on a free port, stopped by PID."""

    def __init__(self, module: str, env: dict[str, str], log_dir: Path, name: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"{name}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        full_env.update({"PYTHONPATH": str(SERVICE_DIR), "RAG_API_KEYS": ",".join(KEYS),
                         "RAG_ACCESS_LOG": "0", **env})
        args = [sys.executable, "-m", module]
        if module == "ragservice.serve":
            args += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("wb") as handle:
            self.proc = subprocess.Popen(args, cwd=SERVICE_DIR, env=full_env, stdout=handle,
                                         stderr=subprocess.STDOUT)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_healthy(self, timeout: float = 30) -> Proc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"service exited early:\n{self.logs()}"
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"service not healthy within {timeout}s:\n{self.logs()}")

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def api(key: str = KEYS[0]) -> dict:
    return {"X-API-Key": key}


def metric(url: str, name: str, **labels) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    body = httpx.get(url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def migrated_db(pg_cluster):
    database = make_database(pg_cluster["dsn"], "main")
    migrate.apply_migrations(database["admin"], MIGRATIONS, app_user=database["name"])
    return database


@pytest.fixture(scope="module")
def services(migrated_db, tmp_path_factory):
    """Three services started side by side (start-up is the slow part): a normal one, a 'bad
    version' with injected faults, and a slow one for the SIGTERM test."""
    logs = tmp_path_factory.mktemp("service-logs")
    common = {"RAG_DATABASE_URL": migrated_db["app"]}
    procs = {
        "main": Proc("ragservice.serve", {**common, "RAG_VERSION": "v-test", "RAG_COLOR": "blue",
                                          "RAG_CORS_ORIGINS": "https://app.example"}, logs, "main"),
        "bad": Proc("ragservice.serve", {**common, "RAG_VERSION": "v-bad", "RAG_COLOR": "green",
                                         "RAG_FAULT_ERROR_RATE": "0.5", "RAG_FAULT_READINESS_FAIL": "1"},
                    logs, "bad"),
        "slow": Proc("ragservice.serve", {**common, "RAG_VERSION": "v-slow", "RAG_FAULT_LATENCY_MS": "1500"},
                     logs, "slow"),
    }
    try:
        for proc in procs.values():
            proc.wait_healthy()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


# --- migrations ----------------------------------------------------------------------------------

def test_migrations_apply_once_as_the_app_role(pg_cluster):
    import psycopg

    database = make_database(pg_cluster["dsn"], "mig")
    names = [p.name for p in sorted(MIGRATIONS.glob("*.sql"))]
    assert migrate.pending_migrations(database["admin"], MIGRATIONS) == names
    assert migrate.apply_migrations(database["admin"], MIGRATIONS, app_user=database["name"]) == names
    assert migrate.apply_migrations(database["admin"], MIGRATIONS, app_user=database["name"]) == []
    assert migrate.pending_migrations(database["admin"], MIGRATIONS) == []
    with psycopg.connect(database["admin"]) as conn:
        owners = dict(conn.execute(
            "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'").fetchall())
        versions = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        column = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'").fetchone()[0]
    assert set(owners) >= {"documents", "chunks", "ingest_jobs", "schema_migrations"}
    assert set(owners.values()) == {database["name"]}
    assert versions[-1] == (migrate.latest_version(MIGRATIONS), names[-1])
    assert column == "vector(256)"   # the pgserver build ships pgvector


def test_failed_migration_names_the_file_and_hides_the_password(pg_cluster, tmp_path):
    database = make_database(pg_cluster["dsn"], "bad")
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE t (id int);\n")
    (tmp_path / "0002_broken.sql").write_text("-- ragops: breaking\nALTER TABLE missing ADD COLUMN x int;\n")
    with pytest.raises(OperationFailed) as failure:
        migrate.apply_migrations(database["admin"], tmp_path, app_user=database["name"])
    message = failure.value.message
    assert "0002_broken.sql" in message and 'relation "missing" does not exist' in message
    assert pg_cluster["password"] not in message
    # the good file stays applied, the broken one is still pending (its transaction rolled back)
    assert migrate.pending_migrations(database["admin"], tmp_path) == ["0002_broken.sql"]
    assert migrate.breaking_migrations(["0002_broken.sql"], tmp_path) == ["0002_broken.sql"]

    bad_dsn = database["admin"].replace(pg_cluster["password"], "wrong-" + pg_cluster["password"])
    with pytest.raises(OperationFailed) as failure:
        migrate.apply_migrations(bad_dsn, tmp_path)
    assert "cannot connect" in failure.value.message and pg_cluster["password"] not in failure.value.message


# --- the API -------------------------------------------------------------------------------------

def test_upload_query_get_delete(services):
    url = services["main"].url
    fact = "The Zephyr reactor is cooled by liquid sodium pumped through titanium loops."
    filler = " ".join(f"Section {i} describes routine maintenance of the visitor centre." for i in range(30))
    created = httpx.post(url + "/api/v1/documents", headers=api(), timeout=10,
                         json={"title": "Zephyr", "content": f"{filler}\n\n{fact}\n\n{filler}",
                               "metadata": {"source": "test"}})
    assert created.status_code == 201, created.text
    doc = created.json()
    assert doc["title"] == "Zephyr" and doc["chunks"] > 1
    other = httpx.post(url + "/api/v1/documents?title=Bees", headers={**api(), "Content-Type": "text/plain"},
                       content="Honey bees communicate with a waggle dance. Hives keep a steady temperature.",
                       timeout=10)
    assert other.status_code == 201 and other.json()["title"] == "Bees"

    found = httpx.post(url + "/api/v1/query", headers=api(), json={"query": "What cools the Zephyr reactor?",
                                                                   "top_k": 3}, timeout=10)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["results"][0]["document_id"] == doc["id"]
    assert "liquid sodium" in body["results"][0]["content"]
    assert "liquid sodium" in body["answer"]
    assert set(body["results"][0]) >= {"document_id", "chunk_id", "content", "score"}
    punctuation = httpx.post(url + "/api/v1/documents", headers=api(), json={"content": "... !!! ..."}, timeout=5)
    assert punctuation.status_code == 201
    stop_words = httpx.post(url + "/api/v1/query", headers=api(), json={"query": "what is the"}, timeout=5)
    assert stop_words.status_code == 200 and stop_words.json() == {"query": "what is the", "results": [],
                                                                   "answer": ""}
    anything = httpx.post(url + "/api/v1/query", headers=api(), json={"query": "bees", "top_k": 50}, timeout=5)
    assert anything.status_code == 200, anything.text   # the zero-vector chunk scores 0, not NaN

    fetched = httpx.get(f"{url}/api/v1/documents/{doc['id']}", headers=api(), timeout=5)
    assert fetched.status_code == 200 and fetched.json()["metadata"] == {"source": "test"}
    assert httpx.delete(f"{url}/api/v1/documents/{doc['id']}", headers=api(), timeout=5).status_code == 204
    assert httpx.get(f"{url}/api/v1/documents/{doc['id']}", headers=api(), timeout=5).status_code == 404
    assert httpx.get(f"{url}/api/v1/documents/not-a-uuid", headers=api(), timeout=5).status_code == 404
    empty = httpx.post(url + "/api/v1/documents", headers=api(), json={"content": "  "}, timeout=5)
    assert empty.status_code == 422 and "error" in empty.json()


def test_uploads_postgresql_cannot_store_are_422_not_500(services):
    url = services["main"].url
    cases = [("", {"Content-Type": "application/json"}, b'{"title": "t", "content": "a\\u0000b"}', "content"),
             ("?async=true", {"Content-Type": "application/json"}, b'{"content": "x", "title": "\\ud800"}', "title"),
             ("?title=ok", {"Content-Type": "text/plain"}, b"nul\x00byte", "content")]
    for query, headers, body, field in cases:
        response = httpx.post(url + "/api/v1/documents" + query, headers={**api(), **headers}, content=body, timeout=5)
        assert response.status_code == 422 and response.json()["error"].startswith(f"{field}: "), response.text


def test_api_key_required_and_security_headers(services):
    url = services["main"].url
    missing = httpx.post(url + "/api/v1/query", json={"query": "x"}, timeout=5)
    wrong = httpx.post(url + "/api/v1/query", json={"query": "x"}, headers=api("nope"), timeout=5)
    second = httpx.post(url + "/api/v1/query", json={"query": "x"}, headers=api(KEYS[1]), timeout=5)
    assert missing.status_code == 401 and missing.json() == {"error": "missing X-API-Key header"}
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid API key"}
    assert second.status_code == 200
    for response in (missing, second, httpx.get(url + "/healthz"), httpx.get(url + "/nowhere")):
        for header in SECURITY_HEADERS:
            assert header in response.headers, (response.url, header)
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-rag-version"] == "v-test" and response.headers["x-rag-color"] == "blue"
    for public in ("/healthz", "/readyz", "/version", "/metrics"):
        assert httpx.get(url + public, timeout=5).status_code == 200, public

    preflight = httpx.options(url + "/api/v1/query", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-API-Key"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    foreign = httpx.options(url + "/api/v1/query", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in foreign.headers


def test_version_and_metrics(services):
    url = services["main"].url
    assert httpx.get(url + "/version").json() == {"version": "v-test", "color": "blue",
                                                  "schema_version": migrate.latest_version(MIGRATIONS)}
    route = "/api/v1/documents/{id}"
    before = metric(url, "rag_http_requests_total", route=route, status="404", method="GET") or 0
    for _ in range(3):
        httpx.get(url + "/api/v1/documents/00000000-0000-0000-0000-000000000000", headers=api())
    assert metric(url, "rag_http_requests_total", route=route, status="404", method="GET") == before + 3
    assert metric(url, "rag_http_request_duration_seconds_count", route=route) >= 3
    assert metric(url, "rag_http_requests_in_flight") == 0
    assert metric(url, "rag_build_info", version="v-test", color="blue") == 1
    # invented methods and paths mint no new series (curl -X ZZTESTA .../api/v1/query)
    other = metric(url, "rag_http_requests_total", route="/api/v1/query", method="other", status="405") or 0
    for method in ("ZZTESTA", "ZZTESTB"):
        httpx.request(method, url + "/api/v1/query", headers=api(), timeout=5)
    httpx.get(url + "/made-up/" + secrets.token_hex(4), timeout=5)
    assert metric(url, "rag_http_requests_total", route="/api/v1/query", method="other", status="405") == other + 2
    assert metric(url, "rag_http_requests_total", method="ZZTESTA") is None
    assert metric(url, "rag_http_requests_total", route="unmatched", method="GET", status="404") >= 1


def test_async_ingestion_by_the_worker(services, migrated_db, tmp_path):
    url = services["main"].url
    queued = httpx.post(url + "/api/v1/documents?async=true", headers=api(), timeout=10,
                        json={"title": "Async", "content": "The quokka colony on Rottnest island counts 12000 animals."})
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    doc_id = queued.json()["id"]
    assert httpx.get(f"{url}/api/v1/documents/{doc_id}", headers=api()).json()["status"] == "queued"
    # the autoscaler's metric counts it (refreshed every 2 s in the background)
    assert wait_for(lambda: (metric(url, "rag_ingest_queue_length") or 0) >= 1, 8)
    assert metric(url, "rag_ingest_oldest_job_age_seconds") >= 0

    worker = Proc("ragservice.worker", {"RAG_DATABASE_URL": migrated_db["app"],
                                        "RAG_WORKER_POLL_SECONDS": "0.2"}, tmp_path, "worker")
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            status = httpx.get(f"{url}/api/v1/documents/{doc_id}", headers=api()).json()
            if status["status"] != "queued":
                break
            assert worker.proc.poll() is None, worker.logs()
            time.sleep(0.2)
        assert status["status"] == "ready" and status["chunks"] == 1, worker.logs()
        answer = httpx.post(url + "/api/v1/query", headers=api(), json={"query": "How many quokka on Rottnest?"})
        assert "12000" in answer.json()["answer"]
        assert wait_for(lambda: metric(url, "rag_ingest_queue_length") == 0, 8)   # drained
    finally:
        assert worker.stop() == 0, worker.logs()


# --- fault injection, readiness, rate limit, graceful shutdown ---------------------------------

def test_fault_injection(services):
    url = services["bad"].url
    ready = httpx.get(url + "/readyz")
    assert ready.status_code == 503 and "RAG_FAULT_READINESS_FAIL" in ready.json()["reason"]
    with httpx.Client(base_url=url, timeout=5) as client:
        codes = [client.get("/version").status_code for _ in range(80)]
        health = {client.get("/healthz").status_code for _ in range(20)}
    assert set(codes) == {200, 500}
    assert 20 <= codes.count(500) <= 60   # p = 0.5 over 80 requests: far outside 4 sigma otherwise
    assert health == {200}
    assert metric(url, "rag_http_requests_total", route="/version", status="500") == codes.count(500)


def test_readiness_follows_migrations_and_rate_limit(pg_cluster, tmp_path):
    database = make_database(pg_cluster["dsn"], "fresh")
    service = Proc("ragservice.serve", {"RAG_DATABASE_URL": database["app"], "RAG_RATE_LIMIT_PER_MINUTE": "3"},
                   tmp_path, "fresh").wait_healthy()
    try:
        before = httpx.get(service.url + "/readyz")
        assert before.status_code == 503 and "migrations not applied" in before.json()["reason"]
        migrate.apply_migrations(database["admin"], MIGRATIONS, app_user=database["name"])
        after = httpx.get(service.url + "/readyz")
        assert after.status_code == 200, after.text
        assert after.json()["schema_version"] == migrate.latest_version(MIGRATIONS)

        missing = f"{service.url}/api/v1/documents/00000000-0000-0000-0000-000000000000"
        codes = [httpx.get(missing, headers=api()).status_code for _ in range(4)]
        assert codes == [404, 404, 404, 429]
        limited = httpx.get(missing, headers=api())
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # the limit is per key: the other key still has its budget
        assert httpx.get(missing, headers=api(KEYS[1])).status_code == 404
    finally:
        assert service.stop() == 0, service.logs()


def test_sigterm_lets_in_flight_requests_finish(services):
    slow = services["slow"]
    result = {}

    def call():
        started = time.monotonic()
        response = httpx.get(slow.url + "/version", timeout=10)
        result.update(status=response.status_code, body=response.json(), seconds=time.monotonic() - started)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 5
    while metric(slow.url, "rag_http_requests_in_flight") != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(slow.url, "rag_http_requests_in_flight") == 1
    slow.proc.send_signal(signal.SIGTERM)
    thread.join(10)
    assert result.get("status") == 200 and result["body"]["version"] == "v-slow"
    assert result["seconds"] >= 1.4
    assert slow.proc.wait(10) == 0, slow.logs()


# --- failover ------------------------------------------------------------------------------------

@pytest.fixture
def own_cluster():
    """A primary + replica of our own: this test promotes the replica (never the shared one)."""
    with primary_and_replica("ragservice-failover", names=("fo-primary", "fo-replica")) as cluster:
        yield cluster


def test_service_follows_a_promotion(own_cluster, tmp_path):
    import psycopg

    primary, replica = own_cluster["primary"], own_cluster["replica"]
    database = make_database(own_cluster["dsn"], "fo")
    migrate.apply_migrations(database["admin"], MIGRATIONS, app_user=database["name"])
    multi_host = (f"host=127.0.0.1,127.0.0.1 port={primary.port},{replica.port} dbname={database['name']} "
                  f"user={database['name']} password={database['password']} "
                  f"target_session_attrs=read-write connect_timeout=3")
    service = Proc("ragservice.serve", {"RAG_DATABASE_URL": multi_host}, tmp_path, "failover").wait_healthy()
    try:
        created = httpx.post(service.url + "/api/v1/documents", headers=api(), timeout=10,
                             json={"title": "Before", "content": "The lighthouse keeper's cat is named Biscuit."})
        assert created.status_code == 201
        assert httpx.get(service.url + "/readyz").status_code == 200
        replica_dsn = database["app"].replace(f"port={primary.port}", f"port={replica.port}")
        assert pgctl.wait_until(lambda: psycopg.connect(replica_dsn).execute(
            "SELECT count(*) FROM documents").fetchone()[0] == 1, 10), "the replica did not catch up"

        primary.stop(mode="immediate")   # the primary crashes
        assert httpx.get(service.url + "/readyz", timeout=15).status_code == 503
        pgctl.run_pg([replica.pg("pg_ctl"), "-D", str(replica.data_dir), "-w", "promote"])

        def serving() -> bool:
            response = httpx.post(service.url + "/api/v1/query", headers=api(), timeout=15,
                                  json={"query": "What is the cat named?"})
            return response.status_code == 200 and "Biscuit" in response.json()["answer"]

        assert pgctl.wait_until(serving, 20, interval=0.5), service.logs()
        assert httpx.get(service.url + "/readyz").status_code == 200
        after = httpx.post(service.url + "/api/v1/documents", headers=api(), timeout=10,
                           json={"content": "Written after the promotion."})
        assert after.status_code == 201
    finally:
        assert service.stop() == 0, service.logs()


# --- without pgvector ----------------------------------------------------------------------------

def test_portable_fallback_without_pgvector(pg_cluster):
    """Migrated by a non-superuser, `vector` cannot be created: chunks use real[] scored in SQL."""
    import psycopg

    sys.path.insert(0, str(SERVICE_DIR))
    from ragservice import db

    database = make_database(pg_cluster["dsn"], "plain")
    events: list[str] = []
    assert migrate.apply_migrations(database["app"], MIGRATIONS, progress=events.append)
    assert any("real[]" in e for e in events)
    with psycopg.connect(database["app"]) as conn:
        column = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'").fetchone()[0]
    assert column == "real[]"

    pool = db.Pool(database["app"], size=2)
    try:
        fact = db.create_document(pool, "Owls", "Barn owls swallow their prey whole.", {}, queued=False)
        db.create_document(pool, "Tea", "Green tea is steeped at eighty degrees.", {}, queued=False)
        results = db.search(pool, "what do barn owls swallow", 2)
        assert results[0]["document_id"] == fact["id"] and results[0]["score"] > results[1]["score"]
        assert db.readiness(pool, migrate.latest_version(MIGRATIONS))[0] is True
    finally:
        pool.close()


# --- search on a large, repetitive corpus ---------------------------------------------------------

def test_exact_match_found_among_many_near_duplicate_chunks(pg_cluster, monkeypatch):
    """~20k chunks written from a handful of drill texts (a small vocabulary): the HNSW graph of
    identical vectors is a trap a greedy walk cannot leave, so an approximate-only search answered
    with zero-scored drill chunks instead of the one document that has the query's words."""
    import psycopg

    sys.path.insert(0, str(SERVICE_DIR))
    from ragservice import db, text

    database = make_database(pg_cluster["dsn"], "dups")
    migrate.apply_migrations(database["admin"], MIGRATIONS, app_user=database["name"])
    drills = [f"Drill {n}: probe ok, latency nominal, replica lag nominal." for n in range(8)]
    vectors = ["[" + ",".join(f"{v:.6g}" for v in text.embed(d)) + "]" for d in drills]
    pool = db.Pool(database["app"], size=2)
    try:
        target = db.create_document(pool, "Glacier", "Glacier meltwater feeds the turbine hall in spring. "
                                    "Operators log the intake temperature hourly.", {}, queued=False)
        with psycopg.connect(database["app"], autocommit=True) as conn:
            drill_doc = conn.execute("INSERT INTO documents (title, content) VALUES ('drills', 'drills') "
                                     "RETURNING id").fetchone()[0]
            # one statement: 20k rows cycling through the drill texts (and their real embeddings)
            conn.execute(
                "INSERT INTO chunks (document_id, ordinal, content, embedding) "
                "SELECT %(doc)s, g, (%(texts)s::text[])[1 + g %% %(n)s], (%(vecs)s::text[])[1 + g %% %(n)s]::vector "
                "FROM generate_series(0, 19999) AS g",
                {"doc": drill_doc, "texts": drills, "vecs": vectors, "n": len(drills)})
            conn.execute("ANALYZE chunks")
        for exact_below in (db.EXACT_SEARCH_MAX_CHUNKS, 0):   # 0: HNSW first, as on a huge corpus
            monkeypatch.setattr(db, "EXACT_SEARCH_MAX_CHUNKS", exact_below)
            started = time.monotonic()
            results = db.search(pool, "glacier turbine intake", 10)
            elapsed = time.monotonic() - started
            assert results and results[0]["document_id"] == target["id"], [r["score"] for r in results]
            assert results[0]["score"] > 0.3
            assert elapsed < 5, f"search took {elapsed:.1f}s"
        drill = db.search(pool, "drill probe latency", 3)   # the common case still answers from HNSW
        assert [r["document_id"] for r in drill] == [str(drill_doc)] * 3 and drill[0]["score"] > 0.3
    finally:
        pool.close()


# --- the OpenAPI schema against the running service ------------------------------------------------

def test_openapi_schema_holds_under_a_fuzzer(pg_cluster, tmp_path):
    """schemathesis generates requests from /openapi.json (uploads included, through the
    documented request body) and checks every response against the schema."""
    import shutil

    import psycopg

    from tests.conftest import need

    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    need(st is not None, "schemathesis (pip install schemathesis)")
    database = make_database(pg_cluster["dsn"], "fuzz")
    migrate.apply_migrations(database["admin"], MIGRATIONS, app_user=database["name"])
    service = Proc("ragservice.serve", {"RAG_DATABASE_URL": database["app"], "RAG_RATE_LIMIT_PER_MINUTE": "0"},
                   tmp_path, "fuzz").wait_healthy()
    try:
        started = time.monotonic()
        run = subprocess.run(
            [st, "run", service.url + "/openapi.json", "--checks", "all", "--max-examples", "25",
             "--seed", "1", "--workers", "1", "--generation-database", "none", "--no-color",
             "--request-timeout", "10", "-H", f"X-API-Key: {KEYS[0]}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120)
        output = run.stdout[-6000:] + run.stderr[-2000:]
        assert run.returncode == 0, output
        assert time.monotonic() - started < 60, output
        with psycopg.connect(database["app"]) as conn:   # the fuzzer's uploads got through
            stored = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        assert stored > 0, output
    finally:
        assert service.stop() == 0, service.logs()
