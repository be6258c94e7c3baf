"""模型 (models, admin): the registry's versions and champion, their training reports, and
promote / rollback with a recorded reason: the registry's own operations, as the CLI runs them."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from service.database import AuditEntry
from service.deps import SessionDep
from service.web.render import HEAD_NAMES, StaffNames, page
from service.web.sessions import Csrf, WebUser, page_user
from training.registry import MetricCheck, PromotionRefused, Registry, RegistryError

router = APIRouter(include_in_schema=False)
AdminUser = Annotated[WebUser, Depends(page_user("admin"))]
FORCE = "如仍要上线，请勾选「指标未比较或变差时仍上线」并填写理由。"
RESTORE = "请从备份恢复该版本的目录。"
# Why the registry refused, as training/registry.py (and model/artifact.py, for a version's
# metadata) words it, in the page's words: the admin read "v1 is the first champion of …;
# there is no previous one to restore" under a Chinese page. Each names what the English
# named (the version, the file); a reason not listed keeps its English after a Chinese lead.
REGISTRY_PROBLEMS = (
    (r"no version '(?P<version>.*)' in .* \(registered: (?P<known>.*)\)", "仓库中没有版本 {version}（已登记的版本：{known}）。"),
    (r"(?P<version>.*) is not a version name .*", "{version} 不是版本名：版本名只能由字母、数字和 . _ - 组成。"),
    (r"(?P<version>\S+): (?P<file>.+) cannot be read \((?P<why>.*)\); .*", "版本 {version} 的模型文件 {file} 无法读取（{why}）。" + RESTORE),
    (r"(?P<version>\S+): (?P<file>.+) is not the file its metadata records .*",
     "版本 {version} 的模型文件 {file} 与其元数据记录的不符（已损坏或复制不完整）。" + RESTORE),
    (r"(?P<version>\S+) is already the champion", "{version} 已是在用版本。"),
    (r"(?P<version>\S+) was signed with key id (?P<signed>\S+), champion (?P<champion>\S+) with (?P<expected>[^:]+): .*",
     "版本 {version} 的签名密钥（{signed}）与在用版本 {champion} 的（{expected}）不同：按在用版本的密钥加载模型的服务无法加载 {version}。"
     "请用服务的密钥重新签名（triage sign --model 版本目录，使用服务的 TRIAGE_HOME）；确已更换密钥时，"
     "请勾选「指标未比较或变差时仍上线」并填写理由。"),
    (r"(?P<version>\S+) is worse than champion (?P<champion>\S+): .*", "版本 {version} 的指标不如在用版本 {champion}：{checks}。" + FORCE),
    (r"(?P<version>\S+) is worse than (?P<served>\S+), the model served while the registry has no champion .*",
     "版本 {version} 的指标不如仓库还没有在用版本时正在服务的模型 {served}（上线将替换它）：{checks}。" + FORCE),
    (r"(?P<version>\S+) was evaluated against (?P<against>.+?)(?P<problem> \(it could not be scored: .*\))?, "
     r"but the champion now is (?P<champion>\S+); .*",
     "版本 {version} 训练时比较的是 {against}{problem}，而现在的在用版本是 {champion}：请重新训练，让两者在同一批留出的信访件上评分。" + FORCE),
    (r".* has no champion; nothing to roll back", "模型仓库还没有在用版本，无可回滚。"),
    (r"(?P<version>\S+) is the first champion of .*; there is no previous one to restore",
     "{version} 是模型仓库的第一个在用版本，没有可以回滚到的上一个版本。"),
    (r"(?P<file>.+) is not valid JSON \((?P<why>.*)\); restore it from backup.*",
     "模型仓库的状态文件 {file} 不是有效的 JSON（{why}）：请从备份恢复它，各版本的目录完好。"),
    (r"(?P<file>.+) lacks 'champion' or a 'history' list.*", "{file} 缺少 champion 或 history：不是模型仓库的状态文件。"),
    (r"(?P<file>.+): champion (?P<champion>.+) disagrees with its history .*",
     "{file} 记录的在用版本 {champion} 与其历史不符：该文件被手工修改过。"),
    (r"no registry at (?P<root>.+?) \(.*", "{root} 还没有模型仓库：triage retrain 第一次运行时创建。"),
    (r"model directory not found: (?P<file>.+)", "找不到模型目录 {file}。"),
    (r"(?P<file>.+) is missing; not a model directory.*", "{file} 不存在：不是模型目录。"),
    (r"(?P<file>.+) is not valid JSON \((?P<why>.*)\); the artifact is damaged", "{file} 不是有效的 JSON（{why}）：模型已损坏。"),
    (r"(?P<file>.+) lacks '(?P<key>.*)'; the artifact is damaged.*", "{file} 缺少「{key}」：模型已损坏或不是本工具生成的。"),
)


def _check_in_chinese(check: MetricCheck) -> str:
    if check.ceiling is not None:
        champion = "未知" if check.champion is None else f"{check.champion:.1%}"
        return (f"将 {check.challenger:.1%} 的信访件判为高风险，超过研判队列能承受的 {check.ceiling:.0%}"
                f"（在用版本 {champion}）")
    head, _, name = check.metric.partition(".")
    return (f"{HEAD_NAMES.get(head, head)} {name} 为 {check.challenger:.3f}，在用版本为 {check.champion:.3f}"
            f"（相差 {check.delta:+.3f}，容差 {check.tolerance}）")


def registry_error_in_chinese(exc: RegistryError | str) -> str:
    """Why the registry refused a promotion or a rollback, or cannot list a version, in Chinese.

    Parameters
    ----------
    exc
        The registry's refusal, or the text of a version's error as `Registry.versions` lists it.

    Returns
    -------
    str
        The reason in Chinese, naming the version and the file the English named; the English
        follows a Chinese lead when the reason is not one the page knows.
    """
    message = str(exc)
    checks = exc.checks if isinstance(exc, PromotionRefused) else []
    for pattern, chinese in REGISTRY_PROBLEMS:
        if (match := re.fullmatch(pattern, message, re.S)) is not None:
            found = {name: value or "" for name, value in match.groupdict().items()}
            if found.get("known") == "none":
                found["known"] = "无"
            if found.get("against") == "no champion":
                found["against"] = "（没有在用版本）"
            if found.get("problem"):
                found["problem"] = "（当时无法评分）"
            return chinese.format(**found, checks="；".join(_check_in_chinese(c) for c in checks if c.worse))
    return f"模型仓库拒绝了此操作（{message}）"


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
            error = error or registry_error_in_chinese(exc)
        versions = [{**v, "error": registry_error_in_chinese(v["error"])} if v.get("error") else v for v in versions]
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
        return page(request, "error.html", user, status=404, message=registry_error_in_chinese(exc))
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
        return _page(request, user, session, error=registry_error_in_chinese(exc), status=409)
    session.add(AuditEntry(actor=user.actor, action=f"model.{action}.web", target=entry["version"][:200],
                           detail={"reason": reason, "previous": entry.get("previous")}))
    session.commit()
    # The registry watch of each worker puts the new champion into service within its poll interval.
    return RedirectResponse("/models?changed=1", status_code=303)
