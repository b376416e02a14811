"""State machines of requests and allocations, as explicit transition tables.

Request life: new -> assigned (first allocation handed out) -> running (first progress)
-> completed (every allocation done) -> closed (all output merged, or closed by hand).
Branches: paused (no new allocations go out; resume returns to where it was), aborted
(allocations recalled), failed (finished with some allocations failed; `clone` resubmits them).
"""

from __future__ import annotations

from enum import StrEnum

from prodmanager.errors import IllegalTransition


class RequestState(StrEnum):
    NEW = "new"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    CLOSED = "closed"
    ABORTED = "aborted"
    FAILED = "failed"
    PAUSED = "paused"


R = RequestState
REQUEST_TRANSITIONS: dict[RequestState, frozenset[RequestState]] = {
    R.NEW: frozenset({R.ASSIGNED, R.PAUSED, R.ABORTED}),
    R.ASSIGNED: frozenset({R.RUNNING, R.COMPLETED, R.FAILED, R.PAUSED, R.ABORTED}),
    R.RUNNING: frozenset({R.COMPLETED, R.FAILED, R.PAUSED, R.ABORTED}),
    # While paused, leased work may still finish; resume goes back to new, assigned or running.
    R.PAUSED: frozenset({R.NEW, R.ASSIGNED, R.RUNNING, R.COMPLETED, R.FAILED, R.ABORTED}),
    R.COMPLETED: frozenset({R.CLOSED}),
    R.FAILED: frozenset({R.CLOSED, R.RUNNING}),  # -> running: a run of it is reprocessed
    R.CLOSED: frozenset(),
    R.ABORTED: frozenset(),
}

ACQUIRABLE = frozenset({R.NEW, R.ASSIGNED, R.RUNNING})  # allocations may go out
LIVE = frozenset({R.NEW, R.ASSIGNED, R.RUNNING, R.PAUSED})  # work may still be done
FINISHED = frozenset({R.COMPLETED, R.FAILED, R.CLOSED, R.ABORTED})


def check_request_transition(current: str, target: str) -> None:
    """Raise IllegalTransition unless the table allows current -> target."""
    if RequestState(target) not in REQUEST_TRANSITIONS[RequestState(current)]:
        allowed = ", ".join(sorted(REQUEST_TRANSITIONS[RequestState(current)])) or "none"
        raise IllegalTransition(
            f"request in state '{current}' cannot go to '{target}' (allowed: {allowed})",
            state=current,
        )


class AllocationState(StrEnum):
    OPEN = "open"  # waiting or leased: leased while lease_expires is in the future
    DONE = "done"
    FAILED = "failed"  # the agent gave up on it (retries exhausted)
    RECALLED = "recalled"  # its request was aborted


A = AllocationState
ALLOCATION_TRANSITIONS: dict[AllocationState, frozenset[AllocationState]] = {
    A.OPEN: frozenset({A.OPEN, A.DONE, A.FAILED, A.RECALLED}),  # open -> open: (re)lease, release
    A.DONE: frozenset(),
    A.FAILED: frozenset({A.OPEN}),  # an operator reprocesses the run it belongs to
    A.RECALLED: frozenset(),
}


def check_allocation_transition(current: str, target: str) -> None:
    """Raise IllegalTransition unless the table allows current -> target."""
    if AllocationState(target) not in ALLOCATION_TRANSITIONS[AllocationState(current)]:
        raise IllegalTransition(f"allocation in state '{current}' cannot go to '{target}'", state=current)
