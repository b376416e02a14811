"""The door of the HTTP server: authenticate first, then read a bounded body, then check it.

A pure ASGI middleware, so that nothing runs before it: for every route except
`GET /api/v1/health` (and the web monitor's sign-in and static files) it checks the bearer token
(or, on the web monitor's pages outside `/api/`, the session cookie: a browser without one is
sent to the sign-in page) before a byte of the body is read (401), puts
the principal on `request.state.principal`, reads the body counting the streamed bytes against
the route's limit (413; Content-Length may be absent or lie), and walks every JSON body with the
workflow loader's bounded parse (depth, 64-bit integers, finite numbers, real Unicode, no control
characters; 422 naming the field) before FastAPI parses it. The workflow submit route takes raw
YAML or JSON, which the loader checks itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prodmanager.auth import Authenticator
from prodmanager.errors import InvalidInput, ProdManagerError, Unauthorized
from prodmanager.web.session import authorization_from_cookie
from prodrequest.loader import DOCUMENT, MAX_DOCUMENT_BYTES, WorkflowInvalid, load_json

MiB = 1024 * 1024
PUBLIC = frozenset({("GET", "/api/v1/health")})
SUBMIT = ("POST", "/api/v1/requests")
VALIDATE = ("POST", "/api/v1/requests/validate")
RAW_DOCUMENT = frozenset({SUBMIT, VALIDATE})  # workflow documents: the loader checks them
BODY = "(body)"
# The web monitor (`prodmanager.web`): every path outside the API. Its pages also accept the
# session cookie; only sign-in and the vendored static files are open without a token.
API_PATHS = ("/api/", "/docs", "/redoc", "/openapi.json")
MONITOR_API = "/api/v1/monitor/"  # the pages' JSON twins: readable with the cookie too (GET only)
WEB_PUBLIC = frozenset({("GET", "/login"), ("POST", "/login"), ("POST", "/logout")})


@dataclass(frozen=True)
class BodyLimits:
    """Largest body per route, in bytes. Bulk completions carry up to 500 allocations and
    10,000 output files (about 7 MB with 500-character LFNs); merged reports up to 100,000 input
    LFNs (about 50 MB at the longest LFN); renewals up to 10,000 leases (about 0.8 MB)."""

    default: int = 1 * MiB
    submit: int = MAX_DOCUMENT_BYTES
    renew: int = 4 * MiB
    completions: int = 16 * MiB
    merged: int = 64 * MiB

    def for_route(self, method: str, path: str) -> int:
        if (method, path) in RAW_DOCUMENT or (method == "POST" and _is_web(path)):
            return self.submit
        if method == "POST" and _AGENT_ROUTE.match(path):
            action = path.rsplit("/", 1)[-1]
            return {
                "renew": self.renew,
                "completions": self.completions,
                "merged": self.merged,
            }.get(action, self.default)
        return self.default


_AGENT_ROUTE = re.compile(r"^/api/v1/agents/[^/]+/(renew|completions|merged)$")


class TooLarge(ProdManagerError):
    """The body is larger than the route's limit."""

    status = 413
    code = "too_large"


class Guard:
    """ASGI middleware: authentication, body limit and bounded JSON check, in that order."""

    def __init__(self, app: ASGIApp, auth: Authenticator, limits: BodyLimits | None = None) -> None:
        self.app = app
        self.auth = auth
        self.limits = limits or BodyLimits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in PUBLIC:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = Headers(scope=scope)
        web = _is_web(path)
        authorization = headers.get("authorization")
        if not authorization and (web or (method == "GET" and path.startswith(MONITOR_API))):
            authorization = authorization_from_cookie(headers.get("cookie"))
        principal = None
        try:
            try:
                principal = await run_in_threadpool(self.auth.authenticate, authorization)
            except Unauthorized:
                if not (web and _web_public(method, path)):
                    raise
            limit = self.limits.for_route(method, path)
            where = DOCUMENT if (method, path) in RAW_DOCUMENT else BODY
            body = await _read_body(receive, headers.get("content-length"), limit, where)
            if body.strip() and not web and (method, path) not in RAW_DOCUMENT:
                await run_in_threadpool(_check_json, body)
        except ProdManagerError as exc:
            if web and isinstance(exc, Unauthorized) and "text/html" in headers.get("accept", ""):
                # A browser without a session: to the sign-in page. Other clients get the 401.
                await RedirectResponse("/login", status_code=303)(scope, receive, send)
                return
            await _answer(exc, scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, _replay(body, receive), send)


def _is_web(path: str) -> bool:
    return not path.startswith(API_PATHS)


def _web_public(method: str, path: str) -> bool:
    return (method, path) in WEB_PUBLIC or (method == "GET" and path.startswith("/static/"))


async def _read_body(receive: Receive, declared: str | None, limit: int, where: str) -> bytes:
    if declared and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit, where)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit, where)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _too_large(size: int, limit: int, where: str) -> TooLarge:
    message = f"body is {size}+ bytes, more than the limit of {limit} for this route"
    return TooLarge(message, errors=[{"path": where, "message": message}])


def _check_json(body: bytes) -> None:
    try:
        load_json(body)
    except WorkflowInvalid as exc:
        raise invalid_input(
            [{"path": e.path.replace(DOCUMENT, BODY), "message": e.message} for e in exc.errors],
            exc.total,
        ) from None


def invalid_input(errors: list[dict[str, str]], total: int | None = None) -> InvalidInput:
    """422 with the listed field errors (already capped) and the count of those left out."""
    total = max(total or 0, len(errors))
    extra: dict[str, Any] = {"errors_omitted": total - len(errors)} if total > len(errors) else {}
    return InvalidInput(f"invalid input: {total} error(s)", errors=errors, **extra)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(exc: ProdManagerError, scope: Scope, receive: Receive, send: Send) -> None:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    if isinstance(exc, TooLarge):
        headers = {"Connection": "close"}
    response = JSONResponse(exc.body(), status_code=exc.status, headers=headers)
    await response(scope, receive, send)
