"""`backup prune`: the retention policy plus orphans (objects without a manifest, unfinished
uploads), on the storage and its copy; a plan unless applied. In-progress backups are left alone.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from ragops.backup.catalog import LOCK, MANIFEST, lock_alive, manifests, now_utc, parse_iso, safe_json, scan, storages
from ragops.backup.pipeline import Progress, say

WAL_DIR = "wal"                      # ragops.pitr.wal.WAL_DIR: pruned by its own rule, never as orphans
# the rules of engines that keep objects of their own in the backup storage (the WAL archive builds on this
# package, so its rule is named here and imported when a prune runs): kind -> "module:function(store, kept_bases)"
PRUNE_RULES: dict[str, str] = {
    "wal": "ragops.pitr.retention:expired_wal",
}


def _rule(kind: str):
    module, _, name = PRUNE_RULES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class PruneAction:
    kind: str                        # "backup" | "orphan" | "pending-upload" | "wal"
    target: str                      # backup id, or storage object
    storage: str
    reason: str


@dataclass
class PrunePlan:
    applied: bool
    keep: dict                       # id -> reasons
    delete: list[PruneAction]
    skipped: list[str]               # in-progress backups left alone


def plan_retention(backups: list[tuple[str, datetime, bool]], now: datetime, keep_last: int,
                   hourly_hours: int, daily_days: int) -> tuple[dict[str, list[str]], list[str]]:
    """Which backups to keep and why. `backups`: (id, finished time, verified ok).

    Keep the newest `keep_last`; the newest of each hour for the last `hourly_hours`; the newest
    of each day for the last `daily_days`; and always the newest verified backup."""
    ordered = sorted(backups, key=lambda b: (b[1], b[0]), reverse=True)   # newest first
    keep: dict[str, list[str]] = {}
    for backup_id, _when, _ok in ordered[:keep_last]:
        keep.setdefault(backup_id, []).append(f"one of the last {keep_last}")
    hours_seen: set = set()
    days_seen: set = set()
    for backup_id, when, _ok in ordered:
        age = now - when
        hour = when.strftime("%Y-%m-%dT%H")
        day = when.strftime("%Y-%m-%d")
        if age <= timedelta(hours=hourly_hours) and hour not in hours_seen:
            hours_seen.add(hour)
            keep.setdefault(backup_id, []).append(f"hourly {hour}:00")
        if age <= timedelta(days=daily_days) and day not in days_seen:
            days_seen.add(day)
            keep.setdefault(backup_id, []).append(f"daily {day}")
    newest_verified = next((b for b in ordered if b[2]), None)
    if newest_verified:
        keep.setdefault(newest_verified[0], []).append("newest verified")
    delete = [b[0] for b in ordered if b[0] not in keep]
    return keep, delete


def _keep_chains(storage, keep: dict[str, list[str]], delete_ids: list[str]) -> list[str]:
    """A kept incremental base backup keeps every backup of its chain (a restore applies them all)."""
    for manifest, _v in manifests(storage):
        if manifest.id not in keep:
            continue
        for backup_id in ((manifest.physical or {}).get("incremental") or {}).get("chain", []):
            keep.setdefault(backup_id, []).append(f"in the chain of incremental {manifest.id}")
    return [backup_id for backup_id in delete_ids if backup_id not in keep]


def prune_backups(config, apply: bool = False, progress: Progress = None, now: datetime | None = None) -> PrunePlan:
    """Retention plus orphans (objects without a manifest, unfinished uploads); a plan unless apply."""
    storage, copy = storages(config)
    now = now or now_utc()
    retention = config.backups.retention
    items = [(m.id, parse_iso(m.finished_at), bool(v and v.get("ok"))) for m, v in manifests(storage)]
    keep, delete_ids = plan_retention(items, now, retention.keep_last, retention.hourly_hours,
                                      retention.daily_days)
    delete_ids = _keep_chains(storage, keep, delete_ids)
    actions = [PruneAction("backup", backup_id, storage.url, "outside the retention policy")
               for backup_id in delete_ids]
    skipped: list[str] = []
    kept_bases = [m for m, _v in manifests(storage) if m.kind == "physical" and m.id in keep]
    for store in [s for s in (storage, copy) if s is not None]:
        scanned = scan(store)
        actions += _orphans(store, scanned, now, skipped)
        actions += [PruneAction(kind, key, store.url, reason)
                    for kind in PRUNE_RULES for key, reason in _rule(kind)(store, kept_bases)]
        if store is copy:
            copy_ids = {b for b, names in scanned.items() if MANIFEST in names}
            actions += [PruneAction("backup", backup_id, copy.url, "outside the retention policy")
                        for backup_id in delete_ids if backup_id in copy_ids]
    if apply:
        _apply(actions, [s for s in (storage, copy) if s is not None], progress)
    return PrunePlan(apply, keep, actions, skipped)


def _orphans(store, scanned: dict[str, set[str]], now: datetime, skipped: list[str]) -> list[PruneAction]:
    """Objects of backups without a manifest and unfinished uploads, except live backups'."""
    live = {backup_id for backup_id, names in scanned.items()
            if LOCK in names and lock_alive(safe_json(store, f"{backup_id}/{LOCK}"), now)}
    actions = []
    for backup_id, names in sorted(scanned.items()):
        if MANIFEST in names or backup_id == WAL_DIR:   # the WAL archive is not a backup (ragops/pitr)
            continue
        if backup_id in live:
            skipped.append(f"{store.url} {backup_id}: in progress")
            continue
        for name in sorted(names):
            actions.append(PruneAction("orphan", f"{backup_id}/{name}", store.url, "no manifest"))
    for pending in store.pending_uploads():
        if pending.key.split("/", 1)[0] in live or pending.key.startswith(WAL_DIR + "/"):
            continue
        actions.append(PruneAction("pending-upload", pending.key, store.url,
                                   "unfinished upload" + (f" {pending.upload_id[:12]}" if pending.upload_id else "")))
    return actions


def _apply(actions: list[PruneAction], stores: list, progress: Progress) -> None:
    by_url = {s.url: s for s in stores}
    pending_by = {s.url: {p.key: p for p in s.pending_uploads()} for s in stores}
    for action in actions:
        store = by_url[action.storage]
        if action.kind == "backup":
            _delete_backup(store, action.target)
        elif action.kind in ("orphan", "wal"):
            store.delete(action.target)
        else:
            pending = pending_by[store.url].get(action.target)
            if pending:
                store.abort_pending(pending)
        say(progress, f"deleted {action.kind} {action.target} from {action.storage}")


def _delete_backup(storage, backup_id: str) -> None:
    """The manifest goes first: from that moment the backup does not exist for any command."""
    storage.delete(f"{backup_id}/{MANIFEST}")
    for obj in storage.list(f"{backup_id}/"):
        storage.delete(obj.key)
