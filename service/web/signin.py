"""Sign-in and sign-out: an API key from `triage keys create` for a session cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from service.database import AuditEntry
from service.deps import SessionDep, SettingsDep, actor_of
from service.keys import verify_key
from service.web.render import PAGES, page
from service.web.sessions import (
    SIGNIN_COOKIE,
    Csrf,
    check_signin_csrf,
    current_user,
    end_session,
    secure,
    signin_token,
    start_session,
)

router = APIRouter(include_in_schema=False)


def _safe_next(next_path: str | None) -> str | None:
    # Only a path on this site: never an open redirect to another host.
    if next_path and next_path.startswith("/") and not next_path.startswith("//") and "\\" not in next_path:
        return next_path
    return None


def _signin_form(request: Request, next_path: str | None, error: str = "", status: int = 200) -> HTMLResponse:
    token = signin_token(request)
    response = page(request, "signin.html", None, status=status, next=_safe_next(next_path) or "", error=error, signin_csrf=token)
    response.set_cookie(SIGNIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict", secure=secure(request), path="/")
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    user = current_user(request, session, settings)
    if user is None:
        return RedirectResponse("/signin", status_code=303)
    first = next((path for path, _label, roles in PAGES if user.may(*roles)), "/intake")
    return RedirectResponse(first, status_code=303)


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request, next: str | None = None, expired: bool = False, revoked: bool = False) -> HTMLResponse:
    said = "此前使用的密钥已被吊销，请用新的密钥登录。" if revoked else "会话已过期，请重新登录。" if expired else ""
    return _signin_form(request, next, said)


@router.post("/signin", response_class=HTMLResponse)
def signin(request: Request, session: SessionDep, settings: SettingsDep, key: Annotated[str, Form(max_length=200)] = "",
           csrf_token: Annotated[str, Form(max_length=200)] = "", next: Annotated[str, Form(max_length=2000)] = "") -> Response:
    check_signin_csrf(request, csrf_token)
    try:
        row = verify_key(session, key.strip())
    except SQLAlchemyError:
        session.rollback()
        return _signin_form(request, next, "数据库暂不可用，无法核对密钥，请稍后再试。", status=503)
    if row is None:
        return _signin_form(request, next, "密钥无效或已吊销。", status=401)
    session.add(AuditEntry(actor=actor_of(row), action="web.signin", target=row.prefix, detail={}))
    session.commit()
    response = RedirectResponse(_safe_next(next) or "/", status_code=303)
    start_session(request, response, row, settings)
    return response


@router.post("/signout")
def signout(_: Csrf) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    end_session(response)
    return response
