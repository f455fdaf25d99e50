"""Edge and security: the guide's defence in depth and security checklist, checked through the
public router and on this machine (processes, state files, secret files)."""
from __future__ import annotations

import os
import ssl
import stat
from datetime import UTC

from ragops.audit.facts import Facts, Unobservable
from ragops.audit.model import Outcome, check, failed, not_applicable, partial, passed

FALLBACK_ROUTES = [("POST", "/api/v1/query"), ("POST", "/api/v1/documents"), ("GET", "/api/v1/documents")]
REQUIRED_HEADERS = ("strict-transport-security", "content-security-policy", "x-frame-options", "x-content-type-options")
WRONG_KEY = "ragops-audit-not-a-key"


def api_routes(facts: Facts) -> list[tuple[str, str]]:
    """Every /api route of the service's OpenAPI schema (path parameters filled with a dummy)."""
    try:
        import json

        schema = json.loads(facts.http("/openapi.json").body) if facts.http("/openapi.json").status == 200 else {}
    except (Unobservable, ValueError):
        schema = {}
    routes = []
    for path, methods in (schema.get("paths") or {}).items():
        if not path.startswith("/api/"):
            continue
        concrete = "/".join("audit-0" if part.startswith("{") else part for part in path.split("/"))
        routes += [(method.upper(), concrete) for method in methods if method.upper() in ("GET", "POST", "DELETE", "PUT")]
    return sorted(routes) or FALLBACK_ROUTES


@check("edge.api-auth", severity="critical", title="Every API route refuses a missing or wrong API key",
       expected="401 (or 403) without X-API-Key and with a wrong key, on every /api route",
       fix="run the bundled service (its ApiAuth middleware) or put key authentication in front of /api")
def api_auth(facts: Facts) -> Outcome:
    open_routes = []
    routes = api_routes(facts)
    for method, path in routes:
        for label, headers in (("no key", {}), ("wrong key", {"X-API-Key": WRONG_KEY})):
            answer = facts.http(path, method=method, headers=headers)
            if answer.status not in (401, 403):
                open_routes.append(f"{method} {path} with {label}: {answer.status}")
    if open_routes:
        return failed(f"{len(open_routes)} unauthenticated answer(s): {'; '.join(open_routes[:5])}")
    return passed(f"{len(routes)} route(s) x 2 refused with 401/403", routes=[f"{m} {p}" for m, p in routes])


@check("edge.security-headers", severity="high", title="HTTP security headers on every answer",
       expected="Strict-Transport-Security, Content-Security-Policy, X-Frame-Options, X-Content-Type-Options",
       fix="serve through the bundled service's Observe middleware, or add the headers at the router")
def security_headers(facts: Facts) -> Outcome:
    answer = facts.http(facts.config.service.health_path)
    missing = [h for h in REQUIRED_HEADERS if h not in answer.headers]
    if missing:
        return failed(f"{facts.config.service.health_path} ({answer.status}) lacks {', '.join(missing)}")
    return passed(f"{facts.config.service.health_path} carries {', '.join(REQUIRED_HEADERS)}")


@check("edge.tls-certificate", severity="critical", title="TLS certificate of the public endpoint is valid and not expiring",
       expected="a certificate that verifies, valid for more than audit.cert_warn_days (warn) / cert_critical_days (critical)",
       fix="renew the certificate (e.g. certbot renew, or your ACME controller) before it expires")
def tls_certificate(facts: Facts) -> Outcome:
    url = facts.settings.tls_url
    if not url:
        return not_applicable("no TLS endpoint configured (audit.tls_url)")
    host_port = url.removeprefix("https://").rstrip("/")
    host, _, port = host_port.partition(":")
    try:
        pem = ssl.get_server_certificate((host, int(port or 443)), timeout=5)
    except (OSError, ValueError) as exc:
        return failed(f"{url}: no TLS handshake ({exc})")
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem.encode())
    expires = cert.not_valid_after_utc
    days = (expires - facts.now.astimezone(UTC)).total_seconds() / 86400
    observed = f"{url}: certificate for {cert.subject.rfc4514_string()} expires {expires:%Y-%m-%d} ({days:.0f} days)"
    if days <= facts.settings.cert_critical_days:
        return failed(observed)
    if days <= facts.settings.cert_warn_days:
        return partial(observed, 0.5)
    return passed(observed, expires=expires.isoformat())


@check("edge.rate-limit", severity="medium", title="Rate limiting per API key",
       expected="service.rate_limit_per_minute set to a finite limit; a key over it gets 429 with Retry-After",
       fix="set service.rate_limit_per_minute in ragops.yaml (the guide: per user/IP)")
def rate_limit(facts: Facts) -> Outcome:
    limit = facts.config.service.rate_limit_per_minute
    if limit > 100_000:
        return failed(f"service.rate_limit_per_minute is {limit}: effectively unlimited")
    # A live probe would spend a real key's quota and starve its clients: the audit reads the setting.
    return passed(f"service.rate_limit_per_minute: {limit} per key (429 with Retry-After beyond it; not probed live)")


@check("edge.cors", severity="high", title="CORS is not open to every origin",
       expected="no '*' in service.cors_origins; a foreign origin's preflight is not allowed",
       fix="list the allowed origins in service.cors_origins (never '*')")
def cors(facts: Facts) -> Outcome:
    if "*" in facts.config.service.cors_origins:
        return failed("service.cors_origins contains '*'")
    answer = facts.http("/api/v1/query", method="OPTIONS",
                        headers={"Origin": "https://audit.invalid", "Access-Control-Request-Method": "POST"})
    allowed = answer.headers.get("access-control-allow-origin")
    if allowed in ("*", "https://audit.invalid"):
        return failed(f"a preflight from https://audit.invalid is allowed (Access-Control-Allow-Origin: {allowed})")
    return passed(f"origins: {', '.join(facts.config.service.cors_origins) or 'none'}; a foreign preflight is refused")


def _secret_hits(texts: list[tuple[str, str]], secrets: dict[str, str]) -> list[str]:
    return [f"{where} contains {name}" for where, text in texts for name, value in secrets.items() if value in text]


@check("edge.secrets-in-process-args", severity="critical", title="No secret in any process's arguments",
       expected="no password, API key or backup key in /proc/*/cmdline",
       fix="pass secrets through files or the environment (ragops does), never as command-line arguments")
def secrets_in_process_args(facts: Facts) -> Outcome:
    secrets = facts.secret_values
    hits = _secret_hits([(f"pid {p['pid']} ({p['args'].split(' ')[0]})", p["args"]) for p in facts.processes], secrets)
    if hits:
        return failed(f"{len(hits)} process(es): {'; '.join(hits[:5])}")
    return passed(f"{len(facts.processes)} processes' arguments checked for {len(secrets)} secret value(s)")


@check("edge.secrets-in-state-files", severity="high", title="No secret in logs, journals or state files",
       expected="no secret value in any file under the state directory (secrets/ and 0600 secrets.json aside)",
       fix="remove the file or the lines, rotate the leaked secret, and find what wrote it")
def secrets_in_state_files(facts: Facts) -> Outcome:
    secrets = facts.secret_values
    hits = []
    files = [p for p in facts.state_files if not (p.name == "secrets.json" and stat.S_IMODE(p.stat().st_mode) == 0o600)]
    for path in files:
        try:
            text = path.read_bytes().decode(errors="replace")
        except OSError:
            continue
        hits += _secret_hits([(str(path), text)], secrets)
    if hits:
        return failed(f"{len(hits)} file(s): {'; '.join(hits[:5])}")
    return passed(f"{len(files)} state file(s) checked for {len(secrets)} secret value(s)")


@check("edge.secret-file-modes", severity="high", title="Secret files readable by their owner only",
       expected="mode 0600 (no group or other bits) on generated secrets and ${file:...} secrets",
       fix="chmod 600 <file> (and check who could read it meanwhile)")
def secret_file_modes(facts: Facts) -> Outcome:
    loose = []
    paths = [*facts.generated_secret_files, *facts.referenced_secret_files]
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            loose.append(f"{path} is {mode:04o}")
    if loose:
        return failed("; ".join(loose), fix="chmod 600 " + " ".join(s.split(" is ")[0] for s in loose))
    return passed(f"{len(paths)} secret file(s), each 0600 or stricter")


@check("edge.service-not-root", severity="high", title="The service does not run as root",
       expected="every color's process runs as an unprivileged account",
       fix="run ragops (and so the service) as an unprivileged user, or set a non-root user in the image")
def service_not_root(facts: Facts) -> Outcome:
    colors = [c for c in facts.status.get("colors") or [] if c.get("running")]
    pids = [(c["color"], c["pid"]) for c in colors if c.get("pid")]
    if not pids:
        return not_applicable("no color process visible on this machine (containers or pods: see edge.kubernetes-policies)")
    as_root = []
    for color, pid in pids:
        try:
            if os.stat(f"/proc/{pid}").st_uid == 0:
                as_root.append(f"{color} (pid {pid})")
        except OSError:
            continue
    if as_root:
        return failed(f"running as root: {', '.join(as_root)}")
    return passed(f"{len(pids)} color process(es), none as root")


@check("edge.kubernetes-policies", severity="high", title="NetworkPolicy and a restrictive securityContext on Kubernetes",
       expected="a NetworkPolicy for the service, runAsNonRoot and readOnlyRootFilesystem on every container",
       fix="apply the manifests `ragops render` prints (they carry both)")
def kubernetes_policies(facts: Facts) -> Outcome:
    from ragops.platforms import platform_class

    if not platform_class(facts.config).renders_manifests:
        return not_applicable(f"the {facts.config.env.platform} platform runs no manifests")
    from ragops.platforms.k8s_manifests import render_templates

    objects = [o for group in render_templates(facts.config).values() for o in group]
    kinds = {o.get("kind") for o in objects}
    problems = [] if "NetworkPolicy" in kinds else ["no NetworkPolicy"]
    for obj in objects:
        spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in spec.get("containers") or []:
            context = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
            if not context.get("runAsNonRoot") or not context.get("readOnlyRootFilesystem"):
                problems.append(f"{obj['metadata']['name']}/{container['name']}: runAsNonRoot/readOnlyRootFilesystem not set")
    if problems:
        return failed("; ".join(problems))
    return passed(f"{len(objects)} objects: NetworkPolicy present, every container non-root with a read-only root")
