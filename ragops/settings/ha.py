"""`database.patroni`: the timings and ports of the Patroni + etcd cluster (`database.ha: patroni`)."""
from __future__ import annotations

from pydantic import Field

from ragops.config_types import Port, SecretRef, Strict

#: Patroni raises any ttl below this to it (patroni/config.py, validator.py): the floor of failover time
PATRONI_MIN_TTL = 20


class PatroniSettings(Strict):
    # the DCS settings Patroni keeps in etcd (`ragops db ha config` changes them live)
    ttl: int = Field(30, ge=PATRONI_MIN_TTL, le=3600)          # leader key lifetime, seconds
    loop_wait: int = Field(10, ge=1, le=600)                   # seconds between Patroni's cycles
    retry_timeout: int = Field(10, ge=1, le=600)               # DCS / PostgreSQL operation retries
    maximum_lag_on_failover: int = Field(1048576, ge=0)        # bytes a replica may lag and still lead
    synchronous_mode: bool = False                             # 0 acknowledged writes lost on failover
    # local platform: where the processes listen (127.0.0.1 only)
    rest_port: Port = 8008                                     # node i's REST API on rest_port + i
    etcd_port: Port = 2379                                     # member i: client etcd_port + 2i, peer + 2i + 1
    rest_password: SecretRef | None = None                     # local generates one if unset
    scope: str | None = None                                   # the cluster name; default <project>-<env>
    endpoint_port: Port | None = None                          # the leader-aware endpoint; default etcd_port + 6

    def endpoint(self) -> int:
        """Where the leader-aware endpoint (HAProxy, ragops/ha/endpoint.py) listens."""
        return self.endpoint_port if self.endpoint_port is not None else self.etcd_port + 6
