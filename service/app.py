"""The FastAPI application: one router per resource, state built once at start-up."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from model.artifact import load_model
from service.database import Database
from service.metrics import LATENCY, REQUESTS
from service.model_holder import ModelHolder
from service.routers import decisions, health, model_info, review, stats, triage
from service.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """Loads the model (refusing a damaged one) and prepares the database."""
    database = Database(settings.database_url)
    database.create_schema()
    models = ModelHolder(load_model(settings.model_dir))

    app = FastAPI(title="petition-triage", version="1", description="Routing suggestions for petitions (信访件).")
    app.state.settings, app.state.database, app.state.models = settings, database, models

    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_request_bytes:
            return JSONResponse({"detail": f"request body over {settings.max_request_bytes} bytes"}, status_code=413)
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        LATENCY.labels(route).observe(time.perf_counter() - started)
        return response

    for module in (health, triage, decisions, review, model_info, stats):
        app.include_router(module.router)
    return app
