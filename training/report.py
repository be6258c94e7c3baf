"""The training report: one self-contained HTML file per retraining run, for the
data staff who decide whether the challenger goes into service. Figures are
inline SVG; there are no scripts, fonts or images to fetch, so it opens offline
and can be mailed as one file."""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Any

from model.taxonomy import HEADS, Taxonomy
from training.registry import DEFAULT_KEY_METRICS, DEFAULT_TOLERANCE, MetricCheck, ceiling_detail, promote_command

if TYPE_CHECKING:
    from training.retrain import RetrainRun

FONT = "'PingFang SC','Hiragino Sans GB','Microsoft YaHei','Noto Sans CJK SC','WenQuanYi Micro Hei',sans-serif"
CHAMPION, CHALLENGER = "#9a9a9a", "#1f6fb4"
PRF_COLORS = (("precision", "#4e79a7"), ("recall", "#f28e2b"), ("f1", "#59a14f"))
# More extra high-risk flags than this (share of petitions) gets a warning next to the verdict.
FLAG_SHARE_WARNING = 0.05
HEAD_TITLES = {"division": "处室 division", "risk": "风险 risk", "key_group": "重点群体 key group"}
# (head, key, label, better-when-higher)
TABLE_ROWS = {
    "division": [("accuracy", "accuracy", True), ("macro_f1", "macro-F1", True),
                 ("top3_accuracy", "top-3 accuracy", True), ("ece", "calibration error (ECE)", False)],
    "risk": [("accuracy", "accuracy", True), ("macro_f1", "macro-F1", True),
             ("high_recall", "high-risk recall", True), ("high_precision", "high-risk precision", True),
             ("high_share", "share flagged high", None)],
    "key_group": [("accuracy", "accuracy", True), ("macro_f1", "macro-F1", True),
                  ("any_f1", "key-group F1 (any group vs none)", True)],
}

CSS = f"""
body {{ font-family: {FONT}; margin: 24px auto; max-width: 1100px; color: #222; line-height: 1.45; padding: 0 16px; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 18px; border-bottom: 2px solid #1f6fb4; padding-bottom: 4px; margin-top: 36px; }}
h3 {{ font-size: 15px; margin-top: 22px; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f0f3f7; }} td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.worse {{ background: #fde2e1; }} .better {{ background: #e3f4e1; }}
.box {{ border: 1px solid #ccc; border-left: 6px solid #1f6fb4; padding: 8px 14px; background: #f8fafc; margin: 12px 0; }}
.warn {{ border-left-color: #d9534f; }} .ok {{ border-left-color: #5cb85c; }}
figure {{ margin: 12px 0 20px; }} figcaption {{ font-size: 12px; color: #555; }}
.small {{ font-size: 12px; color: #555; }} code {{ background: #f3f3f3; padding: 0 3px; }}
"""


# ------------------------------------------------------------------ helpers
def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"



def _table(headers: list[str], rows: list[list[str]], raw: bool = False, classes: list[str] | None = None,
           id_: str | None = None) -> str:
    """Cells are escaped unless `raw`; a cell that looks numeric is right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = []
        for cell in row:
            text = str(cell) if raw else _e(cell)
            numeric = str(cell).replace(".", "", 1).replace("%", "").replace(" ", "").lstrip("+-−").isdigit()
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    ident = f' id="{id_}"' if id_ else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _svg(width: float, height: float, body: str, label: str, id_: str) -> str:
    return (f'<svg id="{id_}" role="img" aria-label="{_e(label)}" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{_e(FONT)}" font-size="12">{body}</svg>')


def _text_width(text: str, size: float = 12) -> float:
    # Rough: CJK glyphs are square, Latin ones a bit over half as wide.
    return sum(size if ord(ch) > 0x2E80 else size * 0.6 for ch in text)


def _legend(items: list[tuple[str, str]], x: float, y: float) -> tuple[str, float]:
    parts = []
    for name, color in items:
        parts.append(f'<rect x="{x:.0f}" y="{y}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{x + 16:.0f}" y="{y + 10}">{_e(name)}</text>')
        x += 16 + _text_width(name) + 18
    return "".join(parts), x


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 4, 6, 8 × 10^k at or above `value`: its quarters are round ticks."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 4, 6, 8, 10) if m * power >= value - 1e-12)


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def hbar_chart(rows: list[tuple[str, list[float | None]]], series: list[tuple[str, str]], id_: str, label: str,
               max_value: float = 1.0, percent: bool = False, label_width: int = 250, plot_width: int = 380) -> str:
    """Horizontal grouped bars: one group per row, one bar per series."""
    bar, gap, top = 9, 8, 34
    group = bar * len(series) + gap
    height = top + group * len(rows) + 24
    width = label_width + plot_width + 70
    legend, legend_end = _legend(series, label_width, 6)
    width = max(width, legend_end + 10)
    parts = [legend]
    x = label_width
    for k in range(5):  # grid
        gx = x + plot_width * k / 4
        tick = max_value * k / 4
        parts.append(f'<line x1="{gx:.1f}" y1="{top - 4}" x2="{gx:.1f}" y2="{height - 20}" stroke="#e3e3e3"/>'
                     f'<text x="{gx:.1f}" y="{height - 6}" text-anchor="middle" fill="#666">'
                     f'{_pct(tick) if percent else f"{tick:.2f}"}</text>')
    for r, (name, values) in enumerate(rows):
        y0 = top + r * group
        parts.append(f'<text x="{label_width - 6}" y="{y0 + group / 2}" text-anchor="end" '
                     f'dominant-baseline="middle">{_e(name)}</text>')
        for s, ((sname, color), value) in enumerate(zip(series, values, strict=True)):
            y = y0 + s * bar
            if value is None:
                parts.append(f'<text x="{x + 3}" y="{y + bar - 1}" font-size="9" fill="#999">n/a</text>')
                continue
            w = plot_width * min(max(value, 0.0), max_value) / max_value if max_value else 0
            shown = _pct(value) if percent else f"{value:.2f}"
            parts.append(f'<rect x="{x}" y="{y}" width="{w:.1f}" height="{bar - 1}" fill="{color}">'
                         f"<title>{_e(name)} · {_e(sname)}: {shown}</title></rect>"
                         f'<text x="{x + w + 3:.1f}" y="{y + bar - 1}" font-size="9" fill="#444">{shown}</text>')
    return _svg(width, height, "".join(parts), label, id_)


def heatmap(codes: list[str], names: list[str], matrix: list[list[int]], id_: str, label: str) -> str:
    """Confusion matrix; a cell's shade is its share of the true class (row)."""
    n = len(codes)
    cell, left, top = 30, 250, 150
    width, height = left + cell * n + 20, top + cell * n + 20
    parts = []
    for j, name in enumerate(names):
        cx = left + j * cell + cell / 2
        short = name if len(name) <= 10 else name[:9] + "…"
        parts.append(f'<text transform="translate({cx:.1f},{top - 6}) rotate(-60)" font-size="11">'
                     f"<title>{_e(name)}</title>{_e(short)}</text>")
    for i, name in enumerate(names):
        row = matrix[i]
        total = sum(row) or 1
        y = top + i * cell
        parts.append(f'<text x="{left - 6}" y="{y + cell / 2}" text-anchor="end" dominant-baseline="middle">'
                     f"{_e(name)}</text>")
        for j, count in enumerate(row):
            share = count / total
            if i == j:
                fill = f"rgb({int(255 - 180 * share)},{int(255 - 90 * share)},{int(255 - 180 * share)})"
            else:
                fill = f"rgb(255,{int(255 - 200 * share)},{int(255 - 200 * share)})"
            parts.append(f'<rect x="{left + j * cell}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" '
                         f'stroke="#ddd"><title>true {_e(name)} → predicted {_e(names[j])}: {count} '
                         f"({_pct(share)} of the row)</title></rect>")
            if count:
                parts.append(f'<text x="{left + j * cell + cell / 2}" y="{y + cell / 2}" text-anchor="middle" '
                             f'dominant-baseline="middle" font-size="10">{count}</text>')
    return _svg(width, height, "".join(parts), label, id_)


def reliability_chart(curves: list[tuple[str, str, list[dict[str, float]]]], id_: str, label: str) -> str:
    """Accuracy against confidence per bin; on the diagonal, 70 % confidence means 70 % right."""
    size, left, top = 300, 50, 30
    parts = [f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#999"/>',
             f'<line x1="{left}" y1="{top + size}" x2="{left + size}" y2="{top}" stroke="#bbb" stroke-dasharray="4 4"/>']
    for k in range(6):
        v = k / 5
        parts.append(f'<text x="{left + size * v:.1f}" y="{top + size + 16}" text-anchor="middle" fill="#666">{v:.1f}</text>'
                     f'<text x="{left - 6}" y="{top + size * (1 - v) + 4:.1f}" text-anchor="end" fill="#666">{v:.1f}</text>')
    parts.append(f'<text x="{left + size / 2}" y="{top + size + 34}" text-anchor="middle">confidence 置信度</text>'
                 f'<text transform="translate(14,{top + size / 2}) rotate(-90)" text-anchor="middle">accuracy 准确率</text>')
    legend, legend_end = _legend([(name, color) for name, color, _ in curves], left, 8)
    parts.append(legend)
    for name, color, bins in curves:
        points = [(left + size * b["confidence"], top + size * (1 - b["accuracy"]), b) for b in bins]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        total = sum(b["count"] for b in bins) or 1
        for px, py, b in points:
            radius = 2.5 + 7 * math.sqrt(b["count"] / total)
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{radius:.1f}" fill="{color}" fill-opacity="0.7">'
                         f"<title>{_e(name)}: confidence {b['bin_low']:.1f}–{b['bin_high']:.1f}, {b['count']} petitions, "
                         f"mean confidence {b['confidence']:.2f}, accuracy {b['accuracy']:.2f}</title></circle>")
    return _svg(max(left + size + 20, legend_end), top + size + 44, "".join(parts), label, id_)


# ------------------------------------------------------------------ sections
def _verdict(run: RetrainRun) -> str:
    ev = run["evaluation"]
    champion = ev["champion"]
    command = promote_command(run["version"], run["registry"], ev.get("key_metrics", DEFAULT_KEY_METRICS),
                              ev.get("tolerance", DEFAULT_TOLERANCE))
    if champion is None:
        return (f'<div class="box">The registry has no champion yet, and no model in service could be loaded to '
                f"compare with, so only the challenger was evaluated; its first promotion needs no comparison: "
                f"<code>{_e(command)}</code></div>")
    if champion.get("in_service") and champion.get("metrics") is not None:
        # The first run: the model served without a champion was scored in its place.
        note = (f'<div class="box">The registry has no champion yet, so the challenger was compared with the model '
                f"served without one, {_e(champion['version'])} ({_e(champion['in_service'])}), which a first "
                "promotion replaces. Below, “champion” means that model.</div>")
        return note + _verdict(run | {"evaluation": ev | {"champion": {k: v for k, v in champion.items()
                                                                        if k != "in_service"}}})
    if champion.get("metrics") is None:
        return (f'<div class="box warn">The champion {_e(champion["version"])} could not be scored '
                f'({_e(champion.get("error"))}); promotion will need <code>--force --reason</code>.</div>')
    worse = [c for c in ev["checks"] if c["worse"]]
    if worse:
        detail = "; ".join(f"{c['metric']}: {_ceiling_detail(c)}" if c.get("ceiling") is not None
                           else f"{c['metric']} {_f(c['challenger'])} vs {_f(c['champion'])} ({c['delta']:+.3f})"
                           for c in worse)
        return (f'<div class="box warn"><b>Promotion would be refused</b>: the challenger is worse than champion '
                f"{_e(champion['version'])} beyond the tolerance of {ev['tolerance']} on {_e(detail)}. "
                "It can only go into service with <code>--force --reason</code>, and the reason is recorded.</div>")
    checks = "; ".join(f"{c['metric']} {_f(c['challenger'])} vs {_f(c['champion'])}" for c in ev["checks"])
    flagged = _flag_warning(ev)
    return (flagged + f'<div class="box ok">The challenger is not worse than champion {_e(champion["version"])} beyond '
            f"{ev['tolerance']} on the key metrics ({_e(checks)}). Promotion is still a person's decision: "
            f"<code>{_e(command)}</code></div>")


def _ceiling_detail(check: dict[str, Any]) -> str:
    return ceiling_detail(MetricCheck(check["metric"], check["champion"], check["challenger"], check["tolerance"],
                                      ceiling=check["ceiling"]))


def _flag_warning(ev: dict[str, Any]) -> str:
    # High recall is a key metric, so a challenger could pass by flagging everything high;
    # the review queue's load is shown next to it for the person who promotes.
    champion = (ev["champion"] or {}).get("metrics")
    if not champion:
        return ""
    before, after = champion["risk"]["high_share"], ev["challenger"]["metrics"]["risk"]["high_share"]
    if after - before <= FLAG_SHARE_WARNING:
        return ""
    return (f'<div class="box warn">The challenger flags {_pct(after)} of held-out petitions as high risk, the '
            f"champion {_pct(before)}: the review queue would grow by {100 * (after - before):.1f} points. "
            "This is not a key metric; weigh it before promoting.</div>")


def _comparison(run: RetrainRun) -> str:
    ev = run["evaluation"]
    champion = (ev["champion"] or {}).get("metrics")
    challenger = ev["challenger"]["metrics"]
    key = set(ev["key_metrics"])
    out = ['<h2 id="comparison">冠军与挑战者对比 · Champion vs challenger on the same held-out petitions</h2>',
           f"<p>Held out: {_e(ev['holdout']['description'])}. Both models were scored on exactly these "
           f"{ev['holdout']['n']} petitions (ids recorded in the challenger's metadata).</p>"]
    if ev["holdout"].get("texts_also_in_training"):
        out.append(f'<p class="small">{ev["holdout"]["texts_also_in_training"]} held-out petitions have the same '
                   "text as a training petition (repeated letters); their scores flatter both models alike.</p>")
    if ev["holdout"]["method"] == "random":
        out.append('<div class="box warn">The held-out set is a random sample, not the latest period: the numbers '
                   "say how the model does on petitions like the training ones, not on next quarter's.</div>")
    out.append(_verdict(run))
    champion_name = f"champion {ev['champion']['version']}" if ev["champion"] else "champion (none)"
    for head in HEADS:
        rows, classes = [], []
        for name, shown, higher in TABLE_ROWS[head]:
            a = champion[head].get(name) if champion else None
            b = challenger[head].get(name)
            delta = None if a is None or b is None else b - a
            cls = ""
            if delta is not None and higher is not None and abs(delta) > 1e-12:
                cls = "better" if (delta > 0) == higher else "worse"
            marker = " ★" if f"{head}.{name}" in key else ""
            fmt = _pct if name == "high_share" else _f
            rows.append([shown + marker, fmt(a), fmt(b), "–" if delta is None else
                         (f"{100 * delta:+.1f} pt" if name == "high_share" else f"{delta:+.3f}")])
            classes.append(cls)
        if head == "risk":
            true_high = _true_share(run, "high")
            rows.append(["true share of high risk", "", _pct(true_high), ""])
            classes.append("")
        out.append(f"<h3>{_e(HEAD_TITLES[head])}</h3>")
        out.append(_table(["metric", champion_name, "challenger", "Δ"], rows, classes=classes,
                          id_=f"table-{head}"))
    out.append(f'<p class="small">★ key metric for promotion (tolerance {ev["tolerance"]}). Green: challenger better, '
               "red: worse. ECE: mean gap between stated confidence and accuracy, lower is better.</p>")
    return "".join(out)


def _true_share(run: RetrainRun, level: str) -> float | None:
    counts = run["data"]["label_counts"]["heldout"]["risk"]
    total = sum(counts.values())
    return counts.get(level, 0) / total if total else None


def _per_class(run: RetrainRun, taxonomy: Taxonomy) -> str:
    ev = run["evaluation"]
    out = ['<h2 id="per-class">分类别指标 · Per-class precision, recall and F1</h2>']
    models = [("challenger", ev["challenger"]["metrics"])]
    if ev["champion"] and ev["champion"].get("metrics"):
        models.append((f"champion {ev['champion']['version']}", ev["champion"]["metrics"]))
    for head in HEADS:
        for who, metrics in models:
            per_class = metrics[head]["per_class"]
            rows = [(f"{taxonomy.display_name(head, c)} ({m['support']})", [m["precision"], m["recall"], m["f1"]])
                    for c, m in per_class.items()]
            slug = "challenger" if who == "challenger" else "champion"
            svg = hbar_chart(rows, [(n, c) for n, c in PRF_COLORS], f"bars-{head}-{slug}",
                             f"precision, recall and F1 per {head} class, {who}")
            out.append(f"<h3>{_e(HEAD_TITLES[head])} — {_e(who)}</h3>")
            out.append(_figure(svg, f"{who}: precision, recall and F1 per class on the held-out petitions "
                                    "(number of held-out petitions of the class in brackets)."))
    return "".join(out)


def _confusion(run: RetrainRun, taxonomy: Taxonomy) -> str:
    ev = run["evaluation"]
    out = ['<h2 id="confusion">混淆矩阵 · Confusion matrix</h2>',
           "<p>Rows: the division a person assigned; columns: the model's division. Green diagonal: right; red: "
           "where petitions go astray (shade = share of the row, hover for counts).</p>"]
    models = [("challenger", ev["challenger"]["metrics"])]
    if ev["champion"] and ev["champion"].get("metrics"):
        models.append((f"champion {ev['champion']['version']}", ev["champion"]["metrics"]))
    for head in ("division", "risk"):
        for who, metrics in models:
            confusion = metrics[head]["confusion"]
            names = [taxonomy.display_name(head, c) for c in confusion["labels"]]
            slug = "challenger" if who == "challenger" else "champion"
            svg = heatmap(confusion["labels"], names, confusion["matrix"], f"confusion-{head}-{slug}",
                          f"{head} confusion matrix, {who}")
            out.append(f"<h3>{_e(HEAD_TITLES[head])} — {_e(who)}</h3>" + _figure(svg, f"{who}: true {head} (rows) "
                                                                                  f"against predicted (columns)."))
    return "".join(out)


def _calibration(run: RetrainRun) -> str:
    ev = run["evaluation"]
    curves = [("challenger", CHALLENGER, ev["challenger"]["metrics"]["division"]["reliability"])]
    eces = [f"challenger {_f(ev['challenger']['metrics']['division']['ece'])}"]
    if ev["champion"] and ev["champion"].get("metrics"):
        curves.insert(0, (f"champion {ev['champion']['version'][:16]}", CHAMPION,
                          ev["champion"]["metrics"]["division"]["reliability"]))
        eces.insert(0, f"champion {_f(ev['champion']['metrics']['division']['ece'])}")
    svg = reliability_chart(curves, "reliability-division", "division reliability curve")
    return ('<h2 id="calibration">校准 · Calibration (reliability curve)</h2>'
            "<p>Intake staff read the division confidence as a probability. On the dashed diagonal a stated "
            "70 % is right 70 % of the time; below it the model is over-confident. Dot size: number of petitions. "
            f"Expected calibration error: {_e(', '.join(eces))}.</p>"
            + _figure(svg, "Division confidence against accuracy on the held-out petitions, 10 bins."))


def _label_counts(run: RetrainRun, taxonomy: Taxonomy) -> str:
    counts = run["data"]["label_counts"]
    out = ["<h3>Label counts: this run vs the champion's training data</h3>"]
    if counts["champion"] is None:
        out.append("<p>No champion: its training counts cannot be shown.</p>")
    for head in HEADS:
        columns = [("training (this run)", counts["training"][head]), ("held-out period", counts["heldout"][head])]
        if counts["champion"] is not None:
            columns.append(("champion's training", counts["champion"].get(head, {})))
        totals = [sum(c.values()) or 1 for _, c in columns]
        rows, bars = [], []
        for code in taxonomy.codes(head):
            values = [c.get(code, 0) for _, c in columns]
            rows.append([taxonomy.display_name(head, code), code] +
                        [f"{v} ({_pct(v / t)})" for v, t in zip(values, totals, strict=True)])
            bars.append((taxonomy.display_name(head, code), [v / t for v, t in zip(values, totals, strict=True)]))
        colors = ["#1f6fb4", "#f28e2b", "#9a9a9a"]
        out.append(f"<h4>{_e(HEAD_TITLES[head])}</h4>")
        out.append(_table(["name", "code"] + [n for n, _ in columns], rows, id_=f"label-counts-{head}"))
        biggest = max((v for _, vs in bars for v in vs), default=1.0) or 1.0
        svg = hbar_chart(bars, [(n, colors[i]) for i, (n, _) in enumerate(columns)], f"label-shares-{head}",
                         f"{head} label shares", max_value=min(1.0, nice_ceiling(biggest)), percent=True)
        out.append(_figure(svg, f"Share of each {head} label."))
    return "".join(out)


def _small(run: RetrainRun) -> str:
    data = run["data"]
    rows = [[r["head"], r["name"], r["code"], str(r["count"]), str(r["needed"]),
             "yes" if r["learned"] else "no — never predicted"] for r in data["small_classes"]]
    intro = (f"<h3 id='small-classes'>Classes too small to learn</h3><p>A class needs 2 training examples to be fitted "
             f"at all, 3 to be calibrated, and about {data['min_examples']} before its threshold and F1 are stable. "
             "These classes have fewer in this run's training data; 'needed' is how many more labelled petitions "
             "would reach that.</p>")
    if not rows:
        return intro + "<p>None: every class has enough examples.</p>"
    return intro + _table(["head", "name", "code", "examples", "needed", "learned"], rows, id_="table-small-classes")


def _places(places: list[dict[str, Any]]) -> str:
    return "; ".join(f"{p['source']} row {p['row']}: {p['division']}/{p['risk']}/{p['key_group']}"
                     + (f" (id {p['id']})" if "id" in p else "") for p in places)


def _quality(run: RetrainRun) -> str:
    q = run["data"]["quality"]
    dec = run["data"]["decisions"] or {}
    resolved = set(dec.get("conflicts_resolved", []))
    out = ["<h3 id='duplicates'>Duplicates and conflicting labels found in the ledgers</h3>",
           f"<p>{q['rows_read']} rows read. {q['same_id_duplicates']['dropped']} repeated rows of "
           f"{q['same_id_duplicates']['ids']} ids (same labels) were kept once. "
           f"{q['conflicting_ids']['count']} ids are listed with different labels: they were left out of training "
           "unless an intake decision settled them. "
           f"{q['same_text_other_ids']['groups']} texts appear under several ids with the same labels (kept), "
           f"{q['same_text_conflicting_labels']['groups']} under several ids with different labels (kept, listed "
           "below: someone should look at them).</p>"]
    rows = [[c["id"], _places(c["places"]), "settled by a decision" if c["id"] in resolved else "left out"]
            for c in q["conflicting_ids"]["items"]]
    out.append(_table(["id", "where and how it is labelled", "training"], rows, id_="table-conflicting-ids")
               if rows else "<p>No id is labelled two ways.</p>")
    rows = [[", ".join(c["ids"]), _places(c["places"])] for c in q["same_text_conflicting_labels"]["items"]]
    if rows:
        out.append("<p>Same text, different labels:</p>" +
                   _table(["ids", "where and how it is labelled"], rows, id_="table-conflicting-texts"))
    rows = [[c["id"], str(c["copies"]), "; ".join(f"{p['source']} row {p['row']}" for p in c["places"])]
            for c in q["same_id_duplicates"]["examples"][:50]]
    if rows:
        out.append("<p>Repeated rows (first 50):</p>" + _table(["id", "copies", "where"], rows, id_="table-duplicates"))
    return "".join(out)


def _decisions(run: RetrainRun, taxonomy: Taxonomy) -> str:
    dec = run["data"]["decisions"]
    out = ["<h3 id='decision-overrides'>Intake decisions used as labels</h3>"]
    if not dec:
        return "".join(out) + "<p>No decisions were given (<code>--decisions</code>); the ledger labels were used as they are.</p>"
    per_head = ", ".join(f"{h} {n}" for h, n in dec["overrides_per_head"].items())
    out.append(f"<p>{dec['decisions']} decisions from {_e(dec['source'])}: {dec['matched']} match a ledger row, "
               f"{dec['extra_rows']} have none and were added as petitions (their masked text). A person's final "
               f"label replaced the ledger's on {dec['overridden_petitions']} petitions ({_e(per_head)}). "
               "These are counted, not trusted blindly: check the list for mistakes before promoting.</p>")
    rows = [[o["id"], o["head"], taxonomy.display_name(o["head"], o["ledger"]), taxonomy.display_name(o["head"], o["decision"]),
             o["decided_by"], o["reason"] or "", f"{o['source']} row {o['row']}"] for o in dec["overrides"]]
    if rows:
        out.append(_table(["id", "head", "ledger label", "decision", "decided by", "reason", "ledger row"], rows,
                          id_="table-overrides"))
    return "".join(out)


def _drift(run: RetrainRun, taxonomy: Taxonomy) -> str:
    drift = run["drift"]
    out = ['<h2 id="drift">数据漂移 · Drift</h2>',
           f"<p>Predictions of {_e(drift['predicted_by'])} on the held-out petitions, against the label shares of the "
           f"{_e(drift['reference'])}. A division whose share moves a lot is where the model meets petitions it "
           "was not trained for, or where intake practice changed.</p>"]
    for head in ("division", "risk"):
        ref, pred, true = drift["reference_labels"][head], drift["predicted"][head], drift["heldout_true"][head]
        codes = taxonomy.codes(head)
        bars = [(taxonomy.display_name(head, c), [ref[c], pred[c], true[c]]) for c in codes]
        biggest = max((v for _, vs in bars for v in vs), default=1.0) or 1.0
        distance = 0.5 * sum(abs(pred[c] - ref[c]) for c in codes)
        series = [("training labels (reference)", "#9a9a9a"), ("predicted, held-out", "#1f6fb4"),
                  ("true, held-out", "#f28e2b")]
        out.append(f"<h3>{_e(HEAD_TITLES[head])}: predicted distribution</h3>"
                   f"<p>Total variation distance between predicted held-out shares and reference: "
                   f"<b>{_pct(distance)}</b> of petitions would have to change {head} to match.</p>")
        out.append(_figure(hbar_chart(bars, series, f"drift-{head}", f"{head} distribution drift",
                                      max_value=min(1.0, nice_ceiling(biggest)), percent=True),
                           f"Share of petitions per {head}."))
    held, trained = drift["unseen_heldout"], drift["unseen_training"]
    words = "、".join(f"{w} ({c})" for w, c in held["top_new_words"]) or "none used in 3 or more petitions"
    out.append("<h3 id='unseen-words'>Words never seen in training</h3>"
               f"<p>Share of word tokens (segmented as the model does) outside the word vocabulary of "
               f"{_e(drift['vocabulary_of'])}: <b>{_pct(held['token_share'])}</b> in the held-out period "
               f"({held['tokens']} tokens) vs {_pct(trained['token_share'])} in the older petitions of this run. "
               "A word seen in only one training petition counts as unseen (the vocabulary keeps words of 2+ "
               "petitions). Most frequent new words (petitions), numbers left out:</p>"
               f"<p>{_e(words)}</p>")
    overrides = drift["overrides"]
    out.append("<h3 id='override-rate'>Intake override rate per division</h3>")
    if overrides is None:
        out.append("<p>No decisions were given, so the override rate is unknown.</p>")
    elif not overrides["available"]:
        out.append("<p>The decisions do not carry the model's suggestions (not a service database or an "
                   "export-decisions file), so the override rate cannot be computed.</p>")
    else:
        per = overrides["per_division"]
        rows = [[taxonomy.display_name("division", c), c, str(m["n"]), str(m["changed"]), _pct(m["rate"])]
                for c, m in sorted(per.items(), key=lambda kv: -kv[1]["rate"])]
        heads = ", ".join(f"{h} {_pct(r)}" for h, r in overrides["per_head"].items())
        out.append(f"<p>{overrides['n']} decisions with the model's suggestion recorded; share where the person "
                   f"changed it: {_e(heads)}. Per suggested division:</p>")
        out.append(_table(["suggested division", "code", "decisions", "changed", "override rate"], rows,
                          id_="table-override-rate"))
        bars = [(f"{taxonomy.display_name('division', c)} ({m['n']})", [m["rate"]]) for c, m in per.items()]
        out.append(_figure(hbar_chart(bars, [("override rate", "#d9534f")], "override-rate",
                                      "intake override rate per division", percent=True),
                           "Share of the model's division suggestions that intake staff changed."))
    return "".join(out)


def _card(run: RetrainRun, taxonomy: Taxonomy) -> str:
    data, card, ev = run["data"], run["card"], run["evaluation"]
    weak = [[r["head"], r["name"], r["code"], _f(r["f1"]), "" if r["support"] is None else str(r["support"]), r["why"]]
            for r in card["weak_classes"]]
    period = data["training_period"]
    held = data["heldout_period"]
    return (
        '<h2 id="model-card">模型说明 · Model card</h2>'
        "<h3>Intended use</h3><p>建议，不是决定。The model gives advice to intake staff at the provincial 人社厅: a "
        "suggested handling division (top 3, with confidence), how urgently a person must look at the petition, and "
        "whether it belongs to a long-standing petition group, with the words and rules behind each suggestion. "
        "<b>A person decides</b>; every suggestion can be overruled and the decision is recorded.</p>"
        "<h3>Must not be used for</h3><p>It labels the case and its urgency, never the person. It <b>must not be "
        "used for scoring, ranking, profiling or tracking petitioners as persons</b>, for deciding whether a "
        "petition is accepted, or for any purpose beyond routing and prioritising petitions.</p>"
        "<h3>Known weak classes</h3>"
        + (_table(["head", "name", "code", "held-out F1", "held-out petitions", "why"], weak, id_="table-weak-classes")
           if weak else "<p>None below the bar on this held-out set.</p>")
        + f"<p class='small'>Weak: held-out F1 below {card['weak_f1']}, or never predicted. Also see the classes too "
        "small to learn above.</p>"
        "<h3>Data period</h3>"
        f"<p>Read from {_e(', '.join(data['sources']))}"
        + (f" plus the intake decisions of {_e(data['decisions']['source'])}" if data["decisions"] else "")
        + f". Trained on {data['rows_training']} petitions received "
        f"{_e(' to '.join(period)) if period else '(no received_at dates)'}"
        + (f" ({data['undated_training']} of them undated)" if period and data.get("undated_training") else "")
        + f"; evaluated on {data['rows_heldout']} petitions "
        + (f"received {_e(' to '.join(held))}" if held else "without dates")
        + f" ({_e(ev['holdout']['method'])} hold-out). "
        + (f"The champion was trained on petitions received {_e(' to '.join(data['champion_period']))}."
           if data.get("champion_period") else "")
        + "</p><p>Text is segmented with jieba (rjieba); the risk and key-group rules of the taxonomy "
        f"(version {_e(taxonomy.version)}) are applied on top and reported with every suggestion.</p>"
    )


def render_report(run: RetrainRun, taxonomy: Taxonomy) -> str:
    ev = run["evaluation"]
    champion = ev["champion"]["version"] if ev["champion"] else "none (no champion in the registry)"
    header = (f"<h1>模型训练报告 · Training report {_e(run['version'])}</h1>"
              f"<p>Created {_e(run['created_at'])} by {_e(run['by'])}, registry <code>{_e(run['registry'])}</code>. "
              f"Challenger <b>{_e(run['version'])}</b>; champion (model in service) <b>{_e(champion)}</b>.</p>"
              '<p class="small">Contents: <a href="#comparison">comparison</a> · <a href="#per-class">per class</a> · '
              '<a href="#confusion">confusion</a> · <a href="#calibration">calibration</a> · <a href="#data">data</a> · '
              '<a href="#drift">drift</a> · <a href="#model-card">model card</a></p>')
    data = ('<h2 id="data">数据 · Data</h2>'
            + _label_counts(run, taxonomy) + _small(run) + _quality(run) + _decisions(run, taxonomy))
    body = (header + _comparison(run) + _per_class(run, taxonomy) + _confusion(run, taxonomy) + _calibration(run)
            + data + _drift(run, taxonomy) + _card(run, taxonomy))
    return (f'<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
            f"<title>Training report {_e(run['version'])}</title><style>{CSS}</style></head>"
            f"<body>{body}</body></html>\n")
