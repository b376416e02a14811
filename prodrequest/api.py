"""HTTP routes of ProdRequest: submit, validate, list, show, abort, pause, resume, close, clone,
resubmit (paused jobs).

A workflow is submitted as the raw document (YAML, or JSON with a JSON content type), so the
size and encoding checks see exactly the bytes the requester sent.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from prodmanager import deps
from prodmanager.auth import Principal
from prodmanager.models import (
    INT64_MAX,
    TOKEN_NAME_PATTERN,
    ActionBody,
    AllocationInfo,
    ErrorBody,
    FileInfo,
    RequestDetail,
    RequestSummary,
    ResubmitBody,
    ResubmitResult,
    RunInfo,
    SubmitResult,
    ValidateResult,
    WhoAmI,
)
from prodmanager.request_service import RequestService

ERRORS = {s: {"model": ErrorBody} for s in (401, 403, 404, 409, 413, 422)}
router = APIRouter(prefix="/api/v1", tags=["requests"], responses=ERRORS)  # type: ignore[arg-type]

Caller = Annotated[Principal, Depends(deps.principal)]
Service = Annotated[RequestService, Depends(deps.requests)]
Reason = Annotated[ActionBody | None, Body()]
RequestId = Annotated[int, Path(ge=0, le=INT64_MAX)]
States = Annotated[list[str] | None, Query(max_length=20)]


@router.get("/whoami", response_model=WhoAmI)
def whoami(caller: Caller) -> WhoAmI:
    return WhoAmI(name=caller.name, role=caller.role)


@router.post("/requests", response_model=SubmitResult, status_code=201)
async def submit(
    request: Request, response: Response, caller: Caller, service: Service
) -> SubmitResult:
    data = await request.body()  # the guard has already bounded it (prodmanager.guard)
    result = await run_in_threadpool(
        service.submit_document, caller, data, request.headers.get("content-type")
    )
    if not result.created:
        response.status_code = 200
    return result


@router.post("/requests/validate", response_model=ValidateResult)
async def validate(request: Request, caller: Caller, service: Service) -> ValidateResult:
    """Every check of a submit, storing nothing: 200 when the document would be accepted, else
    the submit's 4xx naming the fields."""
    data = await request.body()  # bounded by the guard like a submit
    await run_in_threadpool(
        service.validate_document, caller, data, request.headers.get("content-type")
    )
    return ValidateResult(valid=True)


@router.get("/requests", response_model=list[RequestSummary])
def list_requests(
    caller: Caller,
    service: Service,
    state: States = None,
    owner: Annotated[str | None, Query(pattern=TOKEN_NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[RequestSummary]:
    return service.list(caller, state, owner, limit)


@router.get("/requests/{request_id}", response_model=RequestDetail)
def show(request_id: RequestId, caller: Caller, service: Service) -> RequestDetail:
    return service.get(caller, request_id)


@router.get("/requests/{request_id}/allocations", response_model=list[AllocationInfo])
def allocations(
    request_id: RequestId,
    caller: Caller,
    service: Service,
    state: States = None,
) -> list[AllocationInfo]:
    return service.allocations(caller, request_id, state)


@router.post("/requests/{request_id}/abort", response_model=RequestSummary)
def abort(
    request_id: RequestId, caller: Caller, service: Service, body: Reason = None
) -> RequestSummary:
    return service.abort(caller, request_id, body.reason if body else "")


@router.post("/requests/{request_id}/pause", response_model=RequestSummary)
def pause(
    request_id: RequestId, caller: Caller, service: Service, body: Reason = None
) -> RequestSummary:
    return service.pause(caller, request_id, body.reason if body else "")


@router.post("/requests/{request_id}/resume", response_model=RequestSummary)
def resume(
    request_id: RequestId, caller: Caller, service: Service, body: Reason = None
) -> RequestSummary:
    return service.resume(caller, request_id, body.reason if body else "")


@router.post("/requests/{request_id}/close", response_model=RequestSummary)
def close(
    request_id: RequestId, caller: Caller, service: Service, body: Reason = None
) -> RequestSummary:
    return service.close(caller, request_id, body.reason if body else "")


@router.post("/requests/{request_id}/resubmit", response_model=ResubmitResult)
def resubmit(
    request_id: RequestId, caller: Caller, service: Service, body: Annotated[ResubmitBody, Body()]
) -> ResubmitResult:
    """Resubmit the request's jobs that wait for an operator, all or those of one error class."""
    return service.resubmit_paused(caller, request_id, body.error_class)


@router.post("/requests/{request_id}/clone", response_model=SubmitResult, status_code=201)
def clone(
    request_id: RequestId, caller: Caller, service: Service, body: Reason = None
) -> SubmitResult:
    return service.clone(caller, request_id, body.reason if body else "")


@router.get("/requests/{request_id}/runs", response_model=list[RunInfo])
def runs(request_id: RequestId, caller: Caller, service: Service) -> list[RunInfo]:
    return service.runs(caller, request_id)


@router.get("/requests/{request_id}/files", response_model=list[FileInfo])
def files(request_id: RequestId, caller: Caller, service: Service,
          kind: Literal["unmerged", "merged"] | None = None) -> list[FileInfo]:
    return service.files(caller, request_id, kind)


@router.post("/requests/{request_id}/runs/{run}/{action}", response_model=RunInfo)
def decide_run(
    request_id: RequestId,
    run: Annotated[int, Path(ge=0, le=2**32 - 1)],
    action: Annotated[Literal["accept", "drop", "reprocess"], Path()],
    caller: Caller,
    service: Service,
    body: Reason = None,
) -> RunInfo:
    return service.decide_run(caller, request_id, run, action, body.reason if body else "")
