"""Every statement the message service issues, in one place.

Claims lock rows with `FOR UPDATE SKIP LOCKED` on MariaDB/MySQL (SQLite serialises writers with
`BEGIN IMMEDIATE` instead and ignores the clause). Rows are always touched in id order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa

from prodagent.db.schema import ms_dead_letter, ms_history, ms_message, ms_process, ms_subscription

M = ms_message


# The statements a consumer runs for every batch are built once, with bound parameters, so
# that a batch costs no statement construction (the ids go in an expanding IN parameter).
_IDS = sa.bindparam("ids", expanding=True)
_CLAIM_ORDER = (M.c.priority.desc(), M.c.available_at, M.c.id)
_CLAIM_COLUMNS = (M.c.id, M.c.msg_type, M.c.payload, M.c.priority, M.c.source, M.c.created_at, M.c.deliveries)
_READY = (
    M.c.agent == sa.bindparam("agent"),
    M.c.component == sa.bindparam("component"),
    M.c.available_at <= sa.bindparam("now"),
)
# SQLite: one statement (BEGIN IMMEDIATE already serialises the consumers).
_CLAIM = (
    sa.select(*_CLAIM_COLUMNS).where(*_READY).order_by(*_CLAIM_ORDER)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
# MariaDB/MySQL: a locking scan of the claim index at READ COMMITTED pays a lock and an unlock
# for every row deleted by earlier batches and not yet purged, which costs the server two to
# three times what the claim itself does. So the candidates are found by a plain read (which
# skips deleted rows cheaply) and then locked through the primary key with SKIP LOCKED.
_CANDIDATES = (
    sa.select(M.c.id).where(*_READY).order_by(*_CLAIM_ORDER)
    .limit(sa.bindparam("limit", type_=sa.Integer)).offset(sa.bindparam("offset", type_=sa.Integer))
)
_LOCK_READY = (
    sa.select(*_CLAIM_COLUMNS)
    .where(M.c.id.in_(_IDS), M.c.available_at <= sa.bindparam("now"))
    .order_by(*_CLAIM_ORDER)
    .with_for_update(skip_locked=True)
)
_DELETE = sa.delete(M).where(M.c.id.in_(_IDS))
_HISTORY_COLUMNS = ["id", "agent", "component", "msg_type", "source", "created_at", "handled_at", "deliveries"]
_TO_HISTORY = sa.insert(ms_history).from_select(
    _HISTORY_COLUMNS,
    sa.select(
        M.c.id, M.c.agent, M.c.component, M.c.msg_type, M.c.source, M.c.created_at,
        sa.bindparam("now", type_=sa.Double()), M.c.deliveries + sa.bindparam("uncounted", type_=sa.Integer),
    ).where(M.c.id.in_(_IDS)),
)

# MariaDB/MySQL, rows by id: when an id list is as long as the optimizer believes the table to
# be (queues are often nearly empty), it reads `id IN (...)` by a full scan, ignoring index
# hints, and a DELETE then waits for every row other consumers hold. Joining the ids as a
# JSON_TABLE, in that order (STRAIGHT_JOIN), always looks each one up by primary key. The
# ids travel as one JSON string: nothing to escape per id. (MariaDB >= 10.6, MySQL >= 8.0.)
_BY_IDS = "JSON_TABLE(:ids, '$[*]' COLUMNS (id BIGINT PATH '$')) AS t STRAIGHT_JOIN ms_message AS m ON m.id = t.id"
_LOCK_READY_MYSQL = sa.text(
    "SELECT m.id, m.msg_type, m.payload, m.priority, m.source, m.created_at, m.deliveries"
    f" FROM {_BY_IDS} WHERE m.available_at <= :now"
    " ORDER BY m.priority DESC, m.available_at, m.id FOR UPDATE SKIP LOCKED"
)
_DELETE_MYSQL = sa.text(f"DELETE m FROM {_BY_IDS}")
_TO_HISTORY_MYSQL = sa.text(
    f"INSERT INTO ms_history ({', '.join(_HISTORY_COLUMNS)})"
    " SELECT m.id, m.agent, m.component, m.msg_type, m.source, m.created_at, :now, m.deliveries + :uncounted"
    f" FROM {_BY_IDS}"
)

Statement = tuple[sa.Executable, dict[str, object]]


def claimable(agent: str, component: str, now: float, limit: int) -> Statement:
    """The first `limit` ready messages, in delivery order (the SQLite claim)."""
    return _CLAIM, {"agent": agent, "component": component, "now": now, "limit": limit}


def candidates(agent: str, component: str, now: float, limit: int, offset: int) -> Statement:
    """Ids of ready messages in delivery order, read without locks (may include claimed ones)."""
    return _CANDIDATES, {"agent": agent, "component": component, "now": now, "limit": limit, "offset": offset}


def _id_list(ids: Sequence[int], mysql: bool) -> object:
    return json.dumps(list(ids)) if mysql else list(ids)


_LOCK_MINE = (
    sa.select(M.c.id).where(M.c.id.in_(_IDS), M.c.claimed_by == sa.bindparam("process_id"))
    .order_by(M.c.id).with_for_update()
)
_LOCK_MINE_MYSQL = sa.text(f"SELECT m.id FROM {_BY_IDS} WHERE m.claimed_by = :process_id ORDER BY m.id FOR UPDATE")


def lock_still_mine(ids: Sequence[int], process_id: int, mysql: bool) -> Statement:
    """Lock those of `ids` this process still holds under a lease (in id order)."""
    return (_LOCK_MINE_MYSQL if mysql else _LOCK_MINE), {"ids": _id_list(sorted(ids), mysql), "process_id": process_id}


def lock_ready(ids: Sequence[int], now: float, mysql: bool) -> Statement:
    """Lock those of `ids` still ready and not locked by another consumer, in delivery order."""
    return (_LOCK_READY_MYSQL if mysql else _LOCK_READY), {"ids": _id_list(ids, mysql), "now": now}


def mark_claimed(ids: Sequence[int], process_id: int, lease_until: float) -> sa.Update:
    return (
        sa.update(M)
        .where(M.c.id.in_(ids))
        .values(available_at=lease_until, claimed_by=process_id, deliveries=M.c.deliveries + 1)
    )


def charge_delivery(ids: Sequence[int]) -> sa.Update:
    return sa.update(M).where(M.c.id.in_(sorted(ids))).values(deliveries=M.c.deliveries + 1)


def delete_messages(ids: Sequence[int], mysql: bool) -> Statement:
    return (_DELETE_MYSQL if mysql else _DELETE), {"ids": _id_list(ids, mysql)}


def release(ids: Sequence[int], available_at: float, error: str | None) -> sa.Update:
    return (
        sa.update(M)
        .where(M.c.id.in_(ids))
        .values(available_at=available_at, claimed_by=None, last_error=error)
    )


def release_claims_of(process_ids: Sequence[int], now: float) -> sa.Update:
    return (
        sa.update(M)
        .where(M.c.claimed_by.in_(process_ids), M.c.available_at > now)
        .values(available_at=now, claimed_by=None)
    )


def copy_to_dead_letters(ids: Sequence[int], now: float, error: str | None) -> sa.Insert:
    src = sa.select(
        M.c.id, M.c.agent, M.c.component, M.c.msg_type, M.c.payload, M.c.priority, M.c.source,
        M.c.created_at, sa.literal(now, sa.Double()), M.c.deliveries,
        sa.func.coalesce(sa.literal(error, sa.Text()), M.c.last_error),
    ).where(M.c.id.in_(ids))
    return sa.insert(ms_dead_letter).from_select(
        ["id", "agent", "component", "msg_type", "payload", "priority", "source", "created_at",
         "failed_at", "deliveries", "last_error"],
        src,
    )


def copy_to_history(ids: Sequence[int], now: float, uncounted: int, mysql: bool) -> Statement:
    """Record handled messages server-side; `uncounted` deliveries are not in the row yet."""
    return (_TO_HISTORY_MYSQL if mysql else _TO_HISTORY), {"ids": _id_list(ids, mysql), "now": now, "uncounted": uncounted}


insert_message = sa.insert(M)


def subscribers(agent: str) -> sa.Select:
    return sa.select(ms_subscription.c.msg_type, ms_subscription.c.component).where(
        ms_subscription.c.agent == agent
    )


def subscriptions_of(agent: str, component: str) -> sa.Select:
    return sa.select(ms_subscription.c.msg_type).where(
        ms_subscription.c.agent == agent, ms_subscription.c.component == component
    )


def drop_subscriptions(agent: str, component: str, keep: Sequence[str]) -> sa.Delete:
    return sa.delete(ms_subscription).where(
        ms_subscription.c.agent == agent,
        ms_subscription.c.component == component,
        ms_subscription.c.msg_type.not_in(keep),
    )


insert_subscription = sa.insert(ms_subscription)
insert_process = sa.insert(ms_process)


def heartbeat(process_id: int, now: float, handled: int) -> sa.Update:
    return sa.update(ms_process).where(ms_process.c.id == process_id).values(
        heartbeat_at=now, handled=handled
    )


def stop_process(process_id: int, now: float) -> sa.Update:
    return sa.update(ms_process).where(ms_process.c.id == process_id).values(
        stopped_at=now, heartbeat_at=now
    )


def processes_of(agent: str, component: str) -> sa.Select:
    return sa.select(ms_process).where(
        ms_process.c.agent == agent, ms_process.c.component == component
    ).order_by(ms_process.c.id)


def running_processes(agent: str, component: str | None = None) -> sa.Select:
    """(component, host, pid, started_at, heartbeat_at, id) of this agent's processes not marked
    stopped: every component's, or one's."""
    P = ms_process.c
    query = sa.select(P.component, P.host, P.pid, P.started_at, P.heartbeat_at, P.id).where(
        P.agent == agent, P.stopped_at.is_(None)
    )
    return query if component is None else query.where(P.component == component)


def queued_payloads(agent: str, component: str, msg_type: str) -> sa.Select:
    """The payloads of a component's messages of one type not yet handled (claimed or not)."""
    return sa.select(M.c.payload).where(M.c.agent == agent, M.c.component == component, M.c.msg_type == msg_type)


def queue_stats(agent: str, now: float) -> sa.Select:
    return (
        sa.select(
            M.c.component,
            M.c.msg_type,
            sa.func.count().label("pending"),
            sa.func.sum(sa.case((M.c.available_at <= now, 1), else_=0)).label("ready"),
            sa.func.min(M.c.created_at).label("oldest"),
            sa.func.max(M.c.deliveries).label("max_deliveries"),
        )
        .where(M.c.agent == agent)
        .group_by(M.c.component, M.c.msg_type)
    )


def dead_letter_counts(agent: str) -> sa.Select:
    return (
        sa.select(ms_dead_letter.c.component, sa.func.count().label("dead"))
        .where(ms_dead_letter.c.agent == agent)
        .group_by(ms_dead_letter.c.component)
    )


def dead_letters(agent: str, component: str | None = None) -> sa.Select:
    query = sa.select(ms_dead_letter).where(ms_dead_letter.c.agent == agent)
    if component:
        query = query.where(ms_dead_letter.c.component == component)
    return query.order_by(ms_dead_letter.c.id)


def dead_letter(agent: str, message_id: int) -> sa.Select:
    return sa.select(ms_dead_letter).where(
        ms_dead_letter.c.agent == agent, ms_dead_letter.c.id == message_id
    ).with_for_update()


def delete_dead_letters(agent: str, ids: Sequence[int] | None) -> sa.Delete:
    query = sa.delete(ms_dead_letter).where(ms_dead_letter.c.agent == agent)
    if ids is not None:
        query = query.where(ms_dead_letter.c.id.in_(ids))
    return query


def purge_history(older_than: float) -> sa.Delete:
    return sa.delete(ms_history).where(ms_history.c.handled_at < older_than)
