"""模型 (models, admin): the registry's versions and champion, their training reports, and
promote / rollback with a recorded reason: the registry's own operations, as the CLI runs them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from service.database import AuditEntry
from service.deps import SessionDep
from service.web.render import StaffNames, page
from service.web.sessions import Csrf, WebUser, page_user
from training.registry import Registry, RegistryError

router = APIRouter(include_in_schema=False)
AdminUser = Annotated[WebUser, Depends(page_user("admin"))]


def _registry(request: Request) -> Registry | None:
    """The registry, once `triage retrain` has made one. Before (a fresh install) the page listed
    no versions under forms whose 回滚 answered in English that there was no registry."""
    root = request.app.state.settings.registry_dir
    registry = Registry(root) if root is not None else None
    return registry if registry is not None and registry.state_path.exists() else None


def _page(request: Request, user: WebUser, session: Session, message: str = "", error: str = "",
          status: int = 200) -> HTMLResponse:
    registry = _registry(request)
    loaded = request.app.state.models.current
    versions, champion, history = [], None, []
    if registry is not None:
        try:
            state = registry.read_state()
            versions, champion, history = registry.versions(), state["champion"], state["history"][-20:][::-1]
        except RegistryError as exc:
            error = error or str(exc)
    return page(request, "models.html", user, status=status, registry=registry, versions=versions, champion=champion,
                registry_dir=request.app.state.settings.registry_dir,
                history=history, serving=loaded.version if loaded else None, message=message, error=error,
                who=StaffNames(session),
                has_report=lambda v: registry is not None and registry.report_path(v).is_file())


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, user: AdminUser, session: SessionDep) -> HTMLResponse:
    return _page(request, user, session)


@router.get("/models/{version}/report", response_class=HTMLResponse)
def report(request: Request, version: str, user: AdminUser) -> Response:
    registry = _registry(request)
    try:
        path = registry.report_path(version) if registry is not None else None
    except RegistryError as exc:
        return page(request, "error.html", user, status=404, message=str(exc))
    if path is None or not path.is_file():
        return page(request, "error.html", user, status=404, message=f"{version} 没有训练报告")
    return FileResponse(path, media_type="text/html; charset=utf-8")


@router.post("/models/promote", response_class=HTMLResponse)
def promote(request: Request, user: AdminUser, _: Csrf, session: SessionDep, version: Annotated[str, Form()] = "",
            reason: Annotated[str, Form()] = "", force: Annotated[bool, Form()] = False) -> Response:
    return _change(request, user, session, "promote", version, reason, force)


@router.post("/models/rollback", response_class=HTMLResponse)
def rollback(request: Request, user: AdminUser, _: Csrf, session: SessionDep, reason: Annotated[str, Form()] = "") -> Response:
    return _change(request, user, session, "rollback", "", reason, False)


def _change(request: Request, user: WebUser, session: SessionDep, action: str, version: str, reason: str, force: bool) -> Response:
    registry = _registry(request)
    if registry is None:
        return _page(request, user, session, error="还没有模型仓库：triage retrain 第一次运行时创建。", status=409)
    if not reason.strip():
        return _page(request, user, session, error="请填写理由：它记入模型仓库的历史和审计日志。", status=422)
    try:
        if action == "promote":
            entry = registry.promote(version, by=user.actor, force=force, reason=reason)
        else:
            entry = registry.rollback(by=user.actor, reason=reason)
    except RegistryError as exc:
        return _page(request, user, session, error=str(exc), status=409)
    session.add(AuditEntry(actor=user.actor, action=f"model.{action}.web", target=entry["version"][:200],
                           detail={"reason": reason, "previous": entry.get("previous")}))
    session.commit()
    # The registry watch of each worker puts the new champion into service within its poll interval.
    return RedirectResponse("/models?changed=1", status_code=303)
