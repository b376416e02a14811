"""The agent's file states: an explicit table of allowed transitions, enforced by the store.

    unmerged:  new -> merging -> merged -> cleaned
                 ^------'                   ^
                 |  (a failed merge gives its inputs back: remerge)
                 '-> void ------------------'
    merged:    final

A production job's outputs are registered `new`; MergeSensor gives a group of them to a merge
job (`merging`) and, when the merge is accepted, marks them `merged`; Cleanup deletes them from
disk (`cleaned`). A merged file is registered `final` and never changes.

`void`: the output of an allocation that ended without being completed with ProdManager (lost,
recalled, failed or released): it is never merged (ProdManager would refuse it, and another lease
produces those events again). Cleanup's reconciliation marks such files void and deletes them from
disk (`cleaned`).
"""

from __future__ import annotations

from prodagent.errors import IllegalTransition

UNMERGED = "unmerged"
MERGED_KIND = "merged"
KINDS = frozenset({UNMERGED, MERGED_KIND})

NEW = "new"
MERGING = "merging"
MERGED = "merged"
CLEANED = "cleaned"
VOID = "void"
FINAL = "final"

# The state a file of each kind is registered in.
INITIAL: dict[str, str] = {UNMERGED: NEW, MERGED_KIND: FINAL}

TRANSITIONS: dict[str, frozenset[str]] = {
    NEW: frozenset({MERGING, VOID}),
    MERGING: frozenset({MERGED, NEW}),  # new: the inputs of a failed merge given back
    MERGED: frozenset({CLEANED}),
    VOID: frozenset({CLEANED}),
    CLEANED: frozenset(),
    FINAL: frozenset(),
}

ALL_STATES = frozenset(TRANSITIONS)
WAITING = frozenset({NEW, MERGING})  # still to be merged: their producer keeps its work area


def check(from_state: str, to_state: str) -> None:
    if to_state not in TRANSITIONS.get(from_state, frozenset()):
        raise IllegalTransition(f"file state {from_state!r} -> {to_state!r} is not allowed")


def check_initial(kind: str, state: str) -> None:
    if INITIAL.get(kind) != state:
        raise IllegalTransition(f"a {kind!r} file is registered as {INITIAL.get(kind)!r}, not {state!r}")
