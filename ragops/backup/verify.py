"""`backup verify`: the digest of every stored copy, the key against the object's first block,
and with --restore a scratch restore with data checks. The result is recorded next to the
manifest (verification.json, with a short history); `ok` says whether it passed.
"""
from __future__ import annotations

import json
import secrets as pysecrets
import time
from dataclasses import asdict, dataclass

from ragops.backup.catalog import VERIFICATION, Manifest, iso, now_utc, read_json, resolve, stages_of, storages
from ragops.backup.checks import Check, check_key, check_object
from ragops.backup.pg import connect, row_counts, source_params
from ragops.backup.pipeline import Progress, say
from ragops.backup.restore import stream_restore
from ragops.errors import OperationFailed


@dataclass
class VerifyResult:
    backup_id: str
    ok: bool
    restore: bool
    checked_at: str
    duration_seconds: float
    checks: list[Check]

    @property
    def failure(self) -> str:
        return "; ".join(c.detail or c.name for c in self.checks if not c.ok)


def verify_backup(config, backup_id: str = "latest", restore: bool = False,
                  progress: Progress = None) -> VerifyResult:
    """Digest of every stored copy; with restore, a scratch restore and data checks. The result is
    recorded next to the manifest; `ok` says whether it passed."""
    storage, copy = storages(config)
    manifest = resolve(storage, backup_id, kind=None if backup_id != "latest" or not restore else "logical")
    started = time.monotonic()
    checks = [check_object(storage, manifest, progress)]
    if copy is not None:
        if copy.url in manifest.copies:
            checks.append(check_object(copy, manifest, progress))
        else:
            checks.append(Check(f"copy {copy.url}", False, f"{manifest.id} was never copied to {copy.url}"))
    compressor, crypter = stages_of(config, manifest)
    if checks[0].ok:
        checks.append(check_key(storage, manifest, crypter))
    if restore and manifest.kind == "physical":
        checks.append(Check("restore", False, f"{manifest.id} is physical: `ragops backup physical restore` tests it"))
    elif restore and all(c.ok for c in checks):
        checks.extend(_scratch_restore(config, storage, manifest, compressor, crypter, progress))
    result = VerifyResult(manifest.id, all(c.ok for c in checks), restore, iso(now_utc()),
                          round(time.monotonic() - started, 3), checks)
    record_verification(storage, manifest, result)
    return result


def record_verification(storage, manifest: Manifest, result: VerifyResult) -> None:
    key = f"{manifest.id}/{VERIFICATION}"
    history = []
    if storage.exists(key):
        try:
            previous = read_json(storage, key)
            history = previous.get("history", [])[-19:] + [{k: previous[k] for k in ("checked_at", "ok", "restore")
                                                            if k in previous}]
        except OperationFailed:
            history = []
    record = {**asdict(result), "history": history}
    storage.put_bytes(key, (json.dumps(record, indent=2) + "\n").encode())


def _scratch_restore(config, storage, manifest: Manifest, compressor, crypter, progress: Progress) -> list[Check]:
    from psycopg import sql

    params = source_params(config)
    scratch = f"ragops_verify_{pysecrets.token_hex(4)}"
    admin = connect({**params, "dbname": "postgres"})
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        say(progress, f"restoring {manifest.id} into scratch database {scratch}")
        target = {**params, "dbname": scratch}
        try:
            stream_restore(config, storage, manifest, compressor, crypter, target,
                           ["--no-owner", "--no-privileges", "--exit-on-error"], progress)
        except OperationFailed as exc:
            return [Check("restore", False, exc.message)]
        conn = connect(target)
        try:
            with conn.cursor() as cur:
                return [Check("restore", True, f"restored into scratch database {scratch}"),
                        *_data_checks(cur, manifest)]
        finally:
            conn.close()
    finally:
        try:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
        finally:
            admin.close()


def _data_checks(cur, manifest: Manifest) -> list[Check]:
    """Row counts against the manifest, the service's invariant, and amcheck on btree indexes."""
    checks = []
    counts = row_counts(cur, list(manifest.row_counts))
    for table, expected in manifest.row_counts.items():
        got = counts.get(table)
        checks.append(Check(f"rows {table}", got == expected, f"{table}: {got} rows, manifest {expected}"))
    checks.append(service_sanity(cur))
    checks.append(run_amcheck(cur))
    return checks


def run_amcheck(cur) -> Check:
    cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'")
    if not cur.fetchone():
        return Check("amcheck", True, "skipped: amcheck is not available on this server")
    cur.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    cur.execute("SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND c.relpersistence <> 't'")
    indexes = [r[0] for r in cur.fetchall()]
    bad = []
    for index in indexes:
        try:
            cur.execute("SELECT bt_index_check(%s::regclass, true)", (index,))
        except Exception as exc:  # noqa: BLE001 - reported as a failed check
            bad.append(f"{index}: {str(exc).splitlines()[0]}")
    return Check("amcheck", not bad, "; ".join(bad) or f"{len(indexes)} btree indexes ok")


def service_sanity(cur) -> Check:
    """The bundled service's own invariant: every chunk belongs to an existing document."""
    cur.execute("SELECT 1 FROM information_schema.columns WHERE table_name = 'chunks' "
                "AND column_name = 'document_id' AND to_regclass('documents') IS NOT NULL")
    if not cur.fetchone():
        return Check("service sanity", True, "skipped: no documents/chunks tables")
    cur.execute("SELECT count(*) FROM chunks c WHERE NOT EXISTS "
                "(SELECT 1 FROM documents d WHERE d.id = c.document_id)")
    orphans = cur.fetchone()[0]
    return Check("service sanity", orphans == 0, f"{orphans} chunks without their document")
