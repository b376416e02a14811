"""The job state machine: an explicit table of allowed transitions.

    created -> submitted -> running -> success -> cleaned
       |           |           |
  submitfailed  jobfailed / lost   (the batch system or the job report says failure)
        \\__________|__________/
                   v
         cooloff --(delay)--> created (retry n+1)
         paused  (an operator resubmits or kills; also from cool-off when the next attempt cannot be built)
         exhausted (retries used up; an operator may still resubmit)
    killed: from any live state
    success -> jobfailed: output refused on acceptance (MergeSensor refuses a merged file)
"""

from __future__ import annotations

from prodagent.errors import IllegalTransition

CREATED = "created"
SUBMITTED = "submitted"
RUNNING = "running"
SUCCESS = "success"
CLEANED = "cleaned"
SUBMITFAILED = "submitfailed"
JOBFAILED = "jobfailed"
LOST = "lost"
COOLOFF = "cooloff"
PAUSED = "paused"
EXHAUSTED = "exhausted"
KILLED = "killed"

_DECIDE = {COOLOFF, PAUSED, EXHAUSTED, KILLED}

TRANSITIONS: dict[str, frozenset[str]] = {
    CREATED: frozenset({SUBMITTED, SUBMITFAILED, KILLED}),
    SUBMITTED: frozenset({RUNNING, SUCCESS, JOBFAILED, LOST, KILLED}),
    RUNNING: frozenset({SUCCESS, JOBFAILED, LOST, KILLED}),
    SUCCESS: frozenset({CLEANED, JOBFAILED}),  # jobfailed: output refused on acceptance
    SUBMITFAILED: frozenset(_DECIDE),
    JOBFAILED: frozenset(_DECIDE),
    LOST: frozenset(_DECIDE),
    COOLOFF: frozenset({CREATED, PAUSED, KILLED}),  # paused: its next attempt cannot be built
    PAUSED: frozenset({CREATED, EXHAUSTED, KILLED}),
    EXHAUSTED: frozenset({CREATED, KILLED}),
    CLEANED: frozenset(),
    KILLED: frozenset(),
}

ALL_STATES = frozenset(TRANSITIONS)
IN_BATCH = frozenset({SUBMITTED, RUNNING})
FAILED = frozenset({SUBMITFAILED, JOBFAILED, LOST})
NEEDS_OPERATOR = frozenset({PAUSED, EXHAUSTED})
TERMINAL = frozenset({CLEANED, KILLED})
# Jobs that will still produce something without an operator.
LIVE = frozenset({CREATED, SUBMITTED, RUNNING, SUBMITFAILED, JOBFAILED, LOST, COOLOFF})
DONE_OK = frozenset({SUCCESS, CLEANED})


def allowed_from(to_state: str) -> frozenset[str]:
    """Every state from which `to_state` may be entered."""
    return frozenset(s for s, targets in TRANSITIONS.items() if to_state in targets)


def check(from_state: str, to_state: str) -> None:
    if to_state not in TRANSITIONS.get(from_state, frozenset()):
        raise IllegalTransition(f"job state {from_state!r} -> {to_state!r} is not allowed")
