"""Generator of the bundled training corpus.

Hand-written fragments (data/corpus/fragments/*.json: scenarios per division
and key group, risk sentences, registers, slot values) are combined into
petitions in four registers with realistic noise. The risk label is set by
which risk sentences were inserted, the division and key group by the
scenario, so every label follows the taxonomy by construction. Same seed,
same corpus."""

from __future__ import annotations

import csv
import json
import math
import random
import re
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from data import bundled

FRAGMENTS = bundled("corpus", "fragments")
DEFAULT_CORPUS = bundled("corpus", "petitions.csv")
COLUMNS = ["id", "title", "body", "division", "risk", "key_group", "received_at", "register", "synthetic", "matter"]

# Share of petitions per division in the default corpus; the real intake is
# dominated by `external` and `labor_inspection`, but every class needs enough
# examples to be learned.
DIVISION_WEIGHTS = {
    "external": 0.30, "labor_inspection": 0.12, "pension": 0.09, "employment": 0.045,
    "labor_relations": 0.045, "work_injury": 0.04, "public_institutions": 0.04,
    "professional_titles": 0.04, "talent_mobility": 0.035, "wages_welfare": 0.035,
    "service_conduct": 0.035, "resident_pension": 0.03, "vocational_skills": 0.03,
    "exams": 0.03, "arbitration": 0.03, "fund_supervision": 0.025,
}
KEY_GROUP_SHARE = 0.08
RISK_SHARES = {"high": 0.12, "medium": 0.33, "low": 0.55}
REGISTER_SHARES = {"letter": 0.35, "board": 0.35, "hotline": 0.15, "rambling": 0.15}
WAGE_DIVISIONS = {"labor_inspection"}
_SLOT = re.compile(r"\{(\w+)\}")
_PUNCT = re.compile(r"[，。；、]")


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict):
            _merge(into.setdefault(key, {}), value)
        else:
            into.setdefault(key, []).extend(value)


def _merged_risk(folder: Path) -> dict[str, Any]:
    """risk.json plus any risk_*.json: more writers add sentences without editing one file."""
    merged: dict[str, Any] = {}
    for path in [folder / "risk.json", *sorted(folder.glob("risk_*.json"))]:
        _merge(merged, json.loads(path.read_text(encoding="utf-8")))
    return merged


def load_fragments(folder: Path = FRAGMENTS) -> dict[str, Any]:
    scenarios: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for scenario in data.get("scenarios", []):
            scenario["_file"] = path.name
            scenarios.append(scenario)
    return {
        "scenarios": scenarios,
        "risk": _merged_risk(folder),
        "registers": json.loads((folder / "registers.json").read_text(encoding="utf-8")),
        "slots": json.loads((folder / "slots.json").read_text(encoding="utf-8")),
    }


def _pick(rng: random.Random, shares: dict[str, float]) -> str:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


class _Writer:
    def __init__(self, fragments: dict[str, Any], rng: random.Random) -> None:
        self.f = fragments
        self.rng = rng

    def fill(self, text: str) -> str:
        slots, rng = self.f["slots"], self.rng

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "year":
                return str(rng.randint(1985, 2025))
            if name == "month":
                return str(rng.randint(1, 12))
            if name == "amount":
                return str(rng.choice([rng.randint(8, 300) * 100, rng.randint(1, 90) * 1000, rng.randint(1000, 60000)]))
            if name == "count":
                return str(rng.choice([rng.randint(3, 30), rng.randint(30, 300)]))
            if name == "years":
                return str(rng.randint(2, 30))
            if name == "age":
                return str(rng.randint(28, 66))
            if name == "leader":
                return self.fill(rng.choice(self.f["registers"]["leaders"]))
            pool = slots.get(name) or slots.get(f"{name}s")
            return rng.choice(pool) if pool else match.group(0)

        return _SLOT.sub(value, text)

    def risk_sentences(self, risk: str, division: str) -> list[str]:
        rng, pool = self.rng, self.f["risk"]
        if risk == "high":
            kinds = [k for k in pool["high"] if k != "wage_deadline" or division in WAGE_DIVISIONS]
            if division in WAGE_DIVISIONS and rng.random() < 0.4:
                kinds = ["wage_deadline"]
            out = [rng.choice(pool["high"][rng.choice(kinds)])]
            if rng.random() < 0.4:
                out.insert(0, rng.choice(pool["medium"][rng.choice(list(pool["medium"]))]))
            return out
        if risk == "medium":
            kinds = [k for k in pool["medium"] if k != "wage_time_pressure" or division in WAGE_DIVISIONS]
            return [rng.choice(pool["medium"][k]) for k in rng.sample(kinds, rng.choice([1, 1, 2]))]
        roll = rng.random()
        if roll < 0.25:
            return [rng.choice(pool["low_emotion"])]
        if roll < 0.40:
            return [rng.choice(pool["hard_negatives"])]
        return []

    def noise(self, text: str) -> str:
        rng = self.rng
        if rng.random() < 0.3:
            typos = self.f["registers"]["typos"]
            present = [w for w in typos if w in text and len(w) > 1]
            for word in rng.sample(present, min(len(present), rng.randint(1, 2))):
                text = text.replace(word, rng.choice(typos[word]), 1)
        if rng.random() < 0.12:
            text = _PUNCT.sub(lambda m: rng.choice(["", " ", m.group(0)]), text)
        if rng.random() < 0.08:
            text = text.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789"})
        return text

    def petition(self, scenario: dict[str, Any], risk: str, register: str) -> tuple[str, str]:
        rng, reg = self.rng, self.f["registers"]
        division = scenario["division"]
        title = self.fill(rng.choice(scenario["titles"]))
        core = self.fill(rng.choice(scenario["bodies"]))
        ask = self.fill(rng.choice(scenario["asks"]))
        parts: list[str] = []
        if register != "hotline" and rng.random() < 0.55:
            parts.append(self.fill(rng.choice(reg["self_intros"])))
        parts.append(core)
        if register == "rambling":
            for _ in range(rng.randint(2, 4)):
                parts.insert(rng.randint(1, len(parts)), self.fill(rng.choice(reg["rambling"]["fillers"])))
        for sentence in self.risk_sentences(risk, division):
            parts.insert(rng.randint(max(1, len(parts) - 1), len(parts)), self.fill(sentence))
        parts.append(ask)
        body = "".join(p if p.endswith(("。", "！", "？", "!", "?", "\n")) else p + "。" for p in parts)
        frame = reg["board" if register == "rambling" else register]
        opening = self.fill(rng.choice(frame["openings"]))
        closing = self.fill(rng.choice(frame["closings"]))
        if register == "hotline":
            body = body.replace("我们", "他们").replace("本人", "来电人").replace("我", "其")
        body = opening + body + closing
        if register == "board" and rng.random() < 0.3:
            body = body.replace("。", rng.choice(["！", "！！", "。。。"]), rng.randint(1, 3))
        return self.noise(title), self.noise(body)


def generate(n: int = 5000, seed: int = 20261128, fragments: dict[str, Any] | None = None) -> list[dict[str, str]]:
    fragments = fragments or load_fragments()
    rng = random.Random(seed)
    writer = _Writer(fragments, rng)
    by_division: dict[str, list[dict[str, Any]]] = {}
    key_group_scenarios = []
    for scenario in fragments["scenarios"]:
        if scenario.get("key_group", "none") != "none":
            key_group_scenarios.append(scenario)
        else:
            by_division.setdefault(scenario["division"], []).append(scenario)
    plan: list[dict[str, Any]] = []
    n_key = math.ceil(n * KEY_GROUP_SHARE) if key_group_scenarios else 0
    plan += [key_group_scenarios[i % len(key_group_scenarios)] for i in range(n_key)]
    weights = {d: w for d, w in DIVISION_WEIGHTS.items() if d in by_division}
    total = sum(weights.values())
    counts = {division: round((n - n_key) * weight / total) for division, weight in weights.items()}
    # Rounded shares can add up to fewer petitions than asked (49 for 50): the divisions
    # whose share lost most to rounding get one more each. When they add up already, as
    # for the default n, nothing changes: the bundled corpus and every figure measured on
    # the default model depend on this plan staying as it is.
    short = n - n_key - sum(counts.values())
    by_loss = sorted(weights, key=lambda d: counts[d] - (n - n_key) * weights[d] / total)
    for i in range(max(short, 0)):
        counts[by_loss[i % len(by_loss)]] += 1
    for division, count in counts.items():
        pool = by_division[division]
        plan += [pool[i % len(pool)] for i in range(count)]
    rng.shuffle(plan)
    plan = plan[:n]
    start = date(2024, 1, 1)
    rows = []
    for i, scenario in enumerate(plan, start=1):
        risk = _pick(rng, RISK_SHARES)
        if scenario.get("key_group", "none") != "none" and risk == "low":
            risk = "medium"  # the taxonomy makes every key-group case at least medium
        register = _pick(rng, REGISTER_SHARES)
        title, body = writer.petition(scenario, risk, register)
        rows.append({
            "id": f"GEN-{seed % 10000:04d}-{i:06d}", "title": title, "body": body,
            "division": scenario["division"], "risk": risk,
            "key_group": scenario.get("key_group", "none"),
            "received_at": (start + timedelta(days=rng.randrange(0, 1000))).isoformat(),
            "register": register, "synthetic": "true", "matter": scenario["id"],
        })
    return rows


def write_corpus(rows: list[dict[str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def summary(rows: list[dict[str, str]]) -> dict[str, Counter[str]]:
    return {head: Counter(r[head] for r in rows) for head in ("division", "risk", "key_group", "register")}
