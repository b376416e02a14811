"""HTTP routes of the pull protocol (agents): register, acquire, renew, report, complete (one
allocation, or many in one call), release, merged, job detail (`prodmanager.job_reports`),
automatic job sizing (`prodmanager.sizing_reports`). Every route needs a bearer token of role `agent` (or `operator`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from prodmanager import deps
from prodmanager.auth import Principal
from prodmanager.job_reports import JobReports
from prodmanager.models import (
    AGENT_NAME_PATTERN,
    INT64_MAX,
    AcquireRequest,
    AcquireResponse,
    AgentInfo,
    AgentRegistration,
    AgentStatus,
    AllocationAck,
    CompleteMany,
    CompleteManyAck,
    CompleteReport,
    ErrorBody,
    JobReport,
    JobReportAck,
    MergedAck,
    MergedReport,
    ProgressReport,
    ReleaseRequest,
    RenewRequest,
    RenewResponse,
    SizingAck,
    SizingReport,
)
from prodmanager.pull_service import PullService
from prodmanager.sizing_reports import SizingReports

ERRORS = {s: {"model": ErrorBody} for s in (401, 403, 404, 409, 413, 422)}
router = APIRouter(prefix="/api/v1", tags=["pull"], responses=ERRORS)  # type: ignore[arg-type]

Caller = Annotated[Principal, Depends(deps.principal)]
Pull = Annotated[PullService, Depends(deps.pull)]
Reports = Annotated[JobReports, Depends(deps.job_reports)]
Sizings = Annotated[SizingReports, Depends(deps.sizing_reports)]
Agent = Annotated[str, Path(pattern=AGENT_NAME_PATTERN)]
AllocationId = Annotated[int, Path(ge=0, le=INT64_MAX)]


@router.post("/agents", response_model=AgentInfo)
def register_agent(body: AgentRegistration, caller: Caller, pull: Pull) -> AgentInfo:
    return pull.register(caller, body)


@router.get("/agents", response_model=list[AgentInfo])
def list_agents(caller: Caller, pull: Pull) -> list[AgentInfo]:
    return pull.agents(caller)


@router.post("/agents/{agent}/acquire", response_model=AcquireResponse)
def acquire(agent: Agent, body: AcquireRequest, caller: Caller, pull: Pull) -> AcquireResponse:
    return pull.acquire(caller, agent, body)


@router.post("/agents/{agent}/renew", response_model=RenewResponse)
def renew(agent: Agent, body: RenewRequest, caller: Caller, pull: Pull) -> RenewResponse:
    return pull.renew(caller, agent, body)


@router.post("/agents/{agent}/allocations/{allocation_id}/report", response_model=AllocationAck)
def report(
    agent: Agent, allocation_id: AllocationId, body: ProgressReport, caller: Caller, pull: Pull
) -> AllocationAck:
    return pull.report(caller, agent, allocation_id, body)


@router.post("/agents/{agent}/allocations/{allocation_id}/complete", response_model=AllocationAck)
def complete(
    agent: Agent, allocation_id: AllocationId, body: CompleteReport, caller: Caller, pull: Pull
) -> AllocationAck:
    return pull.complete(caller, agent, allocation_id, body)


@router.post("/agents/{agent}/completions", response_model=CompleteManyAck)
def complete_many(agent: Agent, body: CompleteMany, caller: Caller, pull: Pull) -> CompleteManyAck:
    return pull.complete_many(caller, agent, body)


@router.post("/agents/{agent}/allocations/{allocation_id}/release", response_model=AllocationAck)
def release(
    agent: Agent, allocation_id: AllocationId, body: ReleaseRequest, caller: Caller, pull: Pull
) -> AllocationAck:
    return pull.release(caller, agent, allocation_id, body)


@router.post("/agents/{agent}/merged", response_model=MergedAck)
def merged(agent: Agent, body: MergedReport, caller: Caller, pull: Pull) -> MergedAck:
    return pull.report_merged(caller, agent, body)


@router.post("/agents/{agent}/status", response_model=AgentStatus)
def report_status(agent: Agent, body: AgentStatus, caller: Caller, reports: Reports) -> AgentStatus:
    return reports.status(caller, agent, body)


@router.post("/agents/{agent}/jobs", response_model=JobReportAck)
def report_jobs(agent: Agent, body: JobReport, caller: Caller, reports: Reports) -> JobReportAck:
    return reports.report(caller, agent, body)


@router.post("/agents/{agent}/sizing", response_model=SizingAck)
def report_sizing(agent: Agent, body: SizingReport, caller: Caller, sizings: Sizings) -> SizingAck:
    return sizings.report(caller, agent, body)
