"""The smoke suite: what must work before a color gets traffic, and after every recovery.

health, readiness, version, a request without API key refused, security headers present, and a
document round trip (upload, query finds it, delete). Used by `ragops smoke`, by deploys against
the idle color (preview, before it gets traffic), by failover and by runbooks.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SECURITY_HEADERS = ("strict-transport-security", "content-security-policy", "x-frame-options",
                    "x-content-type-options")


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""
    ms: float = 0.0


@dataclass
class SmokeReport:
    url: str
    passed: bool = True
    checks: list[Check] = field(default_factory=list)
    version: str | None = None

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


def smoke_url(url: str, api_key: str, *, health_path: str = "/healthz", readiness_path: str = "/readyz",
              expect_version: str | None = None, timeout: float = 10.0) -> SmokeReport:
    import httpx

    report = SmokeReport(url=url.rstrip("/"))
    headers = {"X-API-Key": api_key}

    def check(name: str, func: Callable[[], tuple[bool, str, Any]]) -> Any:
        start = time.monotonic()
        try:
            ok, detail, value = func()
        except httpx.HTTPError as exc:
            ok, detail, value = False, f"{type(exc).__name__}: {exc}"[:200], None
        report.checks.append(Check(name, bool(ok), detail, round((time.monotonic() - start) * 1000, 1)))
        return value if ok else None

    with httpx.Client(base_url=report.url, timeout=timeout) as client:
        def health():
            r = client.get(health_path)
            return r.status_code == 200, f"{health_path} -> {r.status_code}", None

        def ready():
            r = client.get(readiness_path)
            return r.status_code == 200, f"{readiness_path} -> {r.status_code} {r.text[:120] if r.status_code != 200 else ''}".strip(), None

        def version():
            r = client.get("/version")
            body = r.json() if r.status_code == 200 else {}
            got = body.get("version")
            ok = r.status_code == 200 and got and (expect_version is None or got == expect_version)
            detail = f"version {got}" + (f" (expected {expect_version})" if expect_version and got != expect_version else "")
            return ok, detail, got

        def refused_without_key():
            r = client.post("/api/v1/query", json={"query": "smoke"})
            return r.status_code == 401, f"no X-API-Key -> {r.status_code} (expected 401)", None

        def security_headers():
            r = client.get("/version")
            missing = [h for h in SECURITY_HEADERS if h not in r.headers]
            detail = ("missing: " + ", ".join(missing)) if missing else "HSTS, CSP, X-Frame-Options, X-Content-Type-Options"
            return not missing, detail, None

        token = f"smoke{uuid.uuid4().hex[:12]}"

        def upload():
            r = client.post("/api/v1/documents", headers=headers,
                            json={"title": f"smoke {token}",
                                  "content": f"The ragops smoke marker is {token}. It proves ingestion works."})
            doc_id = r.json().get("id") if r.status_code in (200, 201) else None
            return doc_id is not None, f"POST /api/v1/documents -> {r.status_code}", doc_id

        def query(doc_id):
            def run():
                r = client.post("/api/v1/query", headers=headers, json={"query": f"smoke marker {token}", "top_k": 3})
                results = r.json().get("results", []) if r.status_code == 200 else []
                found = any(str(item.get("document_id")) == str(doc_id) for item in results)
                return found, f"query -> {r.status_code}, {'found' if found else 'not found'} in {len(results)} results", None
            return run

        def delete(doc_id):
            def run():
                r = client.delete(f"/api/v1/documents/{doc_id}", headers=headers)
                gone = client.get(f"/api/v1/documents/{doc_id}", headers=headers).status_code == 404
                detail = f"DELETE -> {r.status_code}, then GET -> {'404' if gone else 'still there'}"
                return r.status_code in (200, 204) and gone, detail, None
            return run

        check("health", health)
        check("readiness", ready)
        report.version = check("version", version)
        check("auth required", refused_without_key)
        check("security headers", security_headers)
        doc_id = check("upload", upload)
        if doc_id is not None:
            check("query finds it", query(doc_id))
            check("delete", delete(doc_id))
    report.passed = all(c.passed for c in report.checks)
    return report


def wait_serving(url: str, path: str, timeout: float = 15.0) -> bool:
    """Until `url` + `path` answers 200 (a router whose health check marked a color down while the
    database failed over serves it again within its check interval), at most `timeout` seconds."""
    from ragops import loopback
    from ragops.waiting import wait_until

    def answers() -> bool:
        try:
            return loopback.get(url.rstrip("/") + path, timeout=2.0).status_code == 200
        except loopback.HttpError:
            return False

    return wait_until(answers, timeout)


def run_smoke(config, url: str | None = None, color: str | None = None, platform=None,
              expect_version: str | None = None) -> SmokeReport:
    """Smoke-test the environment through its router (default), one color directly, or a URL."""
    from ragops.db.connect import api_keys

    if url is None:
        if platform is None:
            from ragops.platforms import get_platform

            platform = get_platform(config)
        url = platform.color_url(color) if color else platform.router_url()
    service = config.service
    key = api_keys(config)[0]
    report = smoke_url(url, key, health_path=service.health_path,
                       readiness_path=service.readiness_path, expect_version=expect_version)
    golden_check(config, report, key)
    return report


def golden_check(config, report: SmokeReport, api_key: str) -> None:
    """smoke.golden: recall@k of the golden queries on the same URL (ragops/golden.py)."""
    import httpx

    from ragops import golden

    if not config.env.smoke.golden:
        return
    started = time.monotonic()
    try:
        with httpx.Client(base_url=report.url, timeout=10, headers={"X-API-Key": api_key}) as client:
            outcome = golden.check(config, client)
    except httpx.HTTPError as exc:
        outcome = False, f"{type(exc).__name__}: {exc}"[:200]
    if outcome is None:
        return
    ok, detail = outcome
    report.checks.append(Check("golden queries", ok, detail, round((time.monotonic() - started) * 1000, 1)))
    report.passed = report.passed and ok
