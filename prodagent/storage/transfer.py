"""Stage-out: the job wrapper's copy of an output to its site's storage element.

The job spec carries a `StageOutSpec`: the output's LFN, the element of each site (`*`: every
other site) and the retry policy. The wrapper learns its site from `PRODAGENT_SITE` (set by the
submitter). A transient failure (server away, timeout, checksum mismatch) is retried with
exponential backoff (tenacity); when the policy runs out, `StageOutFailed` is raised and the job
fails with its own error code (`codes.STAGEOUT_FAILED`), which the ErrorHandler retries. Each try
is a whole verified put (`StorageElement.put`), so the final name never holds a partial file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from prodagent.storage.base import ElementSpec, Stat, StorageError, TransientStorageError
from prodagent.storage.names import check_lfn
from prodagent.storage.registry import open_element
from prodagent.storage.settings import ElementName, StageOutPolicy, StorageSection

SITE_ENV = "PRODAGENT_SITE"
log = logging.getLogger("prodagent.stageout")


class StageOutFailed(StorageError):
    """Every stage-out attempt the policy allows has failed."""


class Destination(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: ElementName
    element: ElementSpec


class StageOutSpec(BaseModel):
    """Where a job's output goes: its LFN and each site's element."""

    model_config = ConfigDict(extra="forbid")
    lfn: Annotated[str, Field(max_length=500), AfterValidator(check_lfn)]
    by_site: dict[str, Destination] = Field(min_length=1)
    policy: StageOutPolicy = Field(default_factory=StageOutPolicy)

    def destination(self, site: str | None) -> Destination:
        chosen = self.by_site.get(site or "") or self.by_site.get("*")
        if chosen is None:
            raise StageOutFailed(f"no storage element for site {site!r} (known: {sorted(self.by_site)})")
        return chosen


def stage_out_spec(storage: StorageSection, lfn: str) -> StageOutSpec | None:
    """The stage-out of `lfn` under this configuration; None when outputs stay in the work area."""
    if not storage.enabled:
        return None
    names = {site: storage.default if site == "*" else storage.sites[site] for site in storage.element_map()}
    return StageOutSpec(
        lfn=lfn,
        by_site={site: Destination(name=str(name), element=storage.elements[str(name)]) for site, name in names.items()},
        policy=storage.stageout,
    )


@dataclass(frozen=True)
class Placed:
    element: str
    stat: Stat
    attempts: int


def stage_out(spec: StageOutSpec, local: Path, site: str | None = None) -> Placed:
    """Put `local` at the spec's LFN on the site's element, retrying transient failures."""
    target = spec.destination(site if site is not None else os.environ.get(SITE_ENV))
    element = open_element(target.element, target.name)
    policy = spec.policy

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("stage-out of %s to %s: attempt %d failed (%s); again in %.1f s", spec.lfn, target.name,
                    state.attempt_number, exc, state.next_action.sleep if state.next_action else 0.0)

    retrying = Retrying(
        retry=retry_if_exception_type(TransientStorageError),
        wait=wait_exponential(multiplier=policy.backoff_s, max=policy.backoff_max_s),
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_s),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                stat = element.put(local, spec.lfn)
    except StorageError as exc:
        tries = retrying.statistics.get("attempt_number", 1)
        raise StageOutFailed(f"stage-out of {spec.lfn} to {target.name} failed after {tries} attempt(s): {exc}") from exc
    return Placed(target.name, stat, retrying.statistics.get("attempt_number", 1))
