"""The web monitor's routes: server-rendered pages (Jinja2, autoescaped) at `/`, htmx fragments
for live refresh, the submit form, the action buttons, and the pages' JSON twins under
`/api/v1/monitor/`.

Authorization is the API's own: pages read through `Monitor` (which calls `require_role` /
`require_visible`) and actions call `RequestService`, exactly as the REST routes do. The door
(`prodmanager.guard`) has authenticated the session cookie or bearer token before a route runs;
every state-changing form must carry the session's CSRF token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from prodmanager import deps
from prodmanager.auth import Principal
from prodmanager.errors import Forbidden, InvalidInput, NotFound, ProdManagerError, Unauthorized
from prodmanager.models import INT64_MAX
from prodmanager.monitor import Monitor
from prodmanager.request_service import RequestService
from prodmanager.runs import DECISIONS
from prodmanager.states import FINISHED, REQUEST_TRANSITIONS, RequestState
from prodmanager.web import session
from prodmanager.web.format import FILTERS

HERE = Path(__file__).parent
STATIC = HERE / "static"
EXAMPLES = HERE.parents[1] / "etc" / "workflows"
ACTIONS = ("abort", "pause", "resume", "close", "clone")
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters.update(FILTERS)

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1/monitor", tags=["monitor"])

Caller = Annotated[Principal, Depends(deps.principal)]
Service = Annotated[RequestService, Depends(deps.requests)]
Id = Annotated[int, PathParam(ge=0, le=INT64_MAX)]
Page = Annotated[int, Query(ge=1, le=1_000_000)]
Text = Annotated[str | None, Query(max_length=100)]
ExitCode = Annotated[int | None, Query(ge=-(2**31), le=2**31 - 1)]


def include(app: Any) -> None:
    app.include_router(router)
    app.include_router(api)


def monitor(request: Request) -> Monitor:
    found = getattr(request.app.state, "monitor", None)
    if found is None:
        found = request.app.state.monitor = Monitor(request.app.state.db)
    return found


Mon = Annotated[Monitor, Depends(monitor)]


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    caller = getattr(request.state, "principal", None)
    token = session.session_token(request.headers.get("cookie"))
    context.update(caller=caller, csrf=session.csrf_token(token) if token else "")
    return templates.TemplateResponse(request, name, context, status_code=status)


def failure(request: Request, exc: ProdManagerError) -> HTMLResponse:
    return render(request, "error.html", exc.status, error=exc)


def check_csrf(request: Request, sent: str | None) -> None:
    if not session.csrf_ok(session.session_token(request.headers.get("cookie")), sent):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")


# --- sign-in ----------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html")


@router.post("/login", response_model=None)
def login(request: Request, token: Annotated[str, Form(max_length=200)]) -> Response:
    try:
        request.app.state.auth.authenticate(f"Bearer {token}")
    except Unauthorized:
        return render(request, "login.html", 401, error="unknown or revoked token")
    response = RedirectResponse("/requests", status_code=303)
    response.set_cookie(
        session.COOKIE, token.strip(), max_age=session.MAX_AGE_S, httponly=True,
        samesite="strict", secure=request.url.scheme == "https", path="/",
    )
    return response


@router.post("/logout")
def logout() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(session.COOKIE, path="/")
    return response


@router.get("/static/{name}")
def static(name: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_.-]{1,60}$")]) -> FileResponse:
    for folder in (STATIC, STATIC / "vendor"):
        found = folder / name
        if found.is_file():
            return FileResponse(found, headers={"Cache-Control": "max-age=3600"})
    raise NotFound(f"no static file {name}")


# --- pages ------------------------------------------------------------------------------------


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/requests", status_code=303)


@router.get("/requests", response_class=HTMLResponse)
def requests_page(
    request: Request, caller: Caller, mon: Mon,
    state: Annotated[list[str] | None, Query(max_length=10)] = None,
    owner: Text = None, name: Text = None, page: Page = 1,
    fragment: bool = False,
) -> HTMLResponse:
    data = mon.requests(caller, state, owner or None, name or None, page)
    template = "_request_rows.html" if fragment else "requests.html"
    return render(request, template, data=data, states=[s.value for s in RequestState])


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(request: Request, request_id: Id, caller: Caller, mon: Mon) -> HTMLResponse:
    return request_view(request, request_id, caller, mon, "request.html")


@router.get("/requests/{request_id}/live", response_class=HTMLResponse)
def request_live(request: Request, request_id: Id, caller: Caller, mon: Mon) -> HTMLResponse:
    """The live part of the request page, fetched by htmx every few seconds."""
    return request_view(request, request_id, caller, mon, "_request_live.html")


def request_view(
    request: Request, request_id: int, caller: Principal, mon: Monitor, template: str
) -> HTMLResponse:
    try:
        data = mon.request(caller, request_id)
    except ProdManagerError as exc:
        return failure(request, exc)
    return render(request, template, r=data, actions=allowed_actions(data["state"]))


@router.post("/requests/{request_id}/{action}", response_model=None)
def act(
    request: Request, request_id: Id, action: str, caller: Caller, service: Service,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
    reason: Annotated[str, Form(max_length=500)] = "",
    error_class: Annotated[str | None, Form(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = None,
) -> Response:
    """The buttons: the same RequestService calls as the REST routes, so the same roles."""
    try:
        check_csrf(request, csrf)
        if action == "resubmit":
            service.resubmit_paused(caller, request_id, error_class)
            return RedirectResponse(f"/requests/{request_id}", status_code=303)
        if action not in ACTIONS:
            raise NotFound(f"no action {action!r}")
        result = getattr(service, action)(caller, request_id, reason.strip())
    except ProdManagerError as exc:
        return failure(request, exc)
    target = result.request.id if action == "clone" else request_id
    return RedirectResponse(f"/requests/{target}", status_code=303)


@router.post("/requests/{request_id}/runs/{run}/{action}", response_model=None)
def decide_run(
    request: Request, request_id: Id, run: Annotated[int, PathParam(ge=0, le=2**32 - 1)],
    action: str, caller: Caller, service: Service,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """A run's accept / drop / reprocess buttons: RequestService.decide_run, as the REST route."""
    try:
        check_csrf(request, csrf)
        if action not in DECISIONS:
            raise NotFound(f"no run action {action!r}")
        service.decide_run(caller, request_id, run, action, reason.strip())
    except ProdManagerError as exc:
        return failure(request, exc)
    return RedirectResponse(f"/requests/{request_id}#runs", status_code=303)


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request, caller: Caller, mon: Mon,
    request_id: Annotated[int | None, Query(alias="request", ge=0, le=INT64_MAX)] = None,
    state: Text = None, agent: Text = None, job_state: Text = None, error: Text = None,
    page: Page = 1, site: Text = None, error_class: Text = None, exit_code: ExitCode = None,
) -> HTMLResponse:
    data = mon.jobs(caller, request_id, state or None, agent or None, job_state or None,
                    error or None, page, site or None, error_class or None, exit_code)
    return render(request, "jobs.html", data=data)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: Id, caller: Caller, mon: Mon) -> HTMLResponse:
    try:
        return render(request, "job.html", j=mon.job(caller, job_id))
    except ProdManagerError as exc:
        return failure(request, exc)


@router.get("/agents", response_class=HTMLResponse)
def agents_page(request: Request, caller: Caller, mon: Mon) -> HTMLResponse:
    try:
        return render(request, "agents.html", data=mon.agents(caller), sites=mon.sites(caller))
    except ProdManagerError as exc:
        return failure(request, exc)


@router.get("/sites", response_class=HTMLResponse)
def sites_page(request: Request, caller: Caller, mon: Mon) -> HTMLResponse:
    try:
        return render(request, "sites.html", data=mon.sites(caller))
    except ProdManagerError as exc:
        return failure(request, exc)


# --- submit -----------------------------------------------------------------------------------


async def posted_document(
    document: Annotated[str, Form()] = "", upload: UploadFile | None = None
) -> bytes:
    """The workflow of the submit form: the uploaded file if one was chosen, else the text."""
    if upload is not None and upload.filename:
        return await upload.read()
    return document.encode("utf-8")


Document = Annotated[bytes, Depends(posted_document)]


@router.get("/submit", response_class=HTMLResponse)
def submit_form(request: Request, caller: Caller, example: Text = None) -> HTMLResponse:
    document = ""
    if example and example in examples():
        document = (EXAMPLES / example).read_text()
    return render(request, "submit.html", document=document, examples=examples(), errors=[])


@router.post("/submit/validate", response_class=HTMLResponse)
async def submit_validate(
    request: Request, caller: Caller, service: Service, data: Document
) -> HTMLResponse:
    errors = await run_in_threadpool(_validate, service, caller, data)
    return render(request, "_field_errors.html", errors=errors, checked=True)


@router.post("/submit", response_model=None)
async def submit(
    request: Request, caller: Caller, service: Service, data: Document,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    try:
        check_csrf(request, csrf)
        result = await run_in_threadpool(service.submit_document, caller, data)
    except (InvalidInput, Forbidden) as exc:
        errors = _field_errors(exc)
        return render(request, "submit.html", 422, document=data.decode("utf-8", "replace"),
                      examples=examples(), errors=errors)
    except ProdManagerError as exc:
        return failure(request, exc)
    return RedirectResponse(f"/requests/{result.request.id}", status_code=303)




def _validate(service: RequestService, caller: Principal, data: bytes) -> list[dict[str, str]]:
    try:
        service.validate_document(caller, data)
    except (InvalidInput, Forbidden) as exc:
        return _field_errors(exc)
    return []


def _field_errors(exc: ProdManagerError) -> list[dict[str, str]]:
    return exc.details.get("errors") or [{"path": "(document)", "message": exc.message}]


def examples() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.yaml")) if EXAMPLES.is_dir() else []


def allowed_actions(state: str) -> list[str]:
    """Buttons the request's state allows (the role check is the service's, at the click)."""
    nexts = REQUEST_TRANSITIONS[RequestState(state)]
    shown = []
    if RequestState.ABORTED in nexts:
        shown.append("abort")
    if RequestState.PAUSED in nexts:
        shown.append("pause")
    if state == RequestState.PAUSED:
        shown.append("resume")
    if RequestState.CLOSED in nexts:
        shown.append("close")
    if state in FINISHED:
        shown.append("clone")
    return shown


# --- JSON twins -------------------------------------------------------------------------------


@api.get("/requests")
def requests_json(
    caller: Caller, mon: Mon,
    state: Annotated[list[str] | None, Query(max_length=10)] = None,
    owner: Text = None, name: Text = None, page: Page = 1,
) -> dict[str, Any]:
    return mon.requests(caller, state, owner, name, page)


@api.get("/requests/{request_id}")
def request_json(request_id: Id, caller: Caller, mon: Mon) -> dict[str, Any]:
    return mon.request(caller, request_id)


@api.get("/jobs")
def jobs_json(
    caller: Caller, mon: Mon,
    request_id: Annotated[int | None, Query(alias="request", ge=0, le=INT64_MAX)] = None,
    state: Text = None, agent: Text = None, job_state: Text = None, error: Text = None,
    page: Page = 1, site: Text = None, error_class: Text = None, exit_code: ExitCode = None,
) -> dict[str, Any]:
    return mon.jobs(caller, request_id, state, agent, job_state, error, page, site, error_class,
                    exit_code)


@api.get("/jobs/{job_id}")
def job_json(job_id: Id, caller: Caller, mon: Mon) -> dict[str, Any]:
    return mon.job(caller, job_id)


@api.get("/agents")
def agents_json(caller: Caller, mon: Mon) -> dict[str, Any]:
    return mon.agents(caller)


@api.get("/sites")
def sites_json(caller: Caller, mon: Mon) -> dict[str, Any]:
    return mon.sites(caller)
