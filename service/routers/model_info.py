"""GET /v1/model and POST /v1/model/reload."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from model.artifact import ArtifactError
from service.database import ApiKey, AuditEntry
from service.deps import ModelDep, SessionDep, actor_of, require_role
from service.routers import KeyedRoute
from service.schemas import ReloadIn

router = APIRouter(prefix="/v1/model", tags=["model"], route_class=KeyedRoute)


@router.get("")
def model_info(loaded: ModelDep, _: Annotated[ApiKey, Depends(require_role("analyst", "intake", "reviewer"))]) -> dict[str, Any]:
    meta = loaded.metadata
    return {
        "version": loaded.version, "created_at": meta.get("created_at"), "taxonomy": meta.get("taxonomy"),
        "heldout_metrics": meta.get("heldout_metrics"), "thresholds": meta.get("thresholds"),
        "training_data": meta.get("training_data"),
    }


@router.post("/reload")
def reload_model(body: ReloadIn, request: Request, session: SessionDep,
                 key: Annotated[ApiKey, Depends(require_role("admin"))]) -> dict[str, str]:
    try:
        loaded = request.app.state.models.reload(body.model_dir)
    except ArtifactError as exc:
        session.add(AuditEntry(actor=actor_of(key), action="model.reload.refused", target=body.model_dir,
                               detail={"error": str(exc)}))
        session.commit()
        raise HTTPException(422, f"model_dir: {exc}; the previous model keeps serving") from None
    session.add(AuditEntry(actor=actor_of(key), action="model.reload", target=body.model_dir,
                           detail={"version": loaded.version}))
    session.commit()
    return {"version": loaded.version}
