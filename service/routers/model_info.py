"""GET /v1/model and POST /v1/model/reload."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from model.artifact import ArtifactError, load_model
from service.database import ApiKey, AuditEntry
from service.deps import ModelDep, SessionDep, SettingsDep, actor_of, require_role
from service.model_holder import confined, put_in_service
from service.routers import BODY_ERRORS, KEYED_ERRORS, InvalidField, KeyedRoute, errors
from service.schemas import ReloadIn

router = APIRouter(prefix="/v1/model", tags=["model"], route_class=KeyedRoute,
                   responses=errors(*KEYED_ERRORS))


@router.get("")
def model_info(loaded: ModelDep, _: Annotated[ApiKey, Depends(require_role("analyst"))]) -> dict[str, Any]:
    meta = loaded.metadata
    return {
        "version": loaded.version, "created_at": meta.get("created_at"), "taxonomy": meta.get("taxonomy"),
        "heldout_metrics": meta.get("heldout_metrics"), "thresholds": meta.get("thresholds"),
        "training_data": meta.get("training_data"),
        # The optional encoder head (docs/model.md), null without it.
        "encoder": meta.get("encoder"),
    }


@router.post("/reload", responses=errors(*BODY_ERRORS, 409))
def reload_model(body: ReloadIn, request: Request, session: SessionDep, settings: SettingsDep,
                 key: Annotated[ApiKey, Depends(require_role("admin"))]) -> dict[str, str]:
    """Puts a model into service in every worker: it is loaded and checked here, recorded
    in the database, and the other workers follow within model_poll_seconds."""
    if request.app.state.registry_watch is not None:
        raise HTTPException(409, f"this service serves the champion of the model registry {settings.registry_dir}; "
                                 "put a model into service with `triage models promote`")
    models = request.app.state.models
    try:
        loaded = load_model(confined(body.model_dir, settings.model_root), models.key)
    except ArtifactError as exc:
        session.add(AuditEntry(actor=actor_of(key), action="model.reload.refused", target=body.model_dir,
                               detail={"error": str(exc)}))
        session.commit()
        raise InvalidField(("body", "model_dir"), f"model_dir: {exc}; the previous model keeps serving") from None
    follower = request.app.state.model_follower
    with follower.lock if follower is not None else contextlib.nullcontext():
        put_in_service(session, loaded, actor_of(key))
        session.add(AuditEntry(actor=actor_of(key), action="model.reload", target=body.model_dir,
                               detail={"version": loaded.version, "path": str(loaded.path)}))
        # Recorded first: a reload the database did not take changes no worker.
        session.commit()
        models.serve(loaded)
    return {"version": loaded.version}
