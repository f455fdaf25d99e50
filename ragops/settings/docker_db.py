"""Settings of the docker platform's database containers (`docker.database` in ragops.yaml)."""
from __future__ import annotations

from pydantic import Field

from ragops.config_types import Duration, Strict


class DockerDatabaseSettings(Strict):
    """The PostgreSQL primary and replicas as containers (database.accessories, see docker_db.py)."""
    image: str = "ragops/postgres:16"            # scripts/docker-images.sh builds it (pgserver's PostgreSQL 16)
    start_timeout: Duration = 90.0               # until a node accepts connections
    shm_size: str = Field("128m", pattern=r"^\d+[kmg]$")
