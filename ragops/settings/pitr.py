"""`backups.wal` in ragops.yaml: the continuous WAL archive."""
from __future__ import annotations

from pydantic import Field

from ragops.config_types import Duration, Strict


class WalSettings(Strict):
    enabled: bool = True                         # platforms that own the database archive by default
    archive_timeout: Duration = 30.0             # PostgreSQL closes a segment at least this often (the RPO)
    poll_interval: Duration = 0.5                # how often the shipper looks into the spool
    spool_dir: str | None = None                 # default: <server files>/wal-spool (written by PostgreSQL)
    compression_level: int = Field(3, ge=1, le=22)
