"""The site circuit breaker's states: one table of allowed transitions.

    normal -> degraded -> banned -> probing -> normal   (after consecutive successes)
       ^________/                      \\-> banned     (a probe failed at the site)

`degraded` sites get fewer jobs, `banned` none, `probing` only a few at a time. An operator may
force any state (`prodagent sites force`); a forced state stays until the operator releases it.
"""

from __future__ import annotations

from prodagent.errors import IllegalTransition

NORMAL = "normal"
DEGRADED = "degraded"
BANNED = "banned"
PROBING = "probing"

TRANSITIONS: dict[str, frozenset[str]] = {
    NORMAL: frozenset({DEGRADED}),
    DEGRADED: frozenset({NORMAL, BANNED}),
    BANNED: frozenset({PROBING}),
    PROBING: frozenset({NORMAL, BANNED}),
}
ALL_STATES = frozenset(TRANSITIONS)
# Share of a site's free slots placement may use in each state (probing: see `probe_jobs`).
WEIGHT = {NORMAL: 1.0, DEGRADED: 0.5, PROBING: 1.0, BANNED: 0.0}


def check(from_state: str, to_state: str, forced: bool = False) -> None:
    """Raise unless the table allows the move (an operator may force any state)."""
    if to_state not in ALL_STATES:
        raise IllegalTransition(f"unknown site state {to_state!r}; known: {sorted(ALL_STATES)}")
    if not forced and to_state not in TRANSITIONS.get(from_state, frozenset()):
        raise IllegalTransition(f"site state {from_state!r} -> {to_state!r} is not allowed")
