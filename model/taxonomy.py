"""The label set and the auditable rules, read from the province's config file."""

from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from data import bundled

HEADS = ("division", "risk", "key_group")
# Besides the three heads the API returns, a binary high-vs-rest head ranks
# petitions for the same-day review queue (model/triage.py).
HIGH_HEAD = "risk_high"
RISK_ORDER = ("low", "medium", "high")
DEFAULT_TAXONOMY = bundled("taxonomy.toml")
# Common ways a ledger or a person writes a risk level or "no key group".
RISK_ALIASES = {"低": "low", "中": "medium", "高": "high", "低风险": "low", "中风险": "medium", "高风险": "high",
                "一般": "low", "较高": "medium", "紧急": "high"}
NONE_ALIASES = {"", "无", "否", "none", "非重点群体", "-", "/"}


@functools.lru_cache(maxsize=4096)
def written_form(value: str) -> str:
    """`value` as labels are compared: Unicode NFKC (full-width letters, digits and
    brackets as their half-width forms) and no spaces anywhere, so that
    调解仲裁管理处(劳动人事争议仲裁院) typed with half-width brackets, or a name with a
    space in it, is the label the taxonomy names with full-width ones.

    Parameters
    ----------
    value : str
        A label as written in a ledger or a decision.

    Returns
    -------
    str
        The normalised text.
    """
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", value))


class TaxonomyError(ValueError):
    """The taxonomy config is malformed; the message names the entry and field."""


@dataclass(frozen=True)
class Label:
    code: str
    name: str
    description: str = ""
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    id: str
    head: str
    label: str
    explain: str
    patterns: tuple[str, ...]
    requires: tuple[str, ...] = ()
    example: str = ""
    counter_example: str = ""
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _required: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", re.compile("|".join(f"(?:{p})" for p in self.patterns)))
        required = re.compile("|".join(f"(?:{p})" for p in self.requires)) if self.requires else None
        object.__setattr__(self, "_required", required)

    def matches(self, text: str) -> list[tuple[int, int]]:
        """Character spans that fire this rule, or [] when it does not fire."""
        spans = [m.span() for m in self._compiled.finditer(text) if m.end() > m.start()]
        if not spans or self._required is None:
            return spans
        required = [m.span() for m in self._required.finditer(text) if m.end() > m.start()]
        return spans + required if required else []


@dataclass(frozen=True)
class Taxonomy:
    version: str
    divisions: tuple[Label, ...]
    risk_levels: tuple[Label, ...]
    key_groups: tuple[Label, ...]
    rules: tuple[Rule, ...]

    def labels(self, head: str) -> tuple[Label, ...]:
        return {"division": self.divisions, "risk": self.risk_levels, "key_group": self.key_groups}[head]

    def codes(self, head: str) -> list[str]:
        return [label.code for label in self.labels(head)]

    def name_of(self, head: str, code: str) -> str:
        for label in self.labels(head):
            if label.code == code:
                return label.name
        raise KeyError(f"{head} code {code!r} is not defined in the taxonomy")

    def display_name(self, head: str, code: str) -> str:
        """The Chinese name, or the code itself when this taxonomy no longer defines it
        (a label of an older model or ledger)."""
        try:
            return self.name_of(head, code)
        except KeyError:
            return code

    def resolve(self, head: str, value: str) -> str | None:
        """Map a code or a Chinese display name to the code; None when unknown."""
        value = written_form(value)
        for label in self.labels(head):
            if value in (written_form(label.code), written_form(label.name)):
                return label.code
        return None

    def accepted(self, head: str) -> str:
        """The labels of `head` as an error lists them: each code with its Chinese name."""
        return ", ".join(f"{label.code} ({label.name})" for label in self.labels(head))

    def resolve_written(self, head: str, value: str) -> str | None:
        """The code of a label as ledgers and people write it: a code (in any case), a Chinese name, or a
        common way of writing a risk level (高, 紧急, High) or "no key group" (无, -); None
        when unknown. The one rule for ledgers and for decisions sent to the API, which took
        only codes and names, so a decision with risk "高" was refused that a ledger took."""
        value = written_form(value)
        code = self.resolve(head, value)
        if code is None and head == "risk":
            code = RISK_ALIASES.get(value)
        if code is None and head == "key_group" and value.lower() in NONE_ALIASES:
            code = "none"
        if code is None:
            # A code in another case (Pension, HIGH, Laid_Off_Workers: a ledger typed by hand or
            # exported by a system that capitalises) was unknown; only risk took one. Taken when
            # it names one code alone, in case a province's taxonomy has two differing by case.
            same = [label.code for label in self.labels(head) if written_form(label.code).casefold() == value.casefold()]
            code = same[0] if len(same) == 1 else None
        return code

    def to_dict(self) -> dict:
        def labels(items: tuple[Label, ...]) -> list[dict]:
            return [{"code": x.code, "name": x.name, "description": x.description} for x in items]

        return {
            "version": self.version,
            "divisions": labels(self.divisions),
            "risk_levels": labels(self.risk_levels),
            "key_groups": labels(self.key_groups),
        }


def _labels(raw: dict, section: str, source: str) -> tuple[Label, ...]:
    entries = raw.get(section)
    if not isinstance(entries, list) or not entries:
        raise TaxonomyError(f"{source}: section [[{section}]] is missing or empty")
    labels = []
    for i, entry in enumerate(entries, start=1):
        for key in ("code", "name"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise TaxonomyError(f"{source}: [[{section}]] entry {i} needs a non-empty '{key}'")
        keywords = entry.get("keywords", [])
        if not isinstance(keywords, list) or not all(isinstance(k, str) and k for k in keywords):
            raise TaxonomyError(f"{source}: [[{section}]] {entry['code']}: 'keywords' must be a list of strings")
        labels.append(Label(entry["code"], entry["name"], entry.get("description", ""), tuple(keywords)))
    codes = [label.code for label in labels]
    duplicated = sorted({c for c in codes if codes.count(c) > 1})
    if duplicated:
        raise TaxonomyError(f"{source}: [[{section}]] defines {duplicated} more than once")
    return tuple(labels)


def load_taxonomy(path: str | Path = DEFAULT_TAXONOMY) -> Taxonomy:
    path = Path(path)
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaxonomyError(f"taxonomy config not found: {source}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TaxonomyError(f"{source}: not valid TOML: {exc}") from None
    divisions = _labels(raw, "divisions", source)
    risk_levels = _labels(raw, "risk_levels", source)
    key_groups = _labels(raw, "key_groups", source)
    if [r.code for r in risk_levels] != list(RISK_ORDER):
        raise TaxonomyError(f"{source}: [[risk_levels]] must be exactly {list(RISK_ORDER)} in that order")
    if "none" not in [k.code for k in key_groups]:
        raise TaxonomyError(f"{source}: [[key_groups]] must define 'none'")
    rules = []
    for i, entry in enumerate(raw.get("rules", []), start=1):
        where = f"{source}: [[rules]] entry {i} ({entry.get('id', '?')})"
        head = entry.get("head")
        if head not in ("risk", "key_group"):
            raise TaxonomyError(f"{where}: 'head' must be 'risk' or 'key_group', got {head!r}")
        valid = [x.code for x in (risk_levels if head == "risk" else key_groups)]
        if entry.get("label") not in valid:
            raise TaxonomyError(f"{where}: 'label' {entry.get('label')!r} is not one of {valid}")
        if not entry.get("patterns"):
            raise TaxonomyError(f"{where}: 'patterns' must be a non-empty list")
        try:
            rule = Rule(
                id=entry["id"], head=head, label=entry["label"], explain=entry.get("explain", ""),
                patterns=tuple(entry["patterns"]), requires=tuple(entry.get("requires", [])),
                example=entry.get("example", ""), counter_example=entry.get("counter_example", ""),
            )
        except re.error as exc:
            raise TaxonomyError(f"{where}: bad regular expression: {exc}") from None
        except KeyError as exc:
            raise TaxonomyError(f"{where}: missing field {exc}") from None
        rules.append(rule)
    return Taxonomy(str(raw.get("meta", {}).get("version", "")), divisions, risk_levels, key_groups, tuple(rules))
