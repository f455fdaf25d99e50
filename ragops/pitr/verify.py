"""`backup physical verify`: prove a recovery point by restoring it.

The base backup (and the archived WAL up to --to-time, or all of it) is restored into a scratch data
directory, replayed and promoted on a free loopback port; the service's sanity check, amcheck and the
row counts of backups.tables run against it; the result is recorded next to the manifest
(verification.json, as for logical backups) and the scratch instance is removed.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from ragops.backup.catalog import iso, now_utc, resolve, storages
from ragops.backup.checks import Check
from ragops.backup.pipeline import Progress
from ragops.backup.verify import VerifyResult, record_verification, run_amcheck, service_sanity
from ragops.errors import OperationFailed


def verify_physical(config, backup_id: str = "latest", to_time: str | None = None,
                    progress: Progress = None) -> VerifyResult:
    from ragops.pg import pgctl
    from ragops.pitr.restore import parse_target, restore_physical

    storage, _copy = storages(config)
    manifest = resolve(storage, backup_id, kind="physical")
    target = parse_target(to_time, None, not to_time)
    started = time.monotonic()
    base = pgctl.server_home(config, create=True) or config.state_dir
    base.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="pitr-verify-", dir=base))
    scratch.chmod(0o755)   # ours: the server account must reach the data directory inside
    node = None
    try:
        try:
            result = restore_physical(config, manifest.id, target, str(scratch / "data"), keep_running=True,
                                      progress=progress)
            checks = [Check("restore", True, f"replayed to {result.target}: last transaction "
                                             f"{result.recovered_to or '-'}, {result.segments} WAL segment(s)")]
            node = pgctl.Node("pitr-restore", scratch / "data", int(result.port or 0), scratch / "data.log",
                              bin=config.database.bin_dir, home=pgctl.server_home(config))
            checks += _data_checks(config, node.port)
        except OperationFailed as exc:
            checks = [Check("restore", False, exc.message)]
    finally:
        if node is not None:
            node.stop(mode="immediate")
        shutil.rmtree(scratch, ignore_errors=True)
    verdict = VerifyResult(manifest.id, all(c.ok for c in checks), True, iso(now_utc()),
                           round(time.monotonic() - started, 3), checks)
    record_verification(storage, manifest, verdict)
    return verdict


def _data_checks(config, port: int) -> list[Check]:
    from ragops.backup.pg import connect, row_counts
    from ragops.pitr.replay import restored_credentials

    # the copy's credentials only: the live primary's address may not resolve (a fenced docker node)
    dbname = config.database.name
    if config.database.dsn:
        from psycopg.conninfo import conninfo_to_dict

        dbname = conninfo_to_dict(config.reveal(config.database.dsn, "database.dsn")).get("dbname", dbname)
    params = {**restored_credentials(config), "dbname": dbname, "host": "127.0.0.1", "port": port}
    conn = connect(params)
    try:
        with conn.cursor() as cur:
            counts = row_counts(cur, config.backups.tables)
            checks = [Check(f"rows {t}", True, f"{t}: {n} rows") for t, n in counts.items()]
            return [*checks, service_sanity(cur), run_amcheck(cur)]
    finally:
        conn.close()
