"""The FastAPI application: one router per resource, state built once at start-up."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.artifact import ArtifactError, LoadedModel, signing_key
from model.registry_layout import REGISTRY_FILE
from service import web
from service.database import AuditEntry, Database
from service.deps import RecentKeys
from service.metrics import LATENCY, REQUESTS, process_stopped
from service.model_holder import ModelHolder, ServedModelFollower
from service.registry_watch import RegistryWatch
from service.routers import decisions, emerging, health, model_info, review, stats, triage
from service.settings import Settings, get_settings
from service.similar import SharedMatterIndex

log = logging.getLogger(__name__)
# The API's routers, in the order the app includes them (service/roles.py tabulates them).
API_ROUTERS = (health, triage, decisions, review, model_info, stats, emerging)
# uvicorn's exit status for "the app cannot start": its worker supervisor then stops
# instead of restarting a worker that would fail the same way forever.
STARTUP_FAILURE = 3


def _audit_promotion(database: Database) -> Callable[[str, LoadedModel], None]:
    def audit(champion: str, loaded: LoadedModel) -> None:
        try:
            with database.sessions() as session:
                # Each worker process puts the champion into service itself, so each records it.
                session.add(AuditEntry(actor="registry", action="model.promote", target=champion,
                                       detail={"version": loaded.version, "path": str(loaded.path), "pid": os.getpid()}))
                session.commit()
        except SQLAlchemyError as exc:
            log.error("promotion of %s not audited, database unavailable: %s", champion, type(exc).__name__)

    return audit


def create_app(settings: Settings) -> FastAPI:
    """Loads the model (refusing a damaged one) and migrates the database. A database
    that is down at start-up is logged, not fatal: migrations are retried from the
    first requests and /readyz, which answers 503 until they succeed."""
    database = Database(settings.database_url, retry_seconds=settings.database_retry_seconds)
    database.ensure_migrated()

    secret = settings.signing_key.get_secret_value() if settings.signing_key else None
    models = ModelHolder(signing_key(create=False, secret=secret, key_file=settings.signing_key_file))
    watch = follower = None
    # The registry governs once `triage retrain` has made one; until then the model in
    # service is the database's row, which a reload sets.
    if settings.registry_dir is not None and (settings.registry_dir / REGISTRY_FILE).exists():
        watch = RegistryWatch(settings.registry_dir, models, settings.registry_poll_seconds,
                              on_promote=_audit_promotion(database))
        watch.check()
    else:
        # A restart serves what was put into service last, not TRIAGE_MODEL_DIR again.
        follower = ServedModelFollower(database, models, settings.model_root, settings.model_poll_seconds)
        follower.check()
    if models.current is None:
        if watch is not None:
            # Info: the check above has already said why when the registry is not just empty.
            log.info("no usable champion in the model registry %s; serving %s", settings.registry_dir, settings.model_dir)
        try:
            models.reload(settings.model_dir)
        except ArtifactError:
            if watch is None:
                raise
            # The registry may get a champion later; until then /readyz says no model.
            log.exception("model %s not loaded either", settings.model_dir)

    matters = SharedMatterIndex(settings.similar_window_days, settings.link_threshold)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for watcher in (watch, follower):
            if watcher is not None:
                watcher.start()
        matters.warm_up(database)
        try:
            yield
        finally:
            for watcher in (watch, follower):
                if watcher is not None:
                    watcher.stop()
            process_stopped()

    # /docs is served by service.web from vendored files (no CDN); ReDoc would need one.
    app = FastAPI(title="petition-triage", version="1", description="Routing suggestions for petitions (信访件).",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings, app.state.database, app.state.models = settings, database, models
    app.state.registry_watch, app.state.model_follower = watch, follower
    app.state.recent_keys = RecentKeys(settings.offline_key_seconds, settings.key_check_seconds)
    app.state.matters = matters

    app.add_middleware(LimitsAndMetrics, max_request_bytes=settings.max_request_bytes, database=database)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeoutError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Routes that cannot work without storage (queue, stats, reload) answer 503, not 500.
        log.error("%s %s: database unavailable: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse({"detail": "the database is unavailable; try again shortly"},
                            status_code=503)

    for module in API_ROUTERS:
        app.include_router(module.router)
    web.install(app)
    return app


# How much of an oversized page form (a ledger upload) is read and dropped so that the
# browser, done sending, shows the page that says what was wrong.
PAGE_DRAIN_BYTES = 64 * 1024 * 1024


class LimitsAndMetrics:
    """Refuses oversized bodies, migrates a database that was down at start-up, and counts
    requests. Plain ASGI rather than @app.middleware("http"): that wraps every response
    in a stream and a task group, which cost more per request than this whole middleware."""

    def __init__(self, app: ASGIApp, max_request_bytes: int, database: Database) -> None:
        self.app, self.max_request_bytes, self.database = app, max_request_bytes, database
        self.too_large = f"request body over {max_request_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        # A page's form (a ledger upload) is answered with a page, which a browser shows only
        # once it has sent its whole upload: answered early, it reported a broken connection, or
        # showed the API's JSON. Its body is read and dropped, up to PAGE_DRAIN_BYTES.
        form = web.is_page(scope["path"])
        if length.isdigit() and int(length) > (PAGE_DRAIN_BYTES if form else self.max_request_bytes):
            # Closing the connection spares the server reading (and discarding) the announced body.
            response = JSONResponse({"detail": self.too_large}, status_code=413, headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        # A chunked body announces no length: its bytes are counted as they arrive, and the
        # message that goes over the limit never reaches the app. The HTTPException passes through
        # FastAPI's body parsing (which turns other errors into a 400) to its handler, the 413.
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_request_bytes:
                    while form and message.get("more_body") and received <= PAGE_DRAIN_BYTES:
                        message = await receive()
                        received += len(message.get("body", b""))
                    raise HTTPException(413, self.too_large, headers={"Connection": "close"})
            return message
        if not self.database.migrated:
            await run_in_threadpool(self.database.ensure_migrated)
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive_within_limit, send_and_note_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)


def _stop_with_supervisor() -> None:
    # A worker outliving its supervisor (killed with SIGKILL, or crashed) would go on serving,
    # unsupervised, on the port forever. When the supervisor is gone, stop as on SIGTERM:
    # requests in flight are finished first.
    supervisor = multiprocessing.parent_process()
    if supervisor is None:  # one worker: uvicorn serves in the `triage serve` process itself
        return

    def watch() -> None:
        supervisor.join()
        log.warning("the supervisor process %s is gone; worker %s stops", supervisor.pid, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def create_app_from_env() -> FastAPI:
    """The app of one `triage serve` worker process (uvicorn's factory): settings from
    the environment, as the parent process read them."""
    _stop_with_supervisor()
    try:
        return create_app(get_settings())
    except Exception as exc:
        log.critical("cannot start the service: %s: %s", type(exc).__name__, exc)
        raise SystemExit(STARTUP_FAILURE) from exc
