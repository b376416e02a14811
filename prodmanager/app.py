"""The HTTP application: ProdRequest and ProdManager routes in one FastAPI app.

`create_app` builds everything from explicit arguments (no globals); errors become JSON bodies
`{"error": code, "detail": sentence, "errors": [{"path", "message"}...]}`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from prodmanager import api as pull_api
from prodmanager.auth import Authenticator
from prodmanager.db import migrate
from prodmanager.db.engine import Database
from prodmanager.errors import ProdManagerError
from prodmanager.pull_service import PullService
from prodmanager.request_service import RequestService
from prodrequest import api as request_api

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerSettings:
    db_url: str
    lease_seconds: float = 300.0
    max_lease_seconds: float = 3600.0
    token_cache_s: float = 5.0
    migrate: bool = True


def create_app(settings: ServerSettings) -> FastAPI:
    db = Database(settings.db_url)
    if settings.migrate:
        migrate.upgrade(db.engine)
    app = FastAPI(title="prodmanager", version="1", description=__doc__)
    app.state.db = db
    app.state.auth = Authenticator(db, settings.token_cache_s)
    app.state.requests = RequestService(db)
    app.state.pull = PullService(
        db, lease_seconds=settings.lease_seconds, max_lease_seconds=settings.max_lease_seconds
    )
    app.include_router(request_api.router)
    app.include_router(pull_api.router)
    app.add_exception_handler(ProdManagerError, _on_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]

    @app.get("/api/v1/health", tags=["health"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "schema": migrate.current_revision(db.engine)}

    return app


async def _on_error(_request: Request, exc: ProdManagerError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def _on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {
            "path": ".".join(str(p) for p in err["loc"] if p != "body") or "(body)",
            "message": "unknown key" if err["type"] == "extra_forbidden" else err["msg"],
        }
        for err in exc.errors()
    ]
    body = {
        "error": "invalid",
        "detail": f"invalid input: {len(errors)} error(s)",
        "errors": errors,
    }
    return JSONResponse(body, status_code=422)
