"""Sign-in for the pages: an API key is exchanged for a signed session cookie.

The cookie holds the key's prefix, a CSRF token and the time of sign-in, signed with the
session secret (itsdangerous, which Starlette already needs); never the key itself. Each
request checks the signature and age, then that the key is still active and its role may
see the page (the same rule as the API's), so a revoked key signs its pages out at once."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.database import ApiKey
from service.deps import SessionDep, actor_of, allowed_roles
from service.settings import Settings

COOKIE = "triage_session"
SIGNIN_COOKIE = "triage_signin"  # the sign-in form's own CSRF token (double submit): nobody is signed in yet
CSRF_FIELD = "csrf_token"


class SignInRequired(Exception):
    """No valid session: the page redirects to the sign-in form, then back."""

    def __init__(self, next_path: str, message: str = "", why: str = "expired") -> None:
        super().__init__(message)
        # `why` (expired, revoked) is what the sign-in form says, once the session is ended.
        self.next_path, self.message, self.why = next_path, message, why


class PageRefused(Exception):
    """Signed in, but this page or form is not for this session (role or CSRF)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class WebUser:
    key: ApiKey
    csrf: str

    @property
    def role(self) -> str:
        return self.key.role

    @property
    def actor(self) -> str:
        return actor_of(self.key)

    def may(self, *roles: str) -> bool:
        return self.key.role in allowed_roles(*roles)


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.session_secret, salt="triage.web.session")


def secure(request: Request) -> bool:
    # Behind a TLS-terminating proxy, uvicorn's --proxy-headers makes the scheme https.
    return request.url.scheme == "https"


def start_session(request: Request, response: Response, key: ApiKey, settings: Settings) -> None:
    token = _serializer(request).dumps({"prefix": key.prefix, "csrf": secrets.token_urlsafe(24)})
    response.set_cookie(COOKIE, token, max_age=settings.session_seconds, httponly=True, samesite="strict",
                        secure=secure(request), path="/")
    response.delete_cookie(SIGNIN_COOKIE, path="/")


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def _active_key(session: Session, prefix: str) -> ApiKey | None:
    try:
        return session.scalar(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)))
    except SQLAlchemyError:
        session.rollback()
        raise


def current_user(request: Request, session: Session, settings: Settings) -> WebUser | None:
    """The signed-in user; None without a session (no cookie, a bad signature). SignInRequired
    when the session expired or its key was revoked, which the sign-in form then says."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        data = _serializer(request).loads(token, max_age=settings.session_seconds)
    except SignatureExpired:
        raise SignInRequired(_here(request), "会话已过期，请重新登录 (session expired)") from None
    except BadSignature:
        return None
    key = _active_key(session, str(data.get("prefix", "")))
    if key is None:
        # Revoked while the page was open: the sign-in form said nothing, and the clerk tried
        # the same key again.
        raise SignInRequired(_here(request), "密钥已被吊销 (key revoked)", why="revoked")
    return WebUser(key=key, csrf=str(data.get("csrf", "")))


def _here(request: Request) -> str:
    """Where signing in again should lead. A form's action answers only POST: signing in, the
    browser is sent there with GET, and a clerk whose session ended on "采纳" got raw JSON
    saying the method is not allowed. So a form leads back to the page it was sent from."""
    if request.method not in ("GET", "HEAD"):
        return _form_page(request)
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _form_page(request: Request) -> str:
    # The path alone: the query of a page a form is sent from carries the notice of the form
    # sent before (?decided=1), which said "决定已记录" over a decision that was not recorded.
    sent_from = urlsplit(request.headers.get("referer", ""))
    return sent_from.path if sent_from.netloc == request.url.netloc and sent_from.path.startswith("/") else "/"


def signin_url(next_path: str) -> str:
    return f"/signin?next={quote(next_path, safe='/')}"


# Each role by the page it works on; its code beside it, as `triage keys create --role` takes it.
ROLES_IN_CHINESE = {"intake": "登记", "reviewer": "研判", "analyst": "统计", "admin": "管理员"}


def _role_in_chinese(role: str) -> str:
    return f"{ROLES_IN_CHINESE.get(role, role)}（{role}）"


def page_user(*roles: str):
    """The dependency of a page for `roles` (admin may open every page)."""

    def check(request: Request, session: SessionDep) -> WebUser:
        user = current_user(request, session, request.app.state.settings)
        if user is None:
            raise SignInRequired(_here(request))
        if not user.may(*roles):
            needed = " 或 ".join(_role_in_chinese(role) for role in allowed_roles(*roles))
            raise PageRefused(f"此页面需要{needed}角色的密钥；当前密钥的角色是{_role_in_chinese(user.role)}。"
                              "请退出登录，换用相应角色的密钥。")
        return user

    return check


async def check_csrf(request: Request) -> None:
    """Every form POST carries the session's CSRF token; SameSite=Strict is the second line."""
    form = await request.form()
    sent = str(form.get(CSRF_FIELD, ""))
    user_token = request.cookies.get(COOKIE)
    expected = ""
    if user_token:
        try:
            expected = str(_serializer(request).loads(user_token).get("csrf", ""))
        except BadSignature:
            expected = ""
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise PageRefused("表单校验失败，请刷新页面后重试 (missing or wrong CSRF token)", status=403)


def signin_token(request: Request) -> str:
    return request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)


def check_signin_csrf(request: Request, sent: str) -> None:
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise PageRefused("登录表单已失效，请刷新页面后重试 (missing or wrong CSRF token)", status=403)


Csrf = Annotated[None, Depends(check_csrf)]
