"""Health, readiness and metrics: no key needed."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from service.database import ReviewItem
from service.metrics import REVIEW_QUEUE, exposition

router = APIRouter(tags=["health"])


# HEAD too: monitors and load balancers that probe with HEAD took the 405 for a service down.
PROBE_METHODS = ["GET", "HEAD"]


@router.api_route("/healthz", methods=PROBE_METHODS)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.api_route("/readyz", methods=PROBE_METHODS, responses={503: {"description": "Not ready: no model loaded, or the database "
                                                         "unreachable or not migrated; the body says which."}})
def readyz(request: Request, response: Response) -> dict[str, object]:
    model = request.app.state.models.current
    # Reachable and migrated to the revision this code needs (migrating now if it was down at start-up).
    database = request.app.state.database.check()
    ready = model is not None and database
    response.status_code = 200 if ready else 503
    return {"ready": ready, "model": model.version if model else None, "database": database}


@router.get("/metrics")
def metrics(request: Request) -> Response:
    try:
        with request.app.state.database.sessions() as session:
            REVIEW_QUEUE.set(session.scalar(select(func.count()).where(ReviewItem.status == "open")) or 0)
    except SQLAlchemyError:
        pass
    # Every worker's counts when several serve (see service/metrics.py), not only this one's.
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
