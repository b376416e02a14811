"""A small typed client of the ProdManager/ProdRequest HTTP API, for agents and the CLI.

    client = ProdManagerClient("http://127.0.0.1:8765", token)
    client.register_agent("agent-1", sites=["CERN"], capacity=8)
    for alloc in client.acquire("agent-1", jobs=4):          # list[Allocation]
        ...                                                    # run events alloc.first_event..
    client.renew("agent-1", allocations)                       # list[RenewResult]: ok|expired|recalled
    client.report("agent-1", alloc, events_done=100, job_state="running")
    client.complete("agent-1", alloc, events_done=alloc.n_events, files=[OutputFile(...)])

Shapes are the pydantic models of `prodmanager.models`. Errors are raised as the server's
exception classes (`prodmanager.errors`): `LeaseLost` (409) when the lease is gone and the job
must stop, `Unauthorized` (401), `Forbidden` (403), `NotFound` (404), `Conflict` (409),
`InvalidInput` (422, with `.details["errors"]`). Connection errors and 502/503/504 are retried
with exponential back-off; every call is safe to repeat (reports set values, final calls are
idempotent, a submit of the same document returns the first request).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from prodmanager import errors
from prodmanager.models import (
    AcquireResponse,
    AgentInfo,
    AgentStatus,
    Allocation,
    AllocationAck,
    AllocationInfo,
    CompleteManyAck,
    CompleteOutcome,
    ComponentState,
    FileInfo,
    JobEvent,
    JobReportAck,
    MergedAck,
    MergedFile,
    OutputFile,
    RenewResponse,
    RenewResult,
    RequestDetail,
    RequestSizing,
    RequestSummary,
    RunInfo,
    SizingAck,
    SubmitResult,
    WhoAmI,
)

M = TypeVar("M", bound=BaseModel)
RETRY_STATUS = frozenset({502, 503, 504})
ERROR_CLASSES: dict[str, type[errors.ProdManagerError]] = {
    cls.code: cls
    for cls in (
        errors.Unauthorized,
        errors.Forbidden,
        errors.NotFound,
        errors.Conflict,
        errors.IllegalTransition,
        errors.LeaseLost,
        errors.InvalidInput,
    )
}

LeaseLike = Allocation | tuple[int, str]


class ServerUnavailable(errors.ProdManagerError):
    """The server could not be reached (or answered 502/503/504) after all retries."""

    status = 503
    code = "unavailable"


class _Retryable(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response


class ProdManagerClient:
    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float = 30.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1",
            headers=headers,
            timeout=timeout,
            transport=transport,
        )
        self.retries = retries

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ProdManagerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- pull protocol --------------------------------------------------------------------------

    def register_agent(self, name: str, sites: Iterable[str] = (), capacity: int = 1) -> AgentInfo:
        body = {"name": name, "sites": list(sites), "capacity": capacity}
        return self._call("POST", "/agents", AgentInfo, json=body)

    def agents(self) -> list[AgentInfo]:
        return self._call_list("GET", "/agents", AgentInfo)

    def acquire(
        self,
        agent: str,
        jobs: int | None = None,
        events: int | None = None,
        lease_seconds: float | None = None,
    ) -> list[Allocation]:
        """Lease new work: up to `jobs` allocations, or about `events` events (at least one
        allocation), never beyond the agent's registered capacity. [] when there is none."""
        body = {"jobs": jobs, "events": events, "lease_seconds": lease_seconds}
        body = {k: v for k, v in body.items() if v is not None}
        return self._call(
            "POST", f"/agents/{agent}/acquire", AcquireResponse, json=body
        ).allocations

    def renew(self, agent: str, leases: Iterable[LeaseLike]) -> list[RenewResult]:
        """Extend leases; each result says ok (renewed), expired (lost: stop the job) or
        recalled (request aborted: kill the job)."""
        refs = [{"allocation_id": i, "lease_token": t} for i, t in map(_lease, leases)]
        if not refs:
            return []
        return self._call(
            "POST", f"/agents/{agent}/renew", RenewResponse, json={"leases": refs}
        ).results

    def report(
        self,
        agent: str,
        lease: LeaseLike,
        events_done: int = 0,
        job_state: str | None = None,
        files: Iterable[OutputFile] = (),
    ) -> AllocationAck:
        allocation_id, token = _lease(lease)
        body = {
            "lease_token": token,
            "events_done": events_done,
            "job_state": job_state,
            "files": [f.model_dump() for f in files],
        }
        path = f"/agents/{agent}/allocations/{allocation_id}/report"
        return self._call("POST", path, AllocationAck, json=body)

    def complete(
        self, agent: str, lease: LeaseLike, events_done: int, files: Iterable[OutputFile] = ()
    ) -> AllocationAck:
        allocation_id, body = _completion(lease, events_done, files)
        path = f"/agents/{agent}/allocations/{allocation_id}/complete"
        return self._call("POST", path, AllocationAck, json=body)

    def complete_many(
        self, agent: str, items: Iterable[tuple[LeaseLike, int, Iterable[OutputFile]]]
    ) -> list[CompleteOutcome]:
        """Complete many allocations in one call: (lease, events done, files) each. An item
        that cannot be completed comes back with the error the single call would raise."""
        bodies = []
        for lease, events_done, files in items:
            allocation_id, body = _completion(lease, events_done, files)
            bodies.append({"allocation_id": allocation_id, **body})
        return self._call("POST", f"/agents/{agent}/completions", CompleteManyAck, json={"items": bodies}).results

    def release(
        self, agent: str, lease: LeaseLike, failed: bool = False, reason: str = ""
    ) -> AllocationAck:
        allocation_id, token = _lease(lease)
        body = {"lease_token": token, "failed": failed, "reason": reason}
        path = f"/agents/{agent}/allocations/{allocation_id}/release"
        return self._call("POST", path, AllocationAck, json=body)

    def report_merged(self, agent: str, request_id: int, files: Iterable[MergedFile]) -> MergedAck:
        body = {"request_id": request_id, "files": [f.model_dump() for f in files]}
        return self._call("POST", f"/agents/{agent}/merged", MergedAck, json=body)

    def report_status(self, agent: str, components: Iterable[ComponentState]) -> AgentStatus:
        """Push the agent's components' status (alive, heartbeat, queue, dead letters)."""
        body = {"components": [c.model_dump() for c in components]}
        return self._call("POST", f"/agents/{agent}/status", AgentStatus, json=body)

    def report_jobs(self, agent: str, events: Iterable[JobEvent]) -> JobReportAck:
        """Push job state changes (with failed attempts' log tails); empty: learn `last_seq`."""
        body = {"events": [e.model_dump() for e in events]}
        return self._call("POST", f"/agents/{agent}/jobs", JobReportAck, json=body)

    def report_sizing(self, agent: str, sizings: Iterable[RequestSizing]) -> SizingAck:
        """Push the automatic job sizing of requests this agent works on (`events.per_job: auto`)."""
        body = {"sizings": [s.model_dump() for s in sizings]}
        return self._call("POST", f"/agents/{agent}/sizing", SizingAck, json=body)

    # --- requests -------------------------------------------------------------------------------

    def submit(self, document: bytes | str | Path | dict[str, Any]) -> SubmitResult:
        """Submit a workflow: raw YAML/JSON bytes or text, a file path, or a dict."""
        if isinstance(document, Path):
            document = document.read_bytes()
        if isinstance(document, dict):
            content = json.dumps(document).encode()
            content_type = "application/json"
        else:
            content = document.encode() if isinstance(document, str) else document
            content_type = "application/yaml"
        headers = {"Content-Type": content_type}
        return self._call("POST", "/requests", SubmitResult, content=content, headers=headers)

    def get(self, request_id: int) -> RequestDetail:
        return self._call("GET", f"/requests/{request_id}", RequestDetail)

    def list(
        self, state: str | Iterable[str] | None = None, owner: str | None = None, limit: int = 500
    ) -> list[RequestSummary]:
        states = [state] if isinstance(state, str) else list(state or [])
        params: dict[str, Any] = {"state": states, "limit": limit}
        if owner:
            params["owner"] = owner
        return self._call_list("GET", "/requests", RequestSummary, params=params)

    def allocations(self, request_id: int, state: str | None = None) -> list[AllocationInfo]:
        params = {"state": [state]} if state else {}
        path = f"/requests/{request_id}/allocations"
        return self._call_list("GET", path, AllocationInfo, params=params)

    def abort(self, request_id: int, reason: str = "") -> RequestSummary:
        return self._action(request_id, "abort", reason)

    def pause(self, request_id: int, reason: str = "") -> RequestSummary:
        return self._action(request_id, "pause", reason)

    def resume(self, request_id: int, reason: str = "") -> RequestSummary:
        return self._action(request_id, "resume", reason)

    def close_request(self, request_id: int, reason: str = "") -> RequestSummary:
        return self._action(request_id, "close", reason)

    def clone(self, request_id: int, reason: str = "") -> SubmitResult:
        path = f"/requests/{request_id}/clone"
        return self._call("POST", path, SubmitResult, json={"reason": reason})

    def runs(self, request_id: int) -> list[RunInfo]:
        return self._call_list("GET", f"/requests/{request_id}/runs", RunInfo)

    def files(self, request_id: int, kind: str | None = None) -> list[FileInfo]:
        """The request's files, each with the files of other tasks it derives from."""
        query = f"?kind={kind}" if kind else ""
        return self._call_list("GET", f"/requests/{request_id}/files{query}", FileInfo)

    def decide_run(self, request_id: int, run: int, action: str, reason: str = "") -> RunInfo:
        """An operator's `accept`, `drop` or `reprocess` of a run that needs attention."""
        path = f"/requests/{request_id}/runs/{run}/{action}"
        return self._call("POST", path, RunInfo, json={"reason": reason})

    def whoami(self) -> WhoAmI:
        return self._call("GET", "/whoami", WhoAmI)

    def _action(self, request_id: int, action: str, reason: str) -> RequestSummary:
        path = f"/requests/{request_id}/{action}"
        return self._call("POST", path, RequestSummary, json={"reason": reason})

    # --- transport ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        return model.model_validate(self._send(method, path, **kwargs).json())

    def _call_list(self, method: str, path: str, model: type[M], **kwargs: Any) -> list[M]:
        return TypeAdapter(list[model]).validate_python(self._send(method, path, **kwargs).json())  # type: ignore[valid-type]

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=0.2, max=5.0),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        try:
            response = retrying(self._once, method, path, **kwargs)
        except _Retryable as exc:
            raise ServerUnavailable(f"{method} {path}: HTTP {exc.response.status_code}") from None
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code in RETRY_STATUS:
            raise _Retryable(response)
        return response


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, (httpx.TransportError, _Retryable))


def _lease(lease: LeaseLike) -> tuple[int, str]:
    if isinstance(lease, Allocation):
        return lease.allocation_id, lease.lease_token
    return int(lease[0]), str(lease[1])


def _completion(lease: LeaseLike, events_done: int, files: Iterable[OutputFile]) -> tuple[int, dict[str, Any]]:
    """The allocation id and the body of a completion."""
    allocation_id, token = _lease(lease)
    return allocation_id, {"lease_token": token, "events_done": events_done, "files": [f.model_dump() for f in files]}


def _error(response: httpx.Response) -> errors.ProdManagerError:
    try:
        body = response.json()
    except ValueError:
        body = {"error": "http_error", "detail": response.text[:500]}
    if not isinstance(body, dict):
        body = {"error": "http_error", "detail": str(body)[:500]}
    code = str(body.pop("error", ""))
    detail = str(body.pop("detail", "")) or f"HTTP {response.status_code}"
    cls = ERROR_CLASSES.get(code, errors.ProdManagerError)
    exc = cls(detail, **body)
    exc.status = response.status_code
    return exc
