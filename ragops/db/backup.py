"""Shim: the backup engine moved to ragops.backup. Only the names ragops/runbook/actions.py
still looks up here ("ragops.db.backup:..."); remove once it imports ragops.backup directly."""
from ragops.backup.catalog import show_backup  # noqa: F401
from ragops.backup.create import create_backup  # noqa: F401
from ragops.backup.metrics import check_backups  # noqa: F401
from ragops.backup.restore import restore_backup  # noqa: F401
from ragops.backup.verify import verify_backup  # noqa: F401
