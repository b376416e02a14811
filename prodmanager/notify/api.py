"""HTTP routes of notifications (operator role): list, show, redeliver."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from prodmanager import deps
from prodmanager.auth import Principal
from prodmanager.models import INT64_MAX, ErrorBody
from prodmanager.notify.service import NotificationDetail, NotificationService, NotificationSummary
from prodrequest.spec import NotifyEvent

ERRORS = {s: {"model": ErrorBody} for s in (401, 403, 404, 422)}
router = APIRouter(prefix="/api/v1", tags=["notifications"], responses=ERRORS)  # type: ignore[arg-type]

Caller = Annotated[Principal, Depends(deps.principal)]
Id = Annotated[int, Path(ge=0, le=INT64_MAX)]


def _service(request: Request) -> NotificationService:
    return NotificationService(request.app.state.db)


Service = Annotated[NotificationService, Depends(_service)]


@router.get("/notifications", response_model=list[NotificationSummary])
def list_notifications(
    caller: Caller,
    service: Service,
    request_id: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
    event: NotifyEvent | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[NotificationSummary]:
    return service.list(caller, request_id, event, limit)


@router.get("/notifications/{notification_id}", response_model=NotificationDetail)
def show_notification(notification_id: Id, caller: Caller, service: Service) -> NotificationDetail:
    return service.show(caller, notification_id)


@router.post("/notifications/{notification_id}/redeliver", response_model=NotificationDetail)
def redeliver_notification(
    notification_id: Id, caller: Caller, service: Service, everything: bool = False
) -> NotificationDetail:
    return service.redeliver(caller, notification_id, everything)
