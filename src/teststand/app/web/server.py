"""The FastAPI application of `teststand web`: the page, its WebSocket and its requests.

Every request is checked on the server: a session (cookie, HttpOnly, SameSite=Strict) that has
not expired; for actions (the queue's, the reset of a SAFE stand) an operator holding control
(`ControlLease.check`); the E-stop needs a session only. POSTs also need the header
`X-Teststand: 1`, which a page of another site cannot send without the browser asking this
server first (no CORS is allowed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Form, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from teststand.app.web.accounts import Session
from teststand.app.web.errors import ActionRefused, LoginRefused, WebError
from teststand.app.web.queue import FORM_PLANS
from teststand.app.web.state import WebState
from teststand.errors import TeststandError

log = logging.getLogger("teststand.web")
COOKIE = "teststand_session"
HEADER = "x-teststand"
_HERE = Path(str(files("teststand.app.web")))
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"), autoescape=True
)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


def create_app(state: WebState) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount(
        "/static", StaticFiles(directory=_HERE / "static", follow_symlink=True), name="static"
    )
    app.mount("/reports", StaticFiles(directory=state.reports, check_dir=False), name="reports")

    def session_of(request: Request | WebSocket) -> Session:
        token = request.cookies.get(COOKIE)
        if not state.authenticated and token is None:
            raise LoginRefused("no session")
        return state.sessions.get(token)

    def host_of(request: Request | WebSocket) -> str:
        return request.client.host if request.client else "unknown"

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(message: str = "") -> HTMLResponse:
        page = _TEMPLATES.get_template("login.html").render(message=message)
        return HTMLResponse(page, status_code=401 if message else 200)

    @app.post("/login", response_model=None)
    async def login(
        request: Request, username: str = Form(""), password: str = Form("")
    ) -> Response:
        if not state.authenticated:
            return RedirectResponse("/", status_code=303)
        try:
            user = await state.login(username.strip(), password)
        except LoginRefused as exc:
            log.warning("login refused for %r from %s", username, host_of(request))
            return await login_page(str(exc))
        session = state.sessions.open(user, host_of(request))
        response = RedirectResponse("/", status_code=303)
        max_age = int(state.sessions.lifetime)
        response.set_cookie(
            COOKIE, session.token, httponly=True, samesite="strict", max_age=max_age
        )
        return response

    @app.post("/logout")
    async def logout(request: Request) -> RedirectResponse:
        token = request.cookies.get(COOKIE)
        if token and state.lease.forget(token):
            state.show_control()
        state.sessions.close(token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", response_model=None)
    async def index(request: Request) -> Response:
        new_token = None
        try:
            session = session_of(request)
        except LoginRefused as exc:
            if state.authenticated:
                expired = request.cookies.get(COOKIE) is not None
                return await login_page(str(exc) if expired else "")
            session = state.local_session(host_of(request))
            new_token = session.token
        page = _TEMPLATES.get_template("index.html").render(
            layout=state.layout,
            user=session.user,
            plans=FORM_PLANS,
            authenticated=state.authenticated,
        )
        response = HTMLResponse(page)
        if new_token:
            response.set_cookie(COOKIE, new_token, httponly=True, samesite="strict")
        return response

    @app.websocket("/ws")
    async def push(websocket: WebSocket) -> None:
        try:
            session = session_of(websocket)
        except LoginRefused as exc:
            await websocket.close(code=4401, reason=str(exc)[:120])
            return
        await websocket.accept()
        feed = state.hub.subscribe()
        try:
            await websocket.send_text(state.hub.snapshot())
            while (remaining := session.expires - time.time()) > 0:
                try:
                    await asyncio.wait_for(feed.changed.wait(), min(remaining, 60.0))
                except TimeoutError:
                    continue
                await asyncio.sleep(state.hub.period)  # what changes meanwhile goes along
                await websocket.send_text(feed.take())
            else:  # the page goes back to the login
                await websocket.close(code=4401, reason="your session has expired")
                return
        except (WebSocketDisconnect, OSError, RuntimeError):  # the page went away
            pass
        finally:
            state.hub.unsubscribe(feed)
        with contextlib.suppress(Exception):
            await websocket.close()

    async def act(request: Request, control: bool) -> Session | JSONResponse:
        if request.headers.get(HEADER) != "1":
            return _error(403, f"refused: requests must come from the page (header {HEADER})")
        try:
            session = session_of(request)
            if control:
                state.lease.check(session)
        except LoginRefused as exc:
            return _error(401, str(exc))
        except ActionRefused as exc:
            log.warning("refused %s from %s", request.url.path, host_of(request))
            return _error(403, str(exc))
        return session

    @app.post("/api/control/{verb}")
    async def control(request: Request, verb: str) -> JSONResponse:
        session = await act(request, control=False)
        if isinstance(session, JSONResponse):
            return session
        try:
            if verb == "take":
                state.lease.take(session)
            elif verb == "release":
                state.lease.release(session)
            else:
                return _error(404, f"unknown control verb {verb!r}: take or release")
        except ActionRefused as exc:
            return _error(403, str(exc))
        state.show_control()
        done = "taken" if verb == "take" else "released"
        return JSONResponse({"ok": True, "message": f"control {done} by {session.user.name}"})

    @app.post("/api/estop")
    async def estop(request: Request) -> JSONResponse:
        session = await act(request, control=False)
        if isinstance(session, JSONResponse):
            return session
        try:
            await state.stand.estop(f"{session.user.name}@{session.host}")
        except TeststandError as exc:
            return _error(502, f"the E-stop put failed: {exc}; use the stand's hardware E-stop")
        return JSONResponse({"ok": True, "message": f"E-stop pressed by {session.user.name}"})

    @app.post("/api/reset")
    async def reset(request: Request) -> JSONResponse:
        session = await act(request, control=True)
        if isinstance(session, JSONResponse):
            return session
        try:
            message = await state.reset(session)
        except (TeststandError, OSError, TimeoutError) as exc:
            return _error(409, f"reset refused: {exc}")
        return JSONResponse({"ok": True, "message": message})

    @app.post("/api/queue/{action}")
    async def queue(request: Request, action: str) -> JSONResponse:
        session = await act(request, control=True)
        if isinstance(session, JSONResponse):
            return session
        kwargs: dict[str, Any] = {}
        if action == "add":
            try:
                kwargs = _plan_form(await request.json())
            except (ValueError, WebError) as exc:
                return _error(400, str(exc))
        elif action not in ("start", "pause", "resume", "abort"):
            return _error(404, f"unknown queue action {action!r}")
        try:
            message = await state.queue.request(session.user.name, action, **kwargs)
        except (TeststandError, OSError, TimeoutError) as exc:
            return _error(502, f"{type(exc).__name__}: {exc}")
        return JSONResponse({"ok": True, "message": message})

    return app


def _plan_form(form: Any) -> dict[str, Any]:
    """The add form's fields as the plan's keyword arguments (the plan checks their values)."""
    if not isinstance(form, dict) or form.get("plan") not in FORM_PLANS:
        raise WebError(f"give a plan, one of {', '.join(FORM_PLANS)}")
    plan = str(form["plan"])
    kwargs: dict[str, Any] = {"plan": plan}
    for name in FORM_PLANS[plan]:
        value = form.get(name)
        if value in (None, ""):
            continue
        if name in ("stop", "step", "settle"):
            try:
                kwargs[name] = float(value)
            except (TypeError, ValueError):
                raise WebError(f"{name} {value!r} is not a number: give volts or seconds") from None
        else:
            kwargs[name] = str(value).strip()
    if "slots" not in kwargs:
        raise WebError("give the slots to test, e.g. 1-2 or 1,3")
    return kwargs
