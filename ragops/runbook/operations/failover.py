"""Region failover: the DNS flip alone, or the whole failover."""
from __future__ import annotations

from typing import Any

from ragops import failover
from ragops.dns import registry as dns
from ragops.errors import OperationFailed
from ragops.runbook.operations.common import flag, to_outputs, with_outputs
from ragops.runbook.operations.registry import Context, operation


@operation("dns.failover")
def dns_failover(ctx: Context, *, to: str | None = None) -> dict:
    """Point the DNS record at the other region. to: primary or secondary (default)."""
    return to_outputs(dns.failover(ctx.require_config(), to=str(to or "secondary"), progress=ctx.progress))


@operation("region.failover")
def region_failover(ctx: Context, *, to: str | None = None, failure_time: Any = None, confirm_down: Any = False,
                    skip_service: Any = False) -> dict:
    """Fail over to another region: fence, promote the replica, DNS, start the standby service, smoke test.

    to: region name; failure_time: when the failure began (the RTO's origin).
    """
    outputs = to_outputs(failover.region_failover(ctx.require_config(), to=to or None,
                                                  failure_time=failure_time or None,
                                                  confirm_down=flag(confirm_down), skip_service=flag(skip_service),
                                                  progress=ctx.progress))
    if outputs.get("passed") is False:
        raise with_outputs(OperationFailed("region failover did not pass: " + "; ".join(outputs.get("notes") or [])),
                           outputs)
    return outputs
