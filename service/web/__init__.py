"""The pages for intake clerks, reviewers, analysts and admins, in the same app as the API.

Server-rendered (Jinja2), with their CSS and Swagger UI's files vendored in static/: the
service runs in data centres without internet access, so nothing is loaded from a CDN."""

from __future__ import annotations

import secrets

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from service.web import intake, ledger, models, overview, review, signin
from service.web.render import HERE, page
from service.web.sessions import PageRefused, SignInRequired, end_session, signin_url


def install(app: FastAPI) -> None:
    """Adds the pages, their static files and a self-hosted /docs to `app`."""
    settings = app.state.settings
    # Without a configured secret each process signs with its own: `triage serve` sets one
    # for all its workers (triage/cli.py), so only a restart signs everyone out.
    app.state.session_secret = settings.session_secret or secrets.token_urlsafe(32)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (signin, intake, ledger, review, overview, models):
        app.include_router(module.router)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} – API",
                                   swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger-ui/favicon-32x32.png")

    @app.exception_handler(SignInRequired)
    async def sign_in_first(_request: Request, exc: SignInRequired) -> Response:
        response = RedirectResponse(signin_url(exc.next_path) + ("&expired=1" if exc.message else ""), status_code=303)
        if exc.message:
            end_session(response)
        return response

    @app.exception_handler(PageRefused)
    async def refused(request: Request, exc: PageRefused) -> Response:
        return page(request, "error.html", None, status=exc.status, message=exc.message)
