"""Which words and rules drove a head's choice, located in the input text.

For a linear head, feature i adds x_i * w_c,i to the score of class c; the
largest positive terms are the words that pushed the petition toward the
chosen class. Each is then found in the text so the desk can see it."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from model.text import ask_start, normalize

if TYPE_CHECKING:
    from model.taxonomy import Rule
    from model.triage import TriageModel

MAX_SPANS_PER_TERM = 3


def _class_weights(model: TriageModel, head: str, label: str) -> np.ndarray | None:
    classes = model.classes_[head]
    if label not in classes:
        return None
    coef = model.heads_[head].coef_
    if coef.shape[0] == 1:  # binary: one row scores classes[1]
        return coef[0] if classes.index(label) == 1 else -coef[0]
    return coef[classes.index(label)]


def _surface(feature: str, model: TriageModel) -> tuple[str, list[str]]:
    """The feature's kind and the strings to look for in the text."""
    block, _, name = feature.partition("__")
    if block == "keywords":
        if name.startswith("kw:"):
            _, head, code = name.split(":", 2)
            label = next(x for x in model.taxonomy.labels(head) if x.code == code)
            return "keyword", list(label.keywords)
        return "rule", []
    return block, [name.replace(" ", "")]


def _informative(needle: str) -> bool:
    # Single characters and punctuation carry weight in the model but tell a person nothing.
    # (Most needles are words of letters only: isalnum() settles those without a loop.)
    return len(needle) > 1 and (needle.isalnum() or any(ch.isalnum() for ch in needle))


# Per fitted model, which feature columns could ever be shown: computed once, as most of
# a petition's columns are single characters that the loop below would look up in vain.
_SHOWABLE: weakref.WeakKeyDictionary[Any, tuple[Any, np.ndarray]] = weakref.WeakKeyDictionary()
_SHOWABLE_LOCK = threading.Lock()


def _showable(model: TriageModel) -> np.ndarray:
    """Per feature column, whether explaining it can find anything to show: not a rule
    column (rules report their own spans), and with at least one informative string."""
    cached = _SHOWABLE.get(model)
    if cached is None or cached[0] is not model.feature_names_:
        # Once per model, not once per thread: the first requests after a model is loaded
        # arrive together, and each computing it took seconds of the worker between them.
        with _SHOWABLE_LOCK:
            cached = _SHOWABLE.get(model)
            if cached is None or cached[0] is not model.feature_names_:
                mask = np.zeros(len(model.feature_names_), bool)
                for i, name in enumerate(model.feature_names_):
                    kind, needles = _surface(str(name), model)
                    mask[i] = kind != "rule" and any(map(_informative, needles))
                cached = (model.feature_names_, mask)
                _SHOWABLE[model] = cached
    return cached[1]


def _region(kind: str, normalized: str) -> tuple[int, int]:
    """Where a feature of this kind was read: the title, the closing request, or anywhere."""
    if kind == "title":
        newline = normalized.find("\n")
        return 0, len(normalized) if newline < 0 else newline
    if kind == "ask":
        return ask_start(normalized), len(normalized)
    return 0, len(normalized)


def _spans(original: str, normalized: str, needles: list[str], region: tuple[int, int]) -> list[dict[str, Any]]:
    """Occurrences found in the normalised text, reported with the original characters
    (normalisation keeps offsets, so the two line up)."""
    spans = []
    begin, limit = region
    for needle in filter(_informative, needles):
        start = normalized.find(needle, begin, limit)
        while start != -1 and len(spans) < MAX_SPANS_PER_TERM:
            end = start + len(needle)
            spans.append({"start": start, "end": end, "text": original[start:end]})
            start = normalized.find(needle, end, limit)
    return spans


def explain_head(
    model: TriageModel, head: str, label: str, matrix: Any, text: str,
    rule_hits: list[tuple[Rule, list[tuple[int, int]]]], top_terms: int, view: str | None = None,
) -> dict[str, Any]:
    """The words (up to `top_terms`) and rules that drove `head` to `label` for `text`,
    whose features are the first row of the CSR `matrix`; `view` is
    `model.feature_view(normalize(text))` when the caller has it already."""
    # Found where the features read them: in the same view of the text.
    normalized = model.feature_view(normalize(text)) if view is None else view
    terms: list[dict[str, Any]] = []
    weights = _class_weights(model, head, label)
    if weights is not None:
        columns = matrix.indices[matrix.indptr[0]:matrix.indptr[1]]
        values = matrix.data[matrix.indptr[0]:matrix.indptr[1]]
        shown = _showable(model)[columns]
        columns, contributions = columns[shown], values[shown] * weights[columns[shown]]
        seen: set[str] = set()
        # Only terms that pushed toward the label are shown: the others are left out before
        # sorting (in the same order among themselves, ties by column).
        pushing = np.flatnonzero(contributions > 0)
        for idx in pushing[np.argsort(-contributions[pushing], kind="stable")]:
            if len(terms) >= top_terms:
                break
            kind, needles = _surface(str(model.feature_names_[columns[idx]]), model)
            spans = _spans(text, normalized, needles, _region(kind, normalized))
            key = "|".join(s["text"] for s in spans)
            if not spans or key in seen:
                continue
            seen.add(key)
            terms.append({
                "term": spans[0]["text"], "kind": kind,
                "weight": round(float(contributions[idx]), 4), "spans": spans,
            })
    rules = [
        {
            "rule": rule.id, "label": rule.label, "explain": rule.explain,
            "spans": [{"start": s, "end": e, "text": text[s:e]} for s, e in spans[:MAX_SPANS_PER_TERM]],
        }
        for rule, spans in rule_hits
    ]
    return {"label": label, "terms": terms, "rules": rules}
