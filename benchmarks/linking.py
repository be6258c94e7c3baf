"""Same-matter linking on real text: precision and recall, cost at 100,000 stored petitions,
and a replay of the dated messages looking for emerging groups.

    .venv/bin/python benchmarks/linking.py [--sample 2000] [--stored 100000]

Reads ../shared/data/real/unlabeled.csv; writes only figures (benchmarks/results/linking.json),
never the text. The labelled pairs are built here, in memory:

* re-posts (same matter): a real message and a copy re-sent with another name, phone,
  dates and amounts, a sentence left out or a line added, the title changed;
  plus the real messages whose text, numbers masked, occurs twice on the boards;
* template swaps (different matter): a real message naming an organisation or project,
  and the same message naming another one taken from another message;
* hard negatives (different matter, same topic): each sampled message and the most similar
  message of another board (another city cannot hold the same matter), kept only when both
  share a topic word (工资, 社保, 养老 ...).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.matter import (  # noqa: E402
    BANDS,
    LINK_THRESHOLD,
    MatterIndex,
    _band_keys,
    anchors_conflict,
    anchors_of,
    normalize_for_linking,
    shared_words,
    shingles,
    signature,
)

REAL = ROOT.parent / "shared" / "data" / "real" / "unlabeled.csv"
RESULTS = ROOT / "benchmarks" / "results" / "linking.json"
TOPICS = ["工资", "社保", "养老", "医保", "工伤", "劳动合同", "补偿", "拆迁", "征地", "物业", "学校", "公积金", "户口", "噪音", "违建"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华"
THRESHOLDS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def board(source: str) -> str:
    return "tipdm" if source.startswith("tipdm") else source


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def repost(title: str, body: str, rng: random.Random) -> tuple[str, str]:
    """The letter sent again: other identity details and numbers, a sentence more or less."""
    # Numbers change (dates, amounts); place codes such as "A3区" do not.
    body = re.sub(r"(?<![A-Za-z0-9])\d+", lambda m: "".join(rng.choice("0123456789") for _ in m.group()), body)
    sentences = [s for s in re.split(r"(?<=[。！？!?])", body) if s]
    if len(sentences) >= 4 and rng.random() < 0.3:
        del sentences[rng.randrange(1, len(sentences))]
    body = "".join(sentences)
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    if rng.random() < 0.5:
        body = f"我叫{name}，电话1{rng.randrange(3, 10)}{rng.randrange(10**8, 10**9)}。{body}"
    if rng.random() < 0.3:
        body += "恳请领导尽快处理，谢谢。"
    title = rng.choice([title, title, f"再次反映：{title}", ""])
    return title, body


def swap_anchor(text: str, donor_names: list[str], rng: random.Random) -> str | None:
    """The same letter about another organisation or project: every mention of its first
    such name replaced by a name taken from another letter."""
    found = anchors_of(text)
    names = sorted(found.get("organisation", set()) | found.get("project", set()), key=len, reverse=True)
    names = [n for n in names if len(n) >= 2 and n in text]
    if not names:
        return None
    donor = rng.choice([d for d in donor_names if d not in names[0] and names[0] not in d])
    return text.replace(names[0], donor)


def exact_jaccard(a: str, b: str) -> float:
    x, y = set(shingles(normalize_for_linking(a)).tolist()), set(shingles(normalize_for_linking(b)).tolist())
    return len(x & y) / max(1, len(x | y))


def decide(a: str, b: str) -> tuple[bool, float, bool]:
    """(LSH makes them candidates, estimated similarity, anchors conflict) for a pair."""
    na, nb = normalize_for_linking(a), normalize_for_linking(b)
    sa, sb = signature(na), signature(nb)
    candidate = bool((_band_keys(sa[None]) == _band_keys(sb[None])).any())
    return candidate, float((sa == sb).mean()), anchors_conflict(anchors_of(a), anchors_of(b))


def rates(pairs: list[tuple[bool, float, bool]], labels: list[bool]) -> list[dict]:
    rows = []
    for t in THRESHOLDS:
        linked = [c and s >= t and not x for c, s, x in pairs]
        tp = sum(p and y for p, y in zip(linked, labels, strict=True))
        fp = sum(p and not y for p, y in zip(linked, labels, strict=True))
        fn = sum(y and not p for p, y in zip(linked, labels, strict=True))
        rows.append({"threshold": t, "precision": round(tp / max(1, tp + fp), 4), "recall": round(tp / max(1, tp + fn), 4),
                     "true_links": tp, "false_links": fp, "missed": fn})
    return rows


def nearest_other_board(texts: list[str], boards: list[str], sample: list[int]) -> list[tuple[int, int, float]]:
    """For each sampled message, the most similar message of another board sharing a topic word."""
    rows, cols = [], []
    for i, text in enumerate(texts):
        hashed = shingles(normalize_for_linking(text)) % np.uint64(2**22)
        rows.append(np.full(len(hashed), i))
        cols.append(hashed.astype(np.int64))
    matrix = sp.csr_matrix((np.ones(sum(map(len, rows)), np.float32), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(len(texts), 2**22))
    matrix.data[:] = 1.0
    sizes = np.asarray(matrix.sum(axis=1)).ravel()
    boards_arr = np.array(boards)
    topics = [{t for t in TOPICS if t in text} for text in texts]
    out = []
    for start in range(0, len(sample), 200):
        chunk = sample[start:start + 200]
        inter = (matrix[chunk] @ matrix.T).toarray()
        jaccard = inter / (sizes[chunk][:, None] + sizes[None, :] - inter + 1e-9)
        for row, i in enumerate(chunk):
            jaccard[row, boards_arr == boards[i]] = 0.0
            for j in np.argsort(-jaccard[row])[:20]:
                if topics[i] & topics[j]:
                    out.append((i, int(j), float(jaccard[row, j])))
                    break
    return out


def replay(frame: pd.DataFrame, days: float, min_size: int) -> dict:
    """The dated messages in order of date, as the service sees them: each is looked up, then
    stored; a message that makes a group of min_size linked messages within `days` is flagged."""
    dated = frame.dropna(subset=["when"]).sort_values("when")
    index = MatterIndex()
    flagged_groups: dict[str, list[int]] = {}
    group_of: dict[str, str] = {}
    delays = []
    window = days * 86400
    for row in dated.itertuples():
        when = row.when.timestamp()
        matches = index.query(row.text, limit=50, since=when - window, until=when)
        seen, frontier = {m.key for m in matches}, [m.key for m in matches]
        while frontier and len(seen) < 200:
            for m in index.query_key(frontier.pop(), limit=50, since=when - window, until=when):
                if m.key not in seen:
                    seen.add(m.key)
                    frontier.append(m.key)
        index.add(row.id, row.text, when)
        if len(seen) + 1 >= min_size:
            known = {group_of[k] for k in seen if k in group_of}
            group = min(known) if known else row.id
            if not known:
                # Flagged when its K-th member arrives: the delay is the time taken by the lookup itself.
                delays.append(0.0)
            for k in [*seen, row.id]:
                group_of.setdefault(k, group)
            flagged_groups.setdefault(group, []).extend(k for k in [*seen, row.id] if group_of[k] == group)
    texts = dict(zip(dated["id"], dated["text"], strict=True))
    whens = dict(zip(dated["id"], dated["when"], strict=True))
    boards_of = dict(zip(dated["id"], dated["board"], strict=True))
    groups = []
    for members in flagged_groups.values():
        members = sorted(set(members), key=lambda k: whens[k])
        span = (whens[members[-1]] - whens[members[0]]).total_seconds() / 86400
        first = signature(normalize_for_linking(texts[members[0]]))
        closest = min(float((signature(normalize_for_linking(texts[k])) == first).mean()) for k in members[1:])
        groups.append({"size": len(members), "span_days": round(span, 1), "least_similarity_to_first": round(closest, 3),
                       "boards": sorted({boards_of[k] for k in members}),
                       "shared_word_count": len(shared_words([texts[k] for k in members]))})
    groups.sort(key=lambda g: -g["size"])
    return {
        "dated_messages": len(dated), "groups": len(groups),
        # Copies of one letter (every member at least 0.9 similar to the first) or one matter in other words.
        "groups_of_copies": sum(g["least_similarity_to_first"] >= 0.9 for g in groups),
        "sizes": dict(sorted(Counter(g["size"] for g in groups).items())),
        "flagged_at_kth_member": len(delays), "max_delay_after_kth_member_s": max(delays, default=0.0),
        "largest": groups[:10],
    }


def service_cost(stored: list[str], queries: list[str], workdir: Path) -> dict:
    """What the service adds to a triage with these petitions stored: a SQLite database of
    them, the index rebuilt from it as at start-up, then service.similar.link per query
    (refresh from the database, index lookup, the similar cases' rows and group size)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert

    from service.database import Database, TriageRecord
    from service.similar import SharedMatterIndex, link

    database = Database(f"sqlite:///{workdir / 'linking.db'}")
    database.migrate()
    now = datetime.now(UTC)
    with database.sessions() as session:
        for start in range(0, len(stored), 5000):
            session.execute(insert(TriageRecord), [
                {"id": f"t{i}", "external_id": None, "channel": None, "received_at": None,
                 "created_at": now - timedelta(days=360 * (len(stored) - i) / len(stored)),
                 "title_masked": text.partition("\n")[0], "body_masked": text.partition("\n")[2], "model_version": "benchmark",
                 "division": "external", "division_confidence": 0.5, "risk": "low", "key_group": "none",
                 "needs_review": False, "suggestion": {}} for i, text in enumerate(stored[start:start + 5000], start)])
        session.commit()
    before = rss_mb()
    shared = SharedMatterIndex(window_days=365, threshold=LINK_THRESHOLD)
    started = time.perf_counter()
    with database.sessions() as session:
        shared.refresh(session)
    build = time.perf_counter() - started
    grown = rss_mb() - before
    latencies = []
    for text in queries:
        with database.sessions() as session:
            started = time.perf_counter()
            link(session, shared, text, datetime.now(UTC), min_size=3, days=14)
            latencies.append(time.perf_counter() - started)
    database.engine.dispose()
    return {"stored_in_sqlite": len(stored), "rebuild_from_database_s": round(build, 1),
            "rss_growth_mb": round(grown, 1), "indexed": len(shared.index),
            "added_ms_p50": round(float(np.percentile(latencies, 50)) * 1e3, 3),
            "added_ms_p99": round(float(np.percentile(latencies, 99)) * 1e3, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    frame = pd.read_csv(REAL, dtype=str).fillna("")
    frame["text"] = frame["title"].str.strip() + "\n" + frame["body"]
    frame["board"] = frame["source"].map(board)
    frame["when"] = pd.to_datetime(frame["date"].replace("", None), errors="coerce", format="mixed")
    texts, boards = frame["text"].tolist(), frame["board"].tolist()
    eligible = [i for i, t in enumerate(frame["body"]) if len(t) >= 40]
    sample = rng.sample(eligible, min(args.sample, len(eligible)))
    results: dict = {"data": {"messages": len(frame), "sampled": len(sample)}, "link_threshold": LINK_THRESHOLD}

    # Positives: synthetic re-posts and the real texts posted twice.
    reposts = []
    for i in sample:
        title, body = repost(frame["title"][i], frame["body"][i], rng)
        reposts.append((texts[i], f"{title}\n{body}"))
    by_text: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        by_text.setdefault(re.sub(r"\W+", "", re.sub(r"\d+", "0", text)), []).append(i)
    natural = [(texts[ids[0]], texts[ids[1]]) for ids in by_text.values() if len(ids) > 1 and len(texts[ids[0]]) >= 40]
    results["data"] |= {"synthetic_reposts": len(reposts), "natural_reposts": len(natural)}

    # Negatives: template swaps and the nearest message of another board on the same topic.
    donors = sorted({n for i in eligible[:5000] for k, names in anchors_of(texts[i]).items()
                     if k in ("organisation", "project") for n in names if len(n) >= 3})
    swaps = [(texts[i], s) for i in sample if (s := swap_anchor(texts[i], donors, rng)) is not None]
    started = time.perf_counter()
    hard = nearest_other_board(texts, boards, sample)
    hard_pairs = [(texts[i], texts[j]) for i, j, _ in hard]
    results["data"] |= {"template_swaps": len(swaps), "hard_negatives_other_board": len(hard_pairs),
                        "hard_negative_exact_jaccard_p50_p90_max": [round(float(np.percentile([h[2] for h in hard], q)), 3)
                                                                    for q in (50, 90, 100)],
                        "hard_negative_search_s": round(time.perf_counter() - started, 1)}

    decided = {name: [decide(a, b) for a, b in pairs]
               for name, pairs in {"reposts": reposts, "natural": natural, "swaps": swaps, "hard": hard_pairs}.items()}
    results["reposts_vs_all_negatives"] = rates(decided["reposts"] + decided["natural"] + decided["swaps"] + decided["hard"],
                                                [True] * (len(reposts) + len(natural)) + [False] * (len(swaps) + len(hard_pairs)))
    results["per_set_linked_at_threshold"] = {
        name: round(sum(c and s >= LINK_THRESHOLD and not x for c, s, x in pairs) / max(1, len(pairs)), 4)
        for name, pairs in decided.items()}
    results["exact_vs_estimated_jaccard_mae"] = round(float(np.mean(
        [abs(exact_jaccard(a, b) - decide(a, b)[1]) for a, b in reposts[:300] + hard_pairs[:300]])), 4)

    # Cost: 100k stored petitions (the real messages, re-posted with perturbations to make up the number).
    stored = [texts[i % len(texts)] if i < len(texts) else "\n".join(repost(frame["title"][i % len(texts)],
                                                                               frame["body"][i % len(texts)], rng))
              for i in range(args.stored)]
    before = rss_mb()
    index = MatterIndex()
    started = time.perf_counter()
    index.add_many((str(i), text, float(i)) for i, text in enumerate(stored))
    build = time.perf_counter() - started
    after = rss_mb()
    queries = ["\n".join(repost(frame["title"][i], frame["body"][i], rng)) for i in rng.sample(range(len(texts)), args.queries)]
    latencies = []
    for query in queries:
        started = time.perf_counter()
        index.query(query, limit=5, since=0.0, until=float(args.stored))
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    added = MatterIndex()
    for i, text in enumerate(stored[:2000]):
        added.add(str(i), text, 0.0)
    results["cost"] = {
        "stored": args.stored, "build_s": round(build, 1), "build_ms_per_petition": round(build / args.stored * 1e3, 3),
        "add_one_ms": round((time.perf_counter() - started) / 2000 * 1e3, 3),
        "query_ms_p50": round(float(np.percentile(latencies, 50)) * 1e3, 3),
        "query_ms_p99": round(float(np.percentile(latencies, 99)) * 1e3, 3),
        "index_arrays_mb": round(index.nbytes() / 2**20, 1), "process_rss_growth_mb": round(after - before, 1),
        "bands": BANDS,
    }
    del index, added
    with tempfile.TemporaryDirectory() as workdir:
        results["service_cost"] = service_cost(stored, queries[:500], Path(workdir))

    results["emerging_replay"] = replay(frame, days=14, min_size=3)
    results["machine"] = {"cpus": os.cpu_count(), "load_avg": os.getloadavg()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    partial = RESULTS.with_name(RESULTS.name + ".tmp")
    partial.write_text(json.dumps(results, ensure_ascii=False, indent=2, default=float), encoding="utf-8")
    partial.replace(RESULTS)
    print(json.dumps({k: results[k] for k in ("data", "reposts_vs_all_negatives", "per_set_linked_at_threshold", "cost",
                                              "service_cost")},
                     ensure_ascii=False, indent=1))
    er = results["emerging_replay"]
    print(f"emerging replay: {er['groups']} groups of >=3 within 14 days among {er['dated_messages']} dated messages; "
          f"{er['groups_of_copies']} of copies of one letter; sizes {er['sizes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
