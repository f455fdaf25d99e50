"""`backup restore`: refuse a wrong key or a digest mismatch before touching the target, then

    storage  ->  crypter (age)  ->  compressor (zstd)  ->  pg_restore's stdin

with the compressor and crypter the manifest names.
"""
from __future__ import annotations

from dataclasses import dataclass

from ragops.backup import pipeline
from ragops.backup.catalog import CreatePlan, Manifest, resolve, stages_of, storages
from ragops.backup.checks import check_key, check_object
from ragops.backup.pg import describe, params_from_dsn, pg_restore_sink, source_params
from ragops.backup.pipeline import Meter, Progress, say, size_text
from ragops.errors import OperationFailed, UsageError


@dataclass
class RestoreResult:
    backup_id: str
    target: str
    stored_bytes: int
    raw_bytes: int
    elapsed_seconds: float
    rate_bytes_per_second: float


def stream_restore(config, storage, manifest: Manifest, compressor, crypter, target: dict, extra: list[str],
                   progress: Progress) -> float:
    """The stored object through the restore pipeline into pg_restore. Returns elapsed seconds."""
    meter = Meter(progress, "restored", manifest.stored_bytes)
    pipeline.restore(storage.read_chunks(manifest.object_key), crypter, compressor,
                     pg_restore_sink(config, target, extra), storage.describe(manifest.object_key), meter)
    say(progress, meter.line())
    return meter.elapsed


def _target(config, target_dsn: str | None, to_env: str | None) -> dict:
    if bool(target_dsn) == bool(to_env):
        raise UsageError("give exactly one of --target DSN or --to-env ENV")
    if target_dsn:
        return params_from_dsn(target_dsn)
    from ragops.config import load_config

    return source_params(load_config(config.path, to_env))


def restore_backup(config, backup_id: str = "latest", target_dsn: str | None = None,
                   to_env: str | None = None, clean: bool = False, create: bool = False,
                   progress: Progress = None, dry_run: bool = False) -> RestoreResult | CreatePlan:
    """Restore into a target. Refuses a wrong key or a digest mismatch before touching it.
    With dry_run, runs those read-only checks and returns the plan without touching the target."""
    target = _target(config, target_dsn, to_env)
    storage, _copy = storages(config)
    manifest = resolve(storage, backup_id, kind="logical")
    if manifest.kind == "physical":
        raise UsageError(f"backup {manifest.id} is a physical base backup: use `ragops backup physical restore`")
    compressor, crypter = stages_of(config, manifest)
    for check in (lambda: check_key(storage, manifest, crypter), lambda: check_object(storage, manifest, progress)):
        result = check()
        if not result.ok:
            raise OperationFailed(f"refusing to restore {manifest.id}: {result.detail}; the target was not touched")
    extra = []
    if clean:
        extra += ["--clean", "--if-exists"]
    if create:
        extra.append("--create")
        target = {**target, "dbname": "postgres"}   # pg_restore connects here, then creates the dump's db
    if dry_run:
        return CreatePlan(True, [f"checked: {storage.describe(manifest.object_key)} matches its "
                                 f"manifest digest and the configured key {crypter.key_id} decrypts it",
                                 f"would stream it ({crypter.name} -> {compressor.name} -> pg_restore "
                                 f"{' '.join(extra)}) into {describe(target)}"])
    say(progress, f"restoring {manifest.id} ({size_text(manifest.stored_bytes)}) into {describe(target)}")
    elapsed = stream_restore(config, storage, manifest, compressor, crypter, target, extra, progress)
    return RestoreResult(manifest.id, describe(target), manifest.stored_bytes, manifest.raw_bytes,
                         round(elapsed, 3), round(manifest.stored_bytes / max(elapsed, 1e-6), 1))
