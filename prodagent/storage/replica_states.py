"""Replica states and roles: an explicit table of allowed transitions, enforced by the catalog.

    verified -> deleted        (cleanup removed it from its element)
        |  ^
        v  |
      corrupt -> deleted       (its bytes no longer match the catalog's adler32)
    deleted -> verified        (written again under the same name, e.g. by a retried job)

A replica is recorded `verified`: its adler32 on the element was compared with the source's when
it was written. Roles: `unmerged` (a production job's output), `merged` (a merge job's output),
`archive` (a merged file's copy on the archive element). `workarea` names the agent's own disk
when no storage element is configured.
"""

from __future__ import annotations

from prodagent.errors import IllegalTransition

VERIFIED = "verified"
CORRUPT = "corrupt"
DELETED = "deleted"

UNMERGED = "unmerged"
MERGED = "merged"
ARCHIVE = "archive"
ROLES = frozenset({UNMERGED, MERGED, ARCHIVE})

WORKAREA = "workarea"

TRANSITIONS: dict[str, frozenset[str]] = {
    VERIFIED: frozenset({DELETED, CORRUPT}),
    CORRUPT: frozenset({DELETED, VERIFIED}),
    DELETED: frozenset({VERIFIED}),
}
LIVE = frozenset({VERIFIED, CORRUPT})  # still occupying space on the element


def check(from_state: str, to_state: str) -> None:
    if to_state not in TRANSITIONS.get(from_state, frozenset()):
        raise IllegalTransition(f"replica state {from_state!r} -> {to_state!r} is not allowed")
