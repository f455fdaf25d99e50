"""`sql`: run a query on a database node and optionally check what it returns."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from ragops import secrets
from ragops.db import connect as db_connect
from ragops.errors import GateFailed, OperationFailed, RagopsError
from ragops.journal import to_jsonable
from ragops.runbook.operations.common import UNSET, with_outputs
from ragops.runbook.operations.registry import Context, operation


def step_dsn(ctx: Context, dsn: str | None, node: str | None, dbname: str | None) -> str:
    """The step's conninfo: `dsn` (a secret reference is resolved), else the node's (default: the primary)."""
    if dsn:
        if secrets.is_reference(dsn):
            if ctx.config is not None:
                return ctx.config.reveal(dsn, f"runbook step {ctx.step.id}.dsn")
            return secrets.resolve(dsn, key=f"step {ctx.step.id}: dsn")
        return str(dsn)
    from ragops.db.roles import role_dsn

    return role_dsn(ctx.require_config(), node, dbname=dbname)


@operation("sql", gate=True)
def sql(ctx: Context, *, query: str, node: str | None = None, dbname: str | None = None, dsn: str | None = None,
        expect: Any = UNSET, expect_rows: int | None = None) -> dict:
    """Run SQL on a database node; optionally compare the first value with `expect`.

    node: a node's name, or a role resolved when the step runs: `primary` (the default; waits
    through a switchover) or `replica`; dsn: a conninfo or secret reference instead; expect_rows: the
    expected number of rows.
    """
    target = step_dsn(ctx, dsn, node, dbname)
    try:
        with db_connect.connect(target, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(str(query))
            rows = cur.fetchall() if cur.description else []
            rowcount = cur.rowcount
    except RagopsError:
        raise
    except Exception as exc:  # noqa: BLE001 - psycopg errors: one line, secrets redacted later
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise OperationFailed(f"sql: {type(exc).__name__}: {first}") from None
    plain = [[_plain(v) for v in row] for row in rows[:1000]]
    outputs = {"rows": to_jsonable(plain), "rowcount": rowcount, "value": plain[0][0] if plain and plain[0] else None}
    if expect is not UNSET and not _same(outputs["value"], expect):
        raise with_outputs(GateFailed(f"sql: expected {expect!r}, got {outputs['value']!r}"), outputs)
    if expect_rows is not None and len(rows) != int(expect_rows):
        raise with_outputs(GateFailed(f"sql: expected {expect_rows} rows, got {len(rows)}"), outputs)
    return outputs


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def _same(left: Any, right: Any) -> bool:
    if left == right:
        return True
    try:
        return float(left) == float(right)
    except (TypeError, ValueError):
        return str(left) == str(right)
