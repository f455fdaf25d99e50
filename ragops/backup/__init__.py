"""Backups of the environment's PostgreSQL, split by role.

    pipeline     the stages: reader -> compressor -> crypter -> hasher -> storage, and back
    compressors  Compressor interface + registry (zstd)
    crypters     Crypter interface + registry (age)
    storage      Storage interface: file:// and s3://
    pg           libpq helpers; the pg_dump reader and the pg_restore sink
    catalog      ids, manifests, listing, resolving, locks
    checks       hash and key checks of a stored object
    create, verify, restore, retention, metrics, lifecycle: one command each

Engines only: nothing here imports typer or rich; progress is a callback taking one line.
"""
