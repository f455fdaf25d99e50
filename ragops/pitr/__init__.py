"""Point-in-time recovery: physical base backups, the continuous WAL archive, restore to a moment.

    wal.py         segment names, the archive settings, the spool and the shipper (spool -> pipeline -> storage)
    basebackup.py  `pg_basebackup -Ft -X fetch -D -` as a reader of the backup pipeline
    coverage.py    what the archive holds: timelines, gaps, newest segment, oldest recoverable time
    restore.py     base backup + prefetched, verified WAL + recovery target, replayed and promoted
    (backups.wal, the section model, is ragops/settings/pitr.py)
"""
