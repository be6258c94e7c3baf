"""Write the figure tables of the README and docs/model.md from benchmarks/results/*.json, so that no figure
is typed by hand. Each table sits between `<!-- results:NAME -->` and
`<!-- /results -->`; the text around it is left alone.

    python benchmarks/readme_tables.py [--check]

With --check, change nothing and exit 1 when a table differs from its results file
(tests/test_docs.py runs this).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
# Every file whose tables are made here: the README's, and those of the docs that explain them.
DOCUMENTS = (README, ROOT / "docs" / "model.md", ROOT / "docs" / "linking.md", ROOT / "docs" / "operations.md")
BLOCK = re.compile(r"(<!-- results:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)

ACCURACY_COLUMNS = {
    "division_accuracy": "division acc",
    "division_accuracy_ours": "this department's petitions",
    "routed_share_ours": "routed at ≥ 95 % precision",
    "risk_macro_f1": "risk macro-F1",
    "high_recall": "high-risk recall",
    "high_share": "flagged high",
    "key_group_f1": "key-group F1",
    "auto_routed_precision": "precision of what is routed without review",
    "division_calibration_error": "calibration error of the division's probability (lower is better)",
}
PIPELINE_NAMES = {"shipped": "this model", "reference": "reference: char 1–3 TF-IDF + LinearSVC"}


def _cell(summary: dict[str, Any], key: str) -> str:
    value = summary["figures"][key]
    low, high = summary.get("interval95", {}).get(key, (None, None))
    if value != value:  # NaN: no such petition in the test rows
        return "–"
    text = f"{value:.3f}"
    return text if low is None else f"{text} ({low:.2f}–{high:.2f})"


def accuracy_table(protocol: str) -> Callable[[dict[str, Any]], str]:
    """One row per figure, one column per pipeline."""
    def table(results: dict[str, Any]) -> str:
        pipelines = results[protocol]
        names = [PIPELINE_NAMES.get(p, f"variant `{p}`") for p in pipelines]
        lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for key, label in ACCURACY_COLUMNS.items():
            cells = [_cell(summary, key) for summary in pipelines.values()]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    return table


def accuracy_by_board(results: dict[str, Any]) -> str:
    keys = ("division_accuracy", "division_accuracy_ours", "routed_share_ours", "high_recall", "high_share", "key_group_f1")
    shipped = results["lobo"]["shipped"]["by_board"]
    lines = ["| test board (petitions) | " + " | ".join(ACCURACY_COLUMNS[k] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for board, figures in shipped.items():
        cells = ["–" if figures[k] != figures[k] else f"{figures[k]:.3f}" for k in keys]
        lines.append(f"| {board} ({figures['n']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def default_model(results: dict[str, Any]) -> str:
    summary = results["default"]
    keys = ("division_accuracy", "division_accuracy_ours", "risk_macro_f1", "high_recall", "high_share", "key_group_f1")
    return ("| | " + " | ".join(ACCURACY_COLUMNS[k] for k in keys) + " |\n" + "|---" * (len(keys) + 1) + "|\n"
            + f"| on all {summary['n']} labelled real petitions | " + " | ".join(_cell(summary, k) for k in keys) + " |\n")


VARIANTS = {
    "shipped": "as shipped",
    "numbers_as_written": "numbers read as written",
    "numbers_placeholders": "dates and amounts as zeros too",
    "calibrated_within_boards": "numbers as written, thresholds within boards (the model before)",
    "synthetic_weight_0.3": "generated petitions weigh 0.3 instead of 0.5",
    "C_1": "weaker regularisation (C = 1 instead of 0.3)",
    "self_trained": "self-trained on unlabeled.csv (training/selftrain.py)",
    "division_log_loss": "routing by logistic regression instead of an SVM",
    "division_unbalanced": "routing's classes not weighted to balance",
    "char_features_300k": "300,000 character n-grams instead of 150,000",
    "ask_view_full_weight": "the closing request weighing 1 instead of 0.5",
}


def accuracy_variants(results: dict[str, Any]) -> str:
    keys = ("division_accuracy", "division_accuracy_ours", "routed_share_ours", "high_recall", "high_share", "key_group_f1")
    lines = ["| variant, left one board out | " + " | ".join(ACCURACY_COLUMNS[k] for k in keys) + " |",
             "|---" * (len(keys) + 1) + "|"]
    for name, summary in results["variants"].items():
        figures = summary["figures"]
        lines.append(f"| {VARIANTS.get(name, name)} | " + " | ".join(f"{figures[k]:.3f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def encoder(results: dict[str, Any]) -> str:
    """The pretrained encoder beside the shipped model, division figures only."""
    keys = ("division_accuracy", "division_accuracy_ours", "routed_share_ours")
    short = ("division acc", "this department", "routed ≥ 95 %")
    lines = ["| | " + " | ".join(f"{label} ({p})" for p in ("one board out", "5-fold")
                                                                  for label in short) + " |",
             "|---" * (2 * len(keys) + 1) + "|"]
    for name in results["lobo"]:
        if name != "asked_share":
            lines.append(f"| {name} | " + " | ".join(_cell(results[p][name], k) for p in ("lobo", "cv") for k in keys)
                         + " |")
    cost = results["cost"]
    return "\n".join(lines) + (
        f"\n\nThe encoder takes {cost['ms_per_petition_view']:.0f} ms per petition for the embedded view "
        f"(mean {cost['mean_chars_view']:.0f} characters) and {cost['ms_per_petition_whole_text']:.0f} ms for the "
        f"whole text (mean {cost['mean_chars_whole_text']:.0f}), one petition at a time in one thread "
        f"(load average {results['cost_load_average']:.1f}); the cascade asks it for "
        f"{results['lobo']['asked_share']:.0%} of petitions.\n")


ENCODER_PIPELINES = {
    "shipped": "n-grams only (the default)",
    "encoder": "with the encoder (`--encoder`)",
    "encoder_every_petition": "with the encoder, routing asking it for every petition",
}


def accuracy_encoder(results: dict[str, Any]) -> str:
    """The optional encoder heads inside the model, beside the model without them, both protocols."""
    keys = ("division_accuracy", "division_accuracy_ours", "routed_share_ours", "auto_routed_share",
            "auto_routed_precision", "key_group_f1")
    labels = {**ACCURACY_COLUMNS, "auto_routed_share": "routed without review"}
    lines = ["| protocol | model | " + " | ".join(labels[k] for k in keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for protocol, title in (("lobo", "one board out"), ("cv", "5-fold, 3 draws")):
        for name, summary in results[protocol].items():
            lines.append(f"| {title} | {ENCODER_PIPELINES.get(name, name)} | "
                         + " | ".join(_cell(summary, k) for k in keys) + " |")
    if "default" in results:  # trained on the bundled corpus alone, scored on every labelled real petition
        title = f"default model, on all {results['default']['n']} real"
        for name, summary in {"shipped": results["default"], **results.get("default_variants", {})}.items():
            lines.append(f"| {title} | {ENCODER_PIPELINES.get(name, name)} | "
                         + " | ".join(_cell(summary, k) for k in keys) + " |")
    return "\n".join(lines) + "\n"


ENCODER_BELOW_VARIANTS = {
    "shipped": "n-grams only (the default)",
    "encoder": "below 0.8 (the default of `--encoder`)",
    "encoder_below_0.9": "below 0.9",
    "encoder_below_0.95": "below 0.95",
    "encoder_below_0.99": "below 0.99",
    "encoder_every_petition": "every petition (`--encoder-below 1`)",
}


def accuracy_encoder_below(lobo: dict[str, Any]) -> str:
    """Where routing asks the encoder (`--encoder-below`): the one-board-out and 5-fold runs of
    the wider cut-offs, beside the default cut-off and the model without the encoder, whose
    figures on the same folds are in accuracy_encoder.json."""
    keys = ("division_accuracy", "division_accuracy_ours", "routed_share_ours", "auto_routed_share",
            "auto_routed_precision")
    labels = {**ACCURACY_COLUMNS, "auto_routed_share": "routed without review"}
    base = json.loads((RESULTS / "accuracy_encoder.json").read_text(encoding="utf-8"))
    cv = json.loads((RESULTS / "accuracy_encoder_below_cv.json").read_text(encoding="utf-8"))
    lines = ["| protocol | routing asks the encoder | " + " | ".join(labels[k] for k in keys) + " |",
             "|---" * (len(keys) + 2) + "|"]
    for protocol, title, wider in (("lobo", "one board out", lobo), ("cv", "5-fold, 3 draws", cv)):
        for name, summary in {**base[protocol], **wider[protocol]}.items():
            lines.append(f"| {title} | {ENCODER_BELOW_VARIANTS.get(name, name)} | "
                         + " | ".join(_cell(summary, k) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def linking(results: dict[str, Any]) -> str:
    at = next(r for r in results["reposts_vs_all_negatives"] if r["threshold"] == results["link_threshold"])
    data, service, replay = results["data"], results["service_cost"], results["emerging_replay"]
    rows = [
        (f"re-posts found ({data['synthetic_reposts']:,} simulated re-sends + {data['natural_reposts']} real), "
         f"threshold {results['link_threshold']}", f"recall {at['recall']:.3f}, precision {at['precision']:.3f}"),
        (f"wrongly linked: {data['template_swaps']} template swaps (one letter, another employer or project), "
         f"{data['hard_negatives_other_board']} same-topic messages of other boards", str(at["false_links"])),
        (f"added per triage with {service['stored_in_sqlite']:,} stored (SQLite)",
         f"p50 {service['added_ms_p50']:.1f} ms, p99 {service['added_ms_p99']:.1f} ms"),
        (f"memory with {service['indexed']:,} stored; index rebuilt at start",
         f"+{service['rss_growth_mb']:.0f} MB; {service['rebuild_from_database_s']:.0f} s in the background"),
        (f"replay of {replay['dated_messages']:,} dated messages: groups of ≥ 3 within 14 days",
         f"{replay['groups']}, {replay['flagged_at_kth_member']} flagged at their 3rd member's own triage"),
    ]
    return "| measure | figure |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)


def machine_state(loads: list[float], cpus: int) -> str:
    """How busy the machine was while a benchmark ran, from the load averages it recorded."""
    state = ("otherwise quiet" if max(loads) <= cpus + 0.5
             else "shared with other work, so times are rough")
    return f"load average between {min(loads):.1f} and {max(loads):.1f} on {cpus} cores, {state}"


def speed(results: dict[str, Any]) -> str:
    whole = results["whole_process"]
    loads = [r["load_avg"] for e in whole["processes"].values() for r in e["runs"]]
    lines = [f"Whole processes on {whole['rows']:,} real petitions (`python benchmarks/speed.py`), median wall time of "
             f"{whole['runs']} fresh starts, start-up included; {machine_state(loads, results['machine']['cpus'])}:", "",
             "| process | wall s | × fastText + jieba | CPU s (scoring workers not counted) |", "|---|---|---|---|"]
    for name, entry in whole["processes"].items():
        cpu = sorted(r["cpu_seconds"] for r in entry["runs"])[len(entry["runs"]) // 2]
        lines.append(f"| {name} | {entry['median_wall_seconds']:.1f} | {entry['speedup_over_fasttext']:.2f} | {cpu:.1f} |")
    return "\n".join(lines) + "\n"


def train_scale(results: dict[str, Any]) -> str:
    built = results.get("built") or {}
    lines = [f"Training on {results['kind']} petitions (`python benchmarks/train_scale.py`"
             + (f"; mean {built['mean_chars']:.0f} characters, labels a model's suggestions" if built else "")
             + "), each size in a fresh process; peak memory of the whole process tree:", "",
             "| petitions | characters | features | fit s | peak memory | training process | artifact |",
             "|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        if "fit_seconds" not in r:
            lines.append(f"| {r['n']:,} | {r.get('chars', 0) / 1e6:.1f} M | | {r.get('refused') or r.get('error')} | | | |")
            continue
        lines.append(f"| {r['n']:,} | {r['chars'] / 1e6:.1f} M | {r['features']:,} | {r['fit_seconds']:.0f} | "
                     f"{r['peak_tree_pss_mb'] / 1024:.1f} GiB | {r['peak_rss_mb'] / 1024:.1f} GiB | "
                     f"{r['artifact_bytes'] / 2**20:.0f} MB |")
    return "\n".join(lines) + "\n"


def train_scale_reference(results: dict[str, Any]) -> str:
    compared = [r for r in results["rows"] if (r.get("reference") or {}).get("agreement")]
    lines: list[str] = []
    if compared:
        lines += ["Above 20,000 petitions, each size fitted again with its heads fitted as before (`--reference`: "
                  "every head by liblinear or lbfgs on every row, in worker processes), and how the two fits decide "
                  "the same held-out petitions:", "",
                  "| petitions | fit s, before | peak memory, before | held out | same routing | same risk "
                  "| same key group | routing accuracy (before) | routing macro-F1 (before) | risk macro-F1 (before) "
                  "| key group any-F1 (before) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in compared:
            ref, now, before = r["reference"], r["heldout"], r["reference"]["heldout"]
            same = ref["agreement"]
            lines.append(
                f"| {r['n']:,} | {ref['fit_seconds']:.0f} | {ref['peak_tree_pss_mb'] / 1024:.1f} GiB | {now['n']:,} | "
                f"{same['division']:.1%} | {same['risk']:.1%} | {same['key_group']:.1%} | "
                f"{now['division_accuracy']:.3f} ({before['division_accuracy']:.3f}) | "
                f"{now['division_macro_f1']:.3f} ({before['division_macro_f1']:.3f}) | "
                f"{now['risk_macro_f1']:.3f} ({before['risk_macro_f1']:.3f}) | "
                f"{now['key_group_any_f1']:.3f} ({before['key_group_any_f1']:.3f}) |")
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def load(results: dict[str, Any]) -> str:
    petitions, machine = results["petitions"], results["machine"]
    loads = [machine["load_avg_at_start"][0], machine["load_avg_at_end"][0],
             *(a for p in results["phases"] for a in p["load_avg"])]
    # Which boards were sent, as the option that chose them (the default is train, dev and cities).
    sent = [Path(f.strip()).stem for f in petitions["source"].split(",")]
    sources = "" if sent == ["train", "dev", "cities"] else f" --sources {','.join(sent)}"
    if results.get("database_kind", "sqlite") == "sqlite":
        storage, option = "SQLite", ""
    else:  # a server of its own, on the same cores: its CPU is not in the server CPU column
        storage, option = "PostgreSQL on the same machine", " --database-url URL"
    lines = [f"`triage serve --workers {results['workers']}` ({storage}) under load from the same machine "
             f"(`python benchmarks/load.py{sources}{option}`): {petitions['distinct']:,} real petitions (mean "
             f"{petitions['mean_chars']} characters) sent at fixed rates"
             + (", each with a case number of its own (`external_id`)" if results.get("case_numbers") else "")
             + f", {results['seconds_per_rate']:g} s each, "
             "latency counted from each request's scheduled time; then clients that never pause. Load average between "
             f"{min(loads):.1f} and {max(loads):.1f} on {machine['cpus']} cores, the load client among them:", "",
             "| load | due | answered | errors | not answered | completed/s | p50 ms | p99 ms | max ms "
             "| server CPU ms/request | all cores busy |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in results["phases"]:
        lines.append(f"| {p['load']} | {p['scheduled']:,} | {p['answered_ok']:,} | {p['errors']} | {p['not_answered']:,} | "
                     f"{p['completed_per_second']:.0f} | {_ms(p['p50_ms'])} | {_ms(p['p99_ms'])} | {_ms(p['max_ms'])} | "
                     f"{_ms(p['server_cpu_ms_per_request'])} | {_share(p.get('machine_cpu_busy'))} |")
    database = results["database"]
    lines += ["", f"Rows in the database afterwards: {database['triages']:,}, against {database['answered_stored']:,} "
                  "answered `stored: true`" + (" (the rest were stored, but answered after the client had given up)."
                                               if database["rows_minus_answered_stored"] > 0 else ".")]
    if "saturated_vs_in_process" in results:
        ip, share = results["in_process"], results["saturated_vs_in_process"]
        lines.append(f"The model alone (`TriageModel.suggest` in one process, one core) makes {ip['per_second']:.0f} "
                     f"suggestions/s; saturated, the service completes {100 * share['share']:.0f} % of that times "
                     f"{share['cores']} cores.")
        if "encoder_asked_share" in ip:
            lines.append(f"The model has the encoder heads, which were asked for {ip['encoder_asked_share']:.0%} "
                         "of the petitions timed in one process.")
    return "\n".join(lines) + "\n"


def http_ceiling(results: dict[str, Any]) -> str:
    """The HTTP layer alone, and what it leaves of the per-request budget the saturated target sets."""
    service = json.loads((RESULTS / "load.json").read_text(encoding="utf-8"))
    cpus, model_rate = service["machine"]["cpus"], service["in_process"]["per_second"]
    target = 0.6 * model_rate * cpus
    budget, model_ms, http_ms = 1000 * cpus / target, 1000 / model_rate, results["server_cpu_ms_per_request"]
    saturated = service["phases"][-1]
    return (f"The HTTP layer alone (`python benchmarks/http_ceiling.py`: uvicorn with {results['workers']} workers, "
            f"FastAPI and the service's `PetitionIn` validation answering a fixed body; nothing computed or stored) "
            f"completes {results['completed_per_second']:,.0f} requests/s with {results['connections']} clients that "
            f"never pause, at {http_ms:.2f} ms of server CPU per request. The saturated target, 60 % of the model's "
            f"{model_rate:,.0f} suggestions/s times {cpus} cores, is {target:,.0f} requests/s: at most {budget:.2f} ms "
            f"of the cores per request, the load client's share included. The model takes {model_ms:.2f} ms and "
            f"HTTP {http_ms:.2f}, which leaves {budget - model_ms - http_ms:.2f} ms for the same-matter lookup, "
            f"storing and the hand-over to a thread; the whole request costs the service "
            f"{saturated['server_cpu_ms_per_request']:.1f} ms saturated.\n")


def stored_scale(results: dict[str, Any]) -> str:
    """The migrations that re-mask every stored petition, and the same-matter lists, by the size of the database."""
    sizes = results["sizes"]
    loads = [*results["machine"]["load_avg_at_start"][:1], *results["machine"]["load_avg_at_end"][:1],
             *(e[step]["load_avg"] for e in sizes for step in ("0005", "0006", "lists"))]
    first = sizes[0]["built"]
    lines = [f"SQLite files of {results['per_day']:g} petitions a day (`python benchmarks/stored_scale.py`; texts "
             f"{results['texts']}, mean {first['mean_chars']} characters, {100 * results['group_share']:.0f} % of them in groups "
             f"of one matter), upgraded from revision 0004, each migration and the lists in a fresh process; "
             f"{machine_state(loads, results['machine']['cpus'])}:", "",
             "| stored triages (days of intake) | decisions, review items, audit entries | database | 0005 | 0006 "
             "| peak memory, migrating | longest silence in the log | index built at start | GET /v1/emerging, 14 days "
             "| GET /v1/emerging, 366 days | case page's lists, p50 / max |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in sizes:
        rows, lists = e["built"]["rows"], e["lists"]
        lines.append(
            f"| {e['size']:,} ({e['built']['days_of_intake']:,}) | {rows['decisions']:,}, {rows['review_items']:,}, {rows['audit']:,} "
            f"| {e['built']['database_mb']:,} MB | {e['0005']['seconds']:.0f} s | {e['0006']['seconds']:.0f} s "
            f"| {max(e['0005']['peak_rss_mb'], e['0006']['peak_rss_mb'])} MB ({e['0005']['rss_before_mb']} MB before it began) "
            f"| {max(e['0005']['longest_silence_s'], e['0006']['longest_silence_s']):.0f} s "
            f"| {lists['index_built_s']:.0f} s ({lists['indexed']:,} petitions) "
            f"| {lists['emerging_default']['seconds_median']:.2f} s ({lists['emerging_default']['groups']} groups) "
            f"| {lists['emerging_widest']['seconds_median']:.1f} s ({lists['emerging_widest']['groups']} groups) "
            f"| {lists['case_page_lists']['ms_p50']:.1f} / {lists['case_page_lists']['ms_max']:.0f} ms |")
    return "\n".join(lines) + "\n"


# table name: (results file, how to render it)
TABLES: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "accuracy_lobo": ("accuracy.json", accuracy_table("lobo")),
    "accuracy_cv": ("accuracy.json", accuracy_table("cv")),
    "accuracy_by_board": ("accuracy.json", accuracy_by_board),
    "accuracy_default": ("accuracy.json", default_model),
    "accuracy_variants": ("accuracy_variants.json", accuracy_variants),
    "encoder": ("encoder.json", encoder),
    "accuracy_encoder": ("accuracy_encoder.json", accuracy_encoder),
    "linking": ("linking.json", linking),
    "speed": ("speed.json", speed),
    "train_scale": ("train_scale.json", train_scale),
    "train_scale_reference": ("train_scale.json", train_scale_reference),
    "load": ("load.json", load),
    "load_postgresql": ("load_postgresql.json", load),
    "load_encoder": ("load_encoder.json", load),
    "http_ceiling": ("http_ceiling.json", http_ceiling),
    "accuracy_encoder_below": ("accuracy_encoder_below_lobo.json", accuracy_encoder_below),
    "load_encoder_below": ("load_encoder_below_0.99.json", load),
    "stored_scale": ("stored_scale.json", stored_scale),
}


def render(readme: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise SystemExit(f"unknown results table {name!r}; known: {', '.join(TABLES)}")
        file, make = TABLES[name]
        if not (RESULTS / file).exists():  # not measured in this checkout: the table stays as it is
            return match.group(0)
        results = json.loads((RESULTS / file).read_text(encoding="utf-8"))
        return match.group(1) + make(results) + match.group(4)
    return BLOCK.sub(replace, readme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a README table differs from its results")
    args = parser.parse_args()
    stale = []
    for document in DOCUMENTS:
        current = document.read_text(encoding="utf-8")
        rendered = render(current)
        if rendered != current:
            stale.append(document.relative_to(ROOT).as_posix())
            if not args.check:
                document.write_text(rendered, encoding="utf-8")
    if args.check and stale:
        print(f"tables in {', '.join(stale)} differ from benchmarks/results: run python benchmarks/readme_tables.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
