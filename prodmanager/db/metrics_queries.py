"""The SQL behind ProdManager's /metrics: grouped counts, one statement per metric family."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from prodmanager.db.schema import allocation, request


def requests_by_state(conn: sa.Connection) -> Sequence[sa.Row[Any]]:
    return conn.execute(
        sa.select(request.c.state, sa.func.count().label("n")).group_by(request.c.state)
    ).all()


def allocations_by_state(conn: sa.Connection, now: float) -> Sequence[sa.Row[Any]]:
    """Open allocations split into leased (a lease runs) and available."""
    state = sa.case(
        (sa.and_(allocation.c.state == "open", allocation.c.lease_expires >= now), "leased"),
        (allocation.c.state == "open", "available"),
        else_=allocation.c.state,
    ).label("state")
    return conn.execute(sa.select(state, sa.func.count().label("n")).group_by(state)).all()
