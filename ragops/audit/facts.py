"""What `ragops audit` observes in the live environment, each source read at most once and never
changed: the router and colors (`ragops status`), the backup catalog and WAL archive, HTTP answers
through the public router, process arguments, state files, Prometheus, drill reports and runbook runs.

A source that cannot be read raises `Unobservable` in every check that needs it: an audit that could
not look is a miss ("could not observe: ..."), never a pass.
"""
from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ragops.errors import RagopsError

T = TypeVar("T")
MAX_SCANNED_FILE = 8 * 2**20      # state files larger than this are not read for secrets (data, not text)
MAX_SCANNED_FILES = 5000


class Unobservable(Exception):
    """A fact could not be read; the message says why."""


def fact(method: Callable[[Any], T]) -> property:
    """A lazily read, cached fact; a failure is cached too and raised as Unobservable each time."""
    name = method.__name__

    def getter(self) -> T:
        cache = self._cache
        if name not in cache:
            try:
                cache[name] = (True, method(self))
            except Unobservable as exc:
                cache[name] = (False, str(exc))
            except RagopsError as exc:
                cache[name] = (False, exc.message)
            except Exception as exc:   # noqa: BLE001 - any failure to observe is reported, not raised
                cache[name] = (False, f"{type(exc).__name__}: {exc}")
        ok, value = cache[name]
        if not ok:
            raise Unobservable(value)
        return value
    getter.__doc__ = method.__doc__
    return property(getter)


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: str


def lsn_bytes(lsn: str | None) -> int | None:
    if not lsn or "/" not in lsn:
        return None
    high, low = lsn.split("/", 1)
    return (int(high, 16) << 32) + int(low, 16)


class Facts:
    def __init__(self, config, now: datetime | None = None, *, runbooks: Callable[[], list[dict]] | None = None,
                 runbook_runs: Callable[[], list[dict]] | None = None):
        # what the runbook engine knows is handed in by the caller (the CLI, the runbook gate): the
        # audit sits beside the runbook engine, which runs it as a gate, so it must not import it
        self._runbooks = runbooks
        self._runbook_runs = runbook_runs
        self.config = config
        self.settings = config.env.audit
        self.now = now or datetime.now(UTC)
        self._cache: dict[str, tuple[bool, Any]] = {}
        self._http: dict[tuple, HttpAnswer | str] = {}

    # ---- the stack -----------------------------------------------------------------------
    @fact
    def platform(self):
        from ragops.platforms import get_platform

        return get_platform(self.config)

    @fact
    def status(self) -> dict:
        """What `ragops status` shows: router, colors, database nodes, lock, HA, supervisor."""
        from ragops.journal import to_jsonable
        from ragops.status import status

        return to_jsonable(status(self.config))

    @fact
    def router_url(self) -> str:
        return self.platform.router_url().rstrip("/")

    def http(self, path: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> HttpAnswer:
        """One request through the public router (cached per request); Unobservable when nothing answers."""
        key = (method, path, tuple(sorted((headers or {}).items())))
        if key not in self._http:
            import httpx

            try:
                response = httpx.request(method, self.router_url + path, headers=headers, timeout=5.0)
                self._http[key] = HttpAnswer(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                                             response.text[:2**20])
            except httpx.HTTPError as exc:
                self._http[key] = f"{method} {path} through the router: {type(exc).__name__}: {exc}"
        answer = self._http[key]
        if isinstance(answer, str):
            raise Unobservable(answer)
        return answer

    @fact
    def api_key(self) -> str:
        from ragops.db.connect import api_keys

        return api_keys(self.config)[0]

    # ---- secrets ---------------------------------------------------------------------------
    @fact
    def secret_values(self) -> dict[str, str]:
        """Every secret this environment uses, by where it comes from (values never leave this object)."""
        from ragops.secrets import register_secret

        found: dict[str, str] = {}
        for key, ref in self.config.references():
            try:
                found[key] = self.config.reveal(ref, key)
            except RagopsError:
                continue   # an unresolvable reference is config validate's business, not a leak
        for path in self.generated_secret_files:
            try:
                found[f"{path.name} (state secret)"] = path.read_text().strip()
            except OSError:
                continue
        values = {k: v for k, v in found.items() if v and len(v) >= 8}   # short values match by chance
        for value in values.values():
            register_secret(value)
        return values

    @fact
    def generated_secret_files(self) -> list[Path]:
        folder = self.config.state_dir / "secrets"
        return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    @fact
    def referenced_secret_files(self) -> list[Path]:
        from ragops.secrets import is_reference

        paths = []
        for _key, ref in self.config.references():
            if is_reference(ref) and ref.startswith("${file:"):
                paths.append(self.config.resolve_path(ref[len("${file:"):-1]))
        return paths

    @fact
    def processes(self) -> list[dict]:
        """Every process's pid, uid and arguments (this machine's /proc)."""
        rows = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                uid = entry.stat().st_uid
            except OSError:
                continue
            rows.append({"pid": int(entry.name), "uid": uid, "args": args})
        return rows

    @fact
    def state_files(self) -> list[Path]:
        """Text-sized files under the state directory, PostgreSQL data directories and secrets/ left out."""
        root = self.config.state_dir
        if not root.is_dir():
            raise Unobservable(f"state directory {root} does not exist (is the environment up?)")
        files: list[Path] = []
        for folder, dirs, names in os.walk(root):
            if "PG_VERSION" in names or Path(folder) == root / "secrets":
                dirs[:] = []
                continue
            for name in names:
                path = Path(folder) / name
                try:
                    info = path.lstat()
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_SCANNED_FILE:
                    files.append(path)
                if len(files) >= MAX_SCANNED_FILES:
                    return files
        return files

    # ---- backups and the archive -------------------------------------------------------------
    @fact
    def backups(self) -> list[tuple[Any, dict | None]]:
        """(manifest, verification record) of every backup in the configured storage, oldest first."""
        from ragops.backup.catalog import manifests, storages

        storage, _copy = storages(self.config)
        return manifests(storage)

    @fact
    def copy_keys(self) -> set[str] | None:
        """The backup ids present in backups.copy_to (None when no second storage is configured)."""
        from ragops.backup.catalog import scan, storages

        _storage, copy = storages(self.config)
        return None if copy is None else set(scan(copy))

    @fact
    def coverage(self):
        from ragops.backup.catalog import storages
        from ragops.pitr.coverage import coverage

        storage, _copy = storages(self.config)
        return coverage(storage)

    # ---- observability -------------------------------------------------------------------------
    @fact
    def prometheus_url(self) -> str | None:
        return self.config.env.monitoring.query_url()

    def prometheus(self, path: str) -> Any:
        """GET <prometheus>/api/v1/<path> → data; Unobservable when no Prometheus answers."""
        url = self.prometheus_url
        if url is None:
            raise Unobservable("no Prometheus configured (monitoring.prometheus / monitoring.url)")
        key = ("prometheus", path)
        if key not in self._http:
            import httpx

            try:
                response = httpx.get(f"{url}/api/v1/{path}", timeout=5.0)
                response.raise_for_status()
                self._http[key] = response.json()["data"]
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                self._http[key] = f"Prometheus at {url}: {type(exc).__name__}: {exc}"
        value = self._http[key]
        if isinstance(value, str) and value.startswith("Prometheus at "):
            raise Unobservable(value)
        return value

    # ---- operations ------------------------------------------------------------------------------
    @fact
    def drill_reports(self) -> list[dict]:
        """Every drill report (report.json) in the configured folders, newest first."""
        folders = [self.config.resolve_path(d) for d in self.settings.drill_reports] or [self.config.state_dir / "drills"]
        reports = []
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in folder.glob("*/report.json"):
                try:
                    report = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(report, dict) and report.get("drill"):
                    reports.append({**report, "_path": str(path)})
        reports.sort(key=lambda r: str(r.get("finished_at") or r.get("generated_at") or ""), reverse=True)
        return reports

    @fact
    def runbooks(self) -> list[dict]:
        """Each runbook's name and validation issues (what `ragops runbook validate` says)."""
        if self._runbooks is None:
            raise Unobservable("runbook validation was not supplied to this audit")
        return self._runbooks()

    @fact
    def runbook_runs(self) -> list[dict]:
        """Past runbook runs, newest first."""
        if self._runbook_runs is None:
            raise Unobservable("runbook runs were not supplied to this audit")
        return self._runbook_runs()

    def age_seconds(self, iso_time: str | None) -> float | None:
        if not iso_time:
            return None
        try:
            moment = datetime.fromisoformat(str(iso_time).replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return (self.now - moment).total_seconds()
