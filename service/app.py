"""The FastAPI application: one router per resource, state built once at start-up."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from model.artifact import ArtifactError, LoadedModel
from service.database import AuditEntry, Database
from service.deps import RecentKeys
from service.metrics import LATENCY, REQUESTS
from service.model_holder import ModelHolder
from service.registry_watch import RegistryWatch
from service.routers import decisions, health, model_info, review, stats, triage
from service.settings import Settings

log = logging.getLogger("triage.service")


def _audit_promotion(database: Database) -> Callable[[str, LoadedModel], None]:
    def audit(champion: str, loaded: LoadedModel) -> None:
        try:
            with database.sessions() as session:
                session.add(AuditEntry(actor="registry", action="model.promote", target=champion,
                                       detail={"version": loaded.version, "path": str(loaded.path)}))
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

    models = ModelHolder()
    watch = None
    if settings.registry_dir is not None:
        watch = RegistryWatch(settings.registry_dir, models, settings.registry_poll_seconds,
                              on_promote=_audit_promotion(database))
        watch.check()
    if models.current is None:
        if watch is not None:
            log.warning("no usable champion in the model registry %s; serving %s", settings.registry_dir, settings.model_dir)
        try:
            models.reload(settings.model_dir)
        except ArtifactError:
            if watch is None:
                raise
            # The registry may get a champion later; until then /readyz says no model.
            log.exception("model %s not loaded either", settings.model_dir)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if watch is not None:
            watch.start()
        try:
            yield
        finally:
            if watch is not None:
                watch.stop()

    app = FastAPI(title="petition-triage", version="1", description="Routing suggestions for petitions (信访件).",
                  lifespan=lifespan)
    app.state.settings, app.state.database, app.state.models = settings, database, models
    app.state.registry_watch = watch
    app.state.recent_keys = RecentKeys(settings.offline_key_seconds)

    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_request_bytes:
            return JSONResponse({"detail": f"request body over {settings.max_request_bytes} bytes"}, status_code=413)
        if not database.migrated:
            await run_in_threadpool(database.ensure_migrated)
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        LATENCY.labels(route).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeoutError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Routes that cannot work without storage (queue, stats, reload) answer 503, not 500.
        log.error("%s %s: database unavailable: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse({"detail": "the database is unavailable; try again shortly"},
                            status_code=503)

    for module in (health, triage, decisions, review, model_info, stats):
        app.include_router(module.router)
    return app
