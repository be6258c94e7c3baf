"""Health, readiness and metrics: no key needed."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from service.database import ReviewItem
from service.metrics import REVIEW_QUEUE, exposition

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready: no model loaded, or the database "
                                                         "unreachable or not migrated; the body says which."}})
def readyz(request: Request, response: Response) -> dict[str, object]:
    model = request.app.state.models.current
    # Reachable and migrated to the revision this code needs (migrating now if it was down at start-up).
    database = request.app.state.database.check()
    ready = model is not None and database
    response.status_code = 200 if ready else 503
    return {"ready": ready, "model": model.version if model else None, "database": database}


# HEAD too: monitors and load balancers that probe with HEAD took the 405 for a service down.
# Routes of their own, left out of the schema: one route for both methods gave the schema two
# operations with one operation id, which clients generated from it refuse.
for _probe in (healthz, readyz):
    router.add_api_route(f"/{_probe.__name__}", _probe, methods=["HEAD"], include_in_schema=False)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    try:
        with request.app.state.database.sessions() as session:
            REVIEW_QUEUE.set(session.scalar(select(func.count()).where(ReviewItem.status == "open")) or 0)
    except SQLAlchemyError:
        pass
    # Every worker's counts when several serve (see service/metrics.py), not only this one's.
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
