"""`backup lifecycle`: backups.lifecycle as S3 lifecycle rules (storage tiering) on every S3
storage; a plan unless applied. Rules with other ids on the bucket are kept."""
from __future__ import annotations

from dataclasses import dataclass

from ragops.backup.catalog import storages
from ragops.errors import UsageError


@dataclass
class LifecyclePlan:
    applied: bool
    storages: list[dict]             # {"storage", "add", "change", "unchanged", "keep_foreign"}


def apply_lifecycle(config, apply: bool = False) -> LifecyclePlan:
    """S3 lifecycle rules from backups.lifecycle, on every S3 storage; a plan unless apply.
    Rules with other ids on the bucket are kept."""
    from ragops.backup.storage import S3Storage

    storage, copy = storages(config)
    s3_stores = [s for s in (storage, copy) if isinstance(s, S3Storage)]
    if not s3_stores:
        raise UsageError("backups.lifecycle: lifecycle rules apply to s3:// storage only")
    plans = []
    for store in s3_stores:
        base = f"{store.prefix}/" if store.prefix else ""
        desired = {rule.id: {"ID": rule.id, "Status": "Enabled", "Filter": {"Prefix": base + rule.prefix},
                             "Transitions": [{"Days": rule.days, "StorageClass": rule.storage_class}]}
                   for rule in config.backups.lifecycle}
        current = {r.get("ID"): r for r in store.get_lifecycle()}
        add = [i for i in desired if i not in current]
        change = [i for i in desired if i in current and _rule_key(current[i]) != _rule_key(desired[i])]
        unchanged = [i for i in desired if i in current and i not in change]
        foreign = [i for i in current if i not in desired]
        plans.append({"storage": store.url, "add": add, "change": change, "unchanged": unchanged,
                      "keep_foreign": foreign, "rules": list(desired.values())})
        if apply and (add or change):
            store.put_lifecycle([current[i] for i in foreign] + list(desired.values()))
    return LifecyclePlan(apply, plans)


def _rule_key(rule: dict) -> tuple:
    prefix = (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", ""))
    transitions = tuple((t.get("Days"), t.get("StorageClass")) for t in rule.get("Transitions", []))
    return rule.get("Status"), prefix, transitions
