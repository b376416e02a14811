"""ErrorHandler: classifies each failed job and decides: retry, retry with more, pause, exhaust.

Retries wait out a cool-off (a delayed `RetryJob` message; linear, squared or exponential in
the retry count, from the request's retry policy). Every decision is recorded on the job's
transition with its class and reason, and logged.

Reconciliation: every `reconcile_s`, failed jobs (submitfailed, jobfailed, lost) left undecided
for longer than that (their `JobFailed` was lost) are decided the same way. Jobs whose cool-off
is over but whose `RetryJob` never came are JobCreator's to reconcile (`cooloffs_over`, with
the policy both use).
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from prodagent.jobs import states, store
from prodagent.jobs.errors import (
    DEFAULT_RULES,
    Failure,
    Rule,
    classify,
    cooloff_delay,
    read_log_tail,
)
from prodagent.jobs.layout import Layout
from prodagent.payload.report import LOG_NAME
from prodagent.runtime.component import Component, Context, handles


class ErrorHandlerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Rule] = Field(default_factory=lambda: [Rule(**r) for r in DEFAULT_RULES])
    memory_factor: float = Field(1.5, gt=1)
    time_factor: float = Field(1.5, gt=1)
    max_memory_mb: int = Field(16000, ge=1)
    default_cooloff: str = Field("squared", pattern="^(linear|squared|exponential)$")
    default_base_s: float = Field(60.0, ge=0)
    reconcile_s: float = Field(60.0, gt=0)


def retry_delay(settings: ErrorHandlerSettings, workflow: dict[str, Any], retry: int) -> float:
    """The cool-off before the attempt after `retry`: the request's retry policy, else the defaults."""
    policy = workflow.get("retry") or {}
    return cooloff_delay(policy.get("cooloff", settings.default_cooloff),
                         float(policy.get("base_s", settings.default_base_s)), retry)


def cooloffs_over(conn: sa.Connection, agent: str, settings: ErrorHandlerSettings, before: float) -> list[int]:
    """Jobs of the agent in cool-off whose cool-off ended before `before` (their RetryJob is late)."""
    workflows: dict[str, dict[str, Any]] = {}
    due = []
    for job in store.jobs_in(conn, agent, [states.COOLOFF], updated_before=before):
        if job.request_id not in workflows:
            workflows[job.request_id] = store.workflow_for_request(conn, job.request_id) or {}
        if job.updated_at + retry_delay(settings, workflows[job.request_id], job.retry) < before:
            due.append(job.id)
    return due


class ErrorHandler(Component):
    name = "ErrorHandler"
    Settings = ErrorHandlerSettings

    @handles("JobFailed")
    def on_failed(self, ctx: Context, payload: dict[str, Any]) -> None:
        workflows: dict[str, dict[str, Any] | None] = {}
        for job in store.jobs(ctx.conn, payload["job_ids"]):
            if job.state not in states.FAILED:
                continue  # already decided (a second delivery) or killed meanwhile
            if job.request_id not in workflows:
                workflows[job.request_id] = store.workflow_for_request(ctx.conn, job.request_id)
            self._decide(ctx, job, workflows[job.request_id] or {})

    def reconcile(self, ctx: Context) -> None:
        stale = store.jobs_in(ctx.conn, self.config.agent.name, states.FAILED,
                              updated_before=time.time() - self.settings.reconcile_s)
        if stale:
            self.log.warning("%d failed job(s) undecided for over %.0fs (JobFailed lost?): deciding now",
                             len(stale), self.settings.reconcile_s)
            self.on_failed(ctx, {"job_ids": [j.id for j in stale]})

    def _decide(self, ctx: Context, job: Any, workflow: dict[str, Any]) -> None:
        log_tail = read_log_tail(Layout.attempt_dir(job.workdir, job.retry) / LOG_NAME)
        failure = Failure(job.job_type, job.error_code, job.exit_code, job.error_class, log_tail)
        rule = classify(self.settings.rules, failure)
        what = f"{rule.name}: {job.error_reason or job.error_class or f'exit {job.exit_code}'}"
        if rule.action == "pause":
            store.transition(ctx.conn, [job.id], states.PAUSED, f"{what}; paused for an operator", error_class=rule.name)
            self.log.warning("job %s paused: %s", job.name, what)
            return
        if rule.action == "exhaust" or job.retry >= job.max_retries:
            why = "no retry for this class" if rule.action == "exhaust" else f"{job.retry} retries used"
            store.transition(ctx.conn, [job.id], states.EXHAUSTED, f"{what}; {why}", error_class=rule.name)
            self.log.warning("job %s exhausted: %s (%s)", job.name, what, why)
            return
        delay = retry_delay(self.settings, workflow, job.retry)
        changes: dict[str, Any] = {"error_class": rule.name}
        if rule.action == "retry_more_memory":
            changes["memory_mb"] = min(self.settings.max_memory_mb, int(job.memory_mb * self.settings.memory_factor))
        if rule.action == "retry_more_time":
            changes["time_s"] = int(job.time_s * self.settings.time_factor)
        extra = "".join(f", {k} -> {v}" for k, v in changes.items() if k != "error_class")
        reason = f"{what}; {rule.action} in {delay:.0f}s{extra}"
        moved = store.transition(ctx.conn, [job.id], states.COOLOFF, reason, **changes)
        if moved.ids:
            ctx.publish("RetryJob", {"job_ids": [job.id], "reason": f"retry after {rule.name}"}, delay=delay)
            self.log.info("job %s: %s", job.name, reason)
