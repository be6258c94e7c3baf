"""The pages for intake clerks, reviewers, analysts and admins, in the same app as the API.

Server-rendered (Jinja2), with their CSS and Swagger UI's files vendored in static/: the
service runs in data centres without internet access, so nothing is loaded from a CDN."""

from __future__ import annotations

import secrets

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.web import emerging, intake, ledger, models, overview, review, signin
from service.web.render import HERE, page
from service.web.sessions import PageRefused, SignInRequired, end_session, signin_url

# The API, the metrics and the probes answer JSON or text; every other path is a page.
NOT_PAGES = ("/v1/", "/metrics", "/healthz", "/readyz", "/openapi.json", "/static/")


PAGE_MISSES = {404: "没有这个页面。请从上方的导航重新进入。",
               405: "这个地址只接受表单提交，不能直接打开（例如台账的分析结果）。请回到相应页面重新提交。"}


def is_page(path: str) -> bool:
    """Whether a request to `path` is answered with a page (HTML) rather than JSON."""
    return not path.startswith(NOT_PAGES)


def install(app: FastAPI) -> None:
    """Adds the pages, their static files and a self-hosted /docs to `app`."""
    settings = app.state.settings
    # Without a configured secret each process signs with its own: `triage serve` sets one
    # for all its workers (triage/cli.py), so only a restart signs everyone out.
    app.state.session_secret = settings.session_secret or secrets.token_urlsafe(32)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (signin, intake, ledger, review, emerging, overview, models):
        app.include_router(module.router)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} – API",
                                   swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger-ui/favicon-32x32.png")

    @app.exception_handler(SignInRequired)
    async def sign_in_first(_request: Request, exc: SignInRequired) -> Response:
        response = RedirectResponse(signin_url(exc.next_path) + (f"&{exc.why}=1" if exc.message else ""), status_code=303)
        if exc.message:
            end_session(response)
        return response

    @app.exception_handler(PageRefused)
    async def refused(request: Request, exc: PageRefused) -> Response:
        return page(request, "error.html", None, status=exc.status, message=exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def too_large(request: Request, exc: StarletteHTTPException) -> Response:
        # A ledger over TRIAGE_MAX_REQUEST_BYTES: the intake clerk saw the API's JSON.
        if exc.status_code == 413 and is_page(request.url.path):
            return page(request, "error.html", None, status=413, headers=exc.headers,
                        message=f"上传的文件超过 {settings.max_request_bytes / 1e6:g} MB 的上限"
                                "（TRIAGE_MAX_REQUEST_BYTES），未作处理。请把台账拆成几个较小的文件分别上传。")
        # A ledger's results reopened (a new tab, a restored browser) ask with GET the address
        # that answers only the upload, and a mistyped address: both showed the API's JSON.
        if exc.status_code in PAGE_MISSES and is_page(request.url.path):
            return page(request, "error.html", None, status=exc.status_code, headers=exc.headers,
                        message=PAGE_MISSES[exc.status_code])
        return await http_exception_handler(request, exc)
