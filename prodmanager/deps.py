"""FastAPI dependencies: the caller's identity and the services, taken from `app.state`."""

from __future__ import annotations

from fastapi import Header, Request

from prodmanager.auth import Principal
from prodmanager.job_reports import JobReports
from prodmanager.pull_service import PullService
from prodmanager.request_service import RequestService
from prodmanager.sizing_reports import SizingReports


def principal(request: Request, authorization: str | None = Header(None)) -> Principal:
    """The caller the door (`prodmanager.guard`) authenticated before reading the body; without
    the door (an app built otherwise), authenticated here."""
    found = getattr(request.state, "principal", None)
    if isinstance(found, Principal):
        return found
    return request.app.state.auth.authenticate(authorization)


def requests(request: Request) -> RequestService:
    return request.app.state.requests


def pull(request: Request) -> PullService:
    return request.app.state.pull


def job_reports(request: Request) -> JobReports:
    found = getattr(request.app.state, "job_reports", None)
    if found is None:
        found = request.app.state.job_reports = JobReports(request.app.state.db, pull(request))
    return found


def sizing_reports(request: Request) -> SizingReports:
    found = getattr(request.app.state, "sizing_reports", None)
    if found is None:
        found = request.app.state.sizing_reports = SizingReports(request.app.state.db, pull(request))
    return found
