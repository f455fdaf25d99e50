"""Golden queries: a version that answers 200 with the wrong documents fails its smoke test.

`smoke.golden: FILE` (YAML) lists documents and queries with the documents each must return:

    documents:
      - {name: pitr, title: Point-in-time recovery, content: "..."}
    queries:
      - {query: "restore the database to a moment before a bad migration", expect: [pitr]}

`ragops up` seeds the documents through the service's API (once: their ids are kept in
<state dir>/golden.json and checked to exist on the next `up`), and every smoke test of a color
(a deploy's, before any traffic) runs each query against that color and computes recall@k: the share
of the expected documents found in its top `smoke.golden_k` results, averaged over the queries.
Below `smoke.golden_min_recall` the smoke test fails.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ragops.config_types import Strict
from ragops.errors import ConfigError, OperationFailed

IDS_FILE = "golden.json"


class GoldenDocument(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    title: str = Field(min_length=1)
    content: str = Field(min_length=1)


class GoldenQuery(Strict):
    query: str = Field(min_length=1)
    expect: list[str] = Field(min_length=1)


class GoldenFile(Strict):
    documents: list[GoldenDocument] = Field(min_length=1)
    queries: list[GoldenQuery] = Field(min_length=1)


def load(config) -> GoldenFile | None:
    """The golden file of `smoke.golden` (None when unset); ConfigError naming the key otherwise."""
    import yaml
    from pydantic import ValidationError

    setting = config.env.smoke.golden
    if not setting:
        return None
    path = config.resolve_path(setting)
    try:
        data = yaml.safe_load(path.read_text())
        golden = GoldenFile.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"smoke.golden: cannot read {path} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"smoke.golden: {path} is not YAML ({str(exc).splitlines()[0]})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"smoke.golden: {path}: {where}: {first['msg']}") from None
    names = {d.name for d in golden.documents}
    for index, q in enumerate(golden.queries):
        unknown = [n for n in q.expect if n not in names]
        if unknown:
            raise ConfigError(f"smoke.golden: {path}: queries.{index}.expect: unknown document {unknown[0]!r}")
    return golden


def _ids_path(config) -> Path:
    return config.state_dir / IDS_FILE


def seeded_ids(config) -> dict[str, str]:
    from ragops import journal

    return dict(journal.read_json(_ids_path(config)) or {})


def seed(config, url: str, api_key: str, progress=None) -> list[str]:
    """Upload the golden documents that are not in the database yet (through the service at `url`);
    the names uploaded."""
    import httpx

    from ragops import journal

    golden = load(config)
    if golden is None:
        return []
    ids = seeded_ids(config)
    added = []
    headers = {"X-API-Key": api_key}
    with httpx.Client(base_url=url.rstrip("/"), timeout=30, headers=headers) as client:
        for doc in golden.documents:
            known = ids.get(doc.name)
            try:
                if known and client.get(f"/api/v1/documents/{known}").status_code == 200:
                    continue
                r = client.post("/api/v1/documents", json={"title": doc.title, "content": doc.content,
                                                           "metadata": {"ragops_golden": doc.name}})
            except httpx.HTTPError as exc:
                raise OperationFailed(f"smoke.golden: seeding {doc.name} failed ({type(exc).__name__})") from None
            if r.status_code not in (200, 201):
                raise OperationFailed(f"smoke.golden: seeding {doc.name} failed: {r.status_code} {r.text[:160]}")
            ids[doc.name] = str(r.json()["id"])
            added.append(doc.name)
    if added:
        _ids_path(config).parent.mkdir(parents=True, exist_ok=True)
        journal.write_json(_ids_path(config), ids)
        if progress:
            progress(f"seeded {len(added)} golden document(s) for smoke.golden ({', '.join(added)})")
    return added


def recall(client, golden: GoldenFile, ids: dict[str, str], k: int) -> tuple[float, list[str]]:
    """Mean recall@k over the golden queries, and the queries that missed a document."""
    total, missed = 0.0, []
    for q in golden.queries:
        r = client.post("/api/v1/query", json={"query": q.query, "top_k": k})
        found = {str(item.get("document_id")) for item in (r.json().get("results", []) if r.status_code == 200 else [])}
        hits = sum(1 for name in q.expect if ids.get(name) in found)
        total += hits / len(q.expect)
        if hits < len(q.expect):
            missed.append(q.query if r.status_code == 200 else f"{q.query} ({r.status_code})")
    return total / len(golden.queries), missed


def check(config, client) -> tuple[bool, str] | None:
    """The golden check against one color (`client`: an httpx client on its URL with the API key);
    None when smoke.golden is unset."""
    golden = load(config)
    if golden is None:
        return None
    settings = config.env.smoke
    ids = seeded_ids(config)
    missing = [d.name for d in golden.documents if d.name not in ids]
    if missing:
        return False, (f"golden documents not seeded ({', '.join(missing)}): run `ragops up` "
                       "(it seeds smoke.golden into the database)")
    value, missed = recall(client, golden, ids, settings.golden_k)
    ok = value >= settings.golden_min_recall
    detail = (f"recall@{settings.golden_k} {value:.2f} {'>=' if ok else '<'} {settings.golden_min_recall:g} "
              f"over {len(golden.queries)} queries")
    if missed:
        detail += f"; missed: {'; '.join(repr(m) for m in missed[:3])}" + (" ..." if len(missed) > 3 else "")
    return ok, detail
