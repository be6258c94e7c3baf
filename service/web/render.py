"""Templates and the evidence highlighting shared by the pages."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from model.office_time import CHINA_TIME
from service.cases import as_utc
from service.database import ApiKey
from service.deps import actor_prefix
from service.schemas import HeadExplanation
from service.web.sessions import CSRF_FIELD, WebUser

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
HEAD_NAMES = {"division": "承办处室", "risk": "风险等级", "key_group": "重点群体"}
# What each role sees in the navigation: the pages whose checks it passes. The first a role
# may open is where it lands on signing in: 群体苗头 comes after 统计 so analysts still land there.
PAGES = (("/intake", "登记", ("intake",)), ("/review", "研判", ("reviewer",)),
         ("/overview", "统计", ("analyst",)), ("/emerging", "群体苗头", ("reviewer", "analyst")), ("/models", "模型", ("admin",)))


@dataclass(frozen=True)
class Mark:
    start: int
    end: int
    head: str
    why: str


# Words weighing less than this towards a label are not worth a reader's attention.
MIN_WEIGHT = 0.005


def shown_heads(explanation: dict[str, HeadExplanation] | dict[str, Any]) -> list[str]:
    """The heads whose evidence is shown: not the key group's when the case concerns none."""
    return [head for head in ("division", "risk", "key_group") if head in explanation
            and not (head == "key_group" and _part(explanation[head]).label == "none")]


def _part(part: HeadExplanation | dict[str, Any]) -> HeadExplanation:
    return part if isinstance(part, HeadExplanation) else HeadExplanation.model_validate(part)


def marks_of(explanation: dict[str, HeadExplanation] | dict[str, Any]) -> list[Mark]:
    """Every span that drove a suggestion: words weighing towards it, and the rules that fired."""
    marks = []
    for head in shown_heads(explanation):
        part = _part(explanation[head])
        for term in part.terms:
            if term.weight >= MIN_WEIGHT:
                marks += [Mark(s.start, s.end, head, f"{HEAD_NAMES.get(head, head)}：{term.term}") for s in term.spans]
        for rule in part.rules:
            marks += [Mark(s.start, s.end, head, f"{HEAD_NAMES.get(head, head)}规则 {rule.rule}：{rule.explain}") for s in rule.spans]
    return marks


def highlight(text: str, marks: list[Mark]) -> Markup:
    """The text, escaped, with each stretch covered by marks in a <mark> naming its heads and reasons."""
    cuts = sorted({0, len(text), *(m.start for m in marks if 0 <= m.start <= len(text)),
                   *(m.end for m in marks if 0 <= m.end <= len(text))})
    out = []
    for start, end in itertools.pairwise(cuts):
        piece = escape(text[start:end])
        covering = [m for m in marks if m.start <= start and end <= m.end]
        if not covering:
            out.append(piece)
            continue
        heads = sorted({m.head for m in covering})
        why = "；".join(dict.fromkeys(m.why for m in covering))
        classes = " ".join(f"ev-{h}" for h in heads)
        out.append(Markup('<mark class="{}" data-heads="{}" title="{}">{}</mark>').format(classes, " ".join(heads), why, piece))
    return Markup("").join(out)


def local_time(moment: datetime | str | None) -> str:
    """A stored moment on the office's clock (the API writes UTC, with its offset). The model's
    metadata and the registry write theirs as ISO text in UTC, shown raw until an admin read a
    model trained in the evening as trained the day before."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    return "" if moment is None else as_utc(moment).astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M 北京时间")


class StaffNames:
    """Who did something, as a person reads it: the label `triage keys create --label` gave
    the key, where the record holds the key as the API writes its actor (key:PREFIX(role)).

    A resolved item said "已由 key:3f9a0c1e(reviewer) 完成研判", which no one at the desk could
    put a name to. A key without a label, or one no longer there, is named by its prefix;
    anything else (a name an API client sent as decided_by) is shown as it was stored.

    Parameters
    ----------
    session
        The request's database session, in which the keys are looked up (each once).
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.labels: dict[str, str] = {}

    def __call__(self, actor: str | None) -> str:
        prefix = actor_prefix(actor)
        if prefix is None:
            return actor or ""
        if prefix not in self.labels:
            label = self.session.scalar(select(ApiKey.label).where(ApiKey.prefix == prefix))
            self.labels[prefix] = (label or "").strip() or f"密钥 {prefix}"
        return self.labels[prefix]


def hours_left(due: datetime) -> float:
    return (as_utc(due) - datetime.now(UTC)).total_seconds() / 3600


templates.env.filters["when"] = local_time
templates.env.filters["pct"] = lambda p: f"{100 * p:.0f}%"
# Why an item is in the review queue, as the API names it (service/routers/review.py), in the
# pages' words. Emerging groups were missing: shown as "emerging_group", and not a filter.
REVIEW_REASONS = {"high_risk": "高风险", "low_confidence": "分办把握不足", "emerging_group": "疑似群体性事项"}
templates.env.globals["review_reasons"] = REVIEW_REASONS
templates.env.globals["hours_left"] = hours_left
templates.env.globals["head_names"] = HEAD_NAMES
templates.env.globals["min_weight"] = MIN_WEIGHT
# Where a word was read, when not anywhere in the text (model/explain.py's feature kinds).
templates.env.globals["term_kinds"] = {"keyword": "分类关键词", "title": "标题", "ask": "诉求"}


def page(request: Request, template: str, user: WebUser | None, status: int = 200,
         headers: Mapping[str, str] | None = None, **context: Any) -> HTMLResponse:
    nav = [(path, label) for path, label, roles in PAGES if user is not None and user.may(*roles)]
    # Kept out of the browser's caches: after 退出登录 on a shared desk, the back button
    # showed the petitions and the queue again without asking for a key.
    return templates.TemplateResponse(request, template, {"user": user, "nav": nav, "csrf_field": CSRF_FIELD,
                                                          "csrf": user.csrf if user else "", **context}, status_code=status,
                                      headers={"Cache-Control": "no-store", **(headers or {})})
