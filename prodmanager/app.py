"""The HTTP application: ProdRequest and ProdManager routes in one FastAPI app.

`create_app` builds everything from explicit arguments (no globals); errors become JSON bodies
`{"error": code, "detail": sentence, "errors": [{"path", "message"}...], "errors_omitted": n?}`
with at most MAX_ERRORS errors listed and no input echoed back. Every route except
`GET /api/v1/health`, including `/docs`, `/redoc` and `/openapi.json`, passes the door
(`prodmanager.guard`): token first, then a bounded body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from prodmanager import api as pull_api
from prodmanager import metrics
from prodmanager.auth import Authenticator
from prodmanager.db import migrate
from prodmanager.db.engine import Database
from prodmanager.errors import ProdManagerError
from prodmanager.guard import BodyLimits, Guard, invalid_input
from prodmanager.notify import api as notify_api
from prodmanager.pull_service import PullService
from prodmanager.request_service import DEFAULT_INPUT_PREFIXES, RequestService
from prodmanager.text import printable
from prodmanager.web import routes as web_routes
from prodrequest import api as request_api
from prodrequest.loader import MAX_ERRORS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerSettings:
    db_url: str
    lease_seconds: float = 300.0
    max_lease_seconds: float = 3600.0
    token_cache_s: float = 0.0  # > 0: a revoked token keeps working up to this long
    migrate: bool = True
    input_prefixes: tuple[str, ...] = DEFAULT_INPUT_PREFIXES
    body_limits: BodyLimits = field(default_factory=BodyLimits)
    shares: dict[str, float] = field(default_factory=dict)  # fair shares by request group


def create_app(settings: ServerSettings) -> FastAPI:
    db = Database(settings.db_url)
    if settings.migrate:
        migrate.upgrade(db.engine)
    app = FastAPI(title="prodmanager", version="1", description=__doc__)
    app.state.db = db
    app.state.auth = Authenticator(db, settings.token_cache_s)
    app.state.requests = RequestService(db, settings.input_prefixes)
    app.state.pull = PullService(
        db, lease_seconds=settings.lease_seconds, max_lease_seconds=settings.max_lease_seconds,
        shares=settings.shares,
    )
    app.include_router(request_api.router)
    app.include_router(pull_api.router)
    app.include_router(notify_api.router)
    app.include_router(metrics.router)
    web_routes.include(app)  # the web monitor at / and its JSON twins
    app.add_exception_handler(ProdManagerError, _on_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]
    app.add_middleware(Guard, auth=app.state.auth, limits=settings.body_limits)

    @app.get("/api/v1/health", tags=["health"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "schema": migrate.current_revision(db.engine)}

    return app


async def _on_error(_request: Request, exc: ProdManagerError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def _on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    found = exc.errors()
    errors = [
        {
            # json_invalid locates by character offset, not by field
            "path": "(body)" if err["type"] == "json_invalid" else _path(list(err["loc"])),
            "message": "unknown key"
            if err["type"] == "extra_forbidden"
            else printable(str(err["msg"]), 300),
        }
        for err in found[:MAX_ERRORS]
    ]
    return JSONResponse(invalid_input(errors, len(found)).body(), status_code=422)


def _path(loc: list[Any]) -> str:
    """`items[3].files[0].size`, like the workflow loader's paths (without FastAPI's `body`,
    `path` or `query` in front)."""
    if loc and loc[0] in ("body", "path", "query", "header"):
        loc = loc[1:]
    path = ""
    for part in loc:
        shown = printable(str(part), 100)
        path += f"[{part}]" if isinstance(part, int) else (f".{shown}" if path else shown)
    return path or "(body)"
