"""Batch prediction speed and dev accuracy of the project's model against two
baselines, in one process, on the same machine and the same petitions:

  project      TriageModel.predict (features, three heads, rules, thresholds), trained with
               training.train.fit_with_thresholds on real train.csv + the bundled corpus,
               or loaded from --model
  fastText     one supervised fastText model per head on jieba tokens
  char LR      scikit-learn char TF-IDF (1-3) + LogisticRegression per head

Accuracy is on ../shared/data/real/dev.csv; throughput on the dev petitions
repeated to --repeat-to (default 5,000), median of --runs (5) timed runs, each
timing everything from the raw text on (segmentation included). fastText is
timed twice with the same trained models: segmenting with Python jieba, and with
rjieba (same dictionary and algorithm, what the project uses). The project's
single-petition latency (model.suggest, with explanations) is measured over
--latency-calls calls.

Whole processes, as a user runs them: `triage predict` (default workers, and
--workers 1) against a fastText process (the same trained fastText heads, jieba
tokens, one CSV row out per petition) on a file of --whole-rows real petitions
(every real file's id, title and body; repeated from the start, with new ids, up
to that count). Each is started afresh --whole-runs times; the median wall time
counts, start-up (imports, model load, jieba's dictionary) included. The file is
written to a temporary folder and removed afterwards. Other people's work on the
same machine makes timings noisy: the load average is recorded beside them.

Needs the benchmark extras: pip install -r benchmarks/requirements.txt

    python benchmarks/speed.py [--model MODEL_DIR] [--json OUT.json] [--profile 2000]

Exit 3 when the real petitions are not there."""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from model.taxonomy import HEADS, load_taxonomy  # noqa: E402
from model.text import normalize, segment  # noqa: E402
from training.corpus import DEFAULT_CORPUS  # noqa: E402
from training.evaluate import head_metrics  # noqa: E402
from training.ledger import read_ledgers  # noqa: E402
from training.train import label_arrays, taxonomy_codes, texts_of  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
FASTTEXT_PARAMS = {"epoch": 25, "wordNgrams": 2, "lr": 0.5, "dim": 100, "minCount": 1, "loss": "softmax",
                   "seed": 0, "thread": 2, "verbose": 0}
Decisions = list[dict[str, Any]]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ pipelines
def jieba_segment() -> Callable[[str], list[str]]:
    import jieba

    jieba.setLogLevel(60)
    jieba.initialize()  # the dictionary load is start-up cost, not per-petition cost

    def cut(text: str) -> list[str]:
        return [w for w in jieba.lcut(normalize(text)) if not w.isspace()]

    return cut


def rjieba_segment(text: str) -> list[str]:
    return segment(normalize(text))


class FastTextHeads:
    """One fastText classifier per head; the tokeniser is swappable so the same
    trained models can be timed with jieba and with rjieba."""

    def __init__(self, tokenize: Callable[[str], list[str]]) -> None:
        self.tokenize = tokenize
        self.models: dict[str, Any] = {}

    def lines(self, texts: Sequence[str]) -> list[str]:
        # segment() drops whitespace tokens, so no line holds a newline (fastText reads one line per text)
        return [" ".join(self.tokenize(t)) for t in texts]

    def fit(self, texts: Sequence[str], labels: dict[str, np.ndarray]) -> FastTextHeads:
        import fasttext

        lines = self.lines(texts)
        with tempfile.TemporaryDirectory() as tmp:
            for head in HEADS:
                path = Path(tmp) / f"{head}.txt"
                path.write_text("".join(f"__label__{y} {x}\n" for x, y in zip(lines, labels[head], strict=True)),
                                encoding="utf-8")
                self.models[head] = fasttext.train_supervised(input=str(path), **FASTTEXT_PARAMS)
        return self

    def with_tokenizer(self, tokenize: Callable[[str], list[str]]) -> FastTextHeads:
        twin = FastTextHeads(tokenize)
        twin.models = self.models
        return twin

    def predict(self, texts: Sequence[str]) -> Decisions:
        lines = self.lines(texts)
        # The list form goes straight to C++ (the single-string form trips over numpy 2 in fasttext-wheel 0.9.2).
        per_head = {h: [labels[0].removeprefix("__label__") for labels in self.models[h].predict(lines, k=1)[0]]
                    for h in HEADS}
        return [{h: per_head[h][i] for h in HEADS} for i in range(len(lines))]


class CharLogReg:
    """One char TF-IDF (1-3) shared by three LogisticRegression heads."""

    def fit(self, texts: Sequence[str], labels: dict[str, np.ndarray]) -> CharLogReg:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True,
                                          preprocessor=normalize, dtype=np.float32)
        matrix = self.vectorizer.fit_transform(texts)
        self.heads = {h: LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced").fit(matrix, labels[h])
                      for h in HEADS}
        return self

    def predict(self, texts: Sequence[str]) -> Decisions:
        matrix = self.vectorizer.transform(texts)
        per_head = {h: self.heads[h].predict(matrix) for h in HEADS}
        return [{h: str(per_head[h][i]) for h in HEADS} for i in range(matrix.shape[0])]


# ------------------------------------------------------------------ measuring
def score(decisions: Decisions, truth: dict[str, np.ndarray], codes: dict[str, list[str]]) -> dict[str, Any]:
    """The figures of training.evaluate.evaluate_decisions that plain argmax baselines can have."""
    result: dict[str, Any] = {}
    for head in HEADS:
        m = head_metrics(list(truth[head]), [d[head] for d in decisions], codes[head])
        result[head] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    flagged = np.asarray([d["risk"] == "high" for d in decisions])
    actual = np.asarray(truth["risk"]) == "high"
    result["risk"]["high_recall"] = float((flagged & actual).sum() / actual.sum()) if actual.any() else None
    result["risk"]["high_share"] = float(flagged.mean())
    from sklearn.metrics import f1_score

    kg_true = np.asarray(truth["key_group"]) != "none"
    kg_pred = np.asarray([d["key_group"] != "none" for d in decisions])
    result["key_group"]["any_f1"] = float(f1_score(kg_true, kg_pred, zero_division=0))
    return result


def throughput(predict: Callable[[Sequence[str]], Any], texts: Sequence[str], runs: int) -> dict[str, Any]:
    predict(texts[:50])  # warm caches (jieba's HMM, sklearn's lazy imports) outside the timing
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        out = predict(texts)
        seconds.append(time.perf_counter() - started)
        count = len(next(iter(out.values()))) if isinstance(out, dict) else len(out)
        if count != len(texts):
            raise RuntimeError(f"predict returned {count} results for {len(texts)} texts")
    median = statistics.median(seconds)
    return {"n": len(texts), "runs": runs, "seconds": [round(s, 4) for s in seconds],
            "median_seconds": round(median, 4), "per_second": len(texts) / median}


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency(call: Callable[[str], Any], texts: Sequence[str], calls: int) -> dict[str, float]:
    for text in texts[:20]:
        call(text)
    timings = []
    for i in range(calls):
        text = texts[i % len(texts)]
        started = time.perf_counter()
        call(text)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {"calls": calls, "median_ms": statistics.median(timings),
            "p99_ms": nearest_rank(timings, 0.99),
            "max_ms": timings[-1]}


def profile(predict: Callable[[Sequence[str]], Any], texts: Sequence[str], top: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    predict(texts)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def repeat_to(texts: list[str], n: int) -> list[str]:
    return (texts * (n // len(texts) + 1))[:n]


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("pipeline", "pet/s", "x ft(jieba)", "x ft(rjieba)", "train s", "div acc", "div mF1",
              "risk acc", "risk mF1", "high rec", "high %", "kg acc", "kg mF1", "kg anyF1")
    lines = [header]
    for r in rows:
        a = r.get("accuracy")
        lines.append((
            r["pipeline"], f"{r['per_second']:,.0f}", fmt(r["ratio_fasttext_jieba"], ".2f"),
            fmt(r["ratio_fasttext_rjieba"], ".2f"), fmt(r.get("train_seconds"), ".1f"),
            *((fmt(a["division"]["accuracy"]), fmt(a["division"]["macro_f1"]), fmt(a["risk"]["accuracy"]),
               fmt(a["risk"]["macro_f1"]), fmt(a["risk"]["high_recall"]), fmt(100 * a["risk"]["high_share"], ".1f"),
               fmt(a["key_group"]["accuracy"]), fmt(a["key_group"]["macro_f1"]), fmt(a["key_group"]["any_f1"]))
              if a else ("-",) * 9),
        ))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for j, line in enumerate(lines):
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


# ------------------------------------------------------------------ whole processes
def real_petitions_file(real: Path, rows: int, out: Path) -> int:
    """Every real petition's id, title and body in one CSV (repeated with new ids up to `rows`)."""
    import pandas as pd

    names = ["unlabeled.csv", "train.csv", "dev.csv", "cities.csv"]
    frames = [pd.read_csv(real / n, dtype=str, keep_default_na=False)[["id", "title", "body"]]
              for n in names if (real / n).exists()]
    frame = pd.concat(frames, ignore_index=True)
    parts, round_ = [frame], 1
    while sum(map(len, parts)) < rows:
        again = frame.copy()
        again["id"] = f"r{round_}-" + again["id"]
        parts.append(again)
        round_ += 1
    pd.concat(parts, ignore_index=True).iloc[:rows].to_csv(out, index=False)
    return int(frame["body"].str.len().mean())


def fasttext_predict_process(model_dir: str, source: str, out: str) -> None:
    """What the fastText baseline does as a program: read the CSV, segment with jieba,
    predict the three heads, write one CSV row per petition."""
    import csv

    import fasttext

    from model.text import join_fields

    cut = jieba_segment()
    models = {h: fasttext.load_model(str(Path(model_dir) / f"{h}.bin")) for h in HEADS}
    with open(source, encoding="utf-8", newline="") as inp, open(out, "w", encoding="utf-8", newline="") as outp:
        writer = csv.writer(outp)
        writer.writerow(["id", *HEADS])
        batch: list[tuple[str, str]] = []

        def flush() -> None:
            per_head = {h: models[h].predict([line for _, line in batch], k=1)[0] for h in HEADS}
            writer.writerows([pid, *(per_head[h][i][0].removeprefix("__label__") for h in HEADS)]
                             for i, (pid, _) in enumerate(batch))
            batch.clear()

        for row in csv.DictReader(inp):
            batch.append((row["id"], " ".join(cut(join_fields(row["title"], row["body"])))))
            if len(batch) == 1000:
                flush()
        if batch:
            flush()


def timed_process(command: list[str]) -> dict[str, float]:
    """Wall time and CPU time of one command: its process and the children it waited for
    (not the scoring workers of `triage predict`, which its forkserver starts)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    err = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {err[-2000:]}")
    # No peak memory: Linux carries a process's ru_maxrss over fork and exec, so a child
    # started from this large process reports this process's peak, not its own.
    return {"wall_seconds": round(wall, 3), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "load_avg": os.getloadavg()[0]}


def whole_processes(model_dir: Path, ft: FastTextHeads, real: Path, rows: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="speed-whole-") as tmp:
        source = Path(tmp) / "petitions.csv"
        mean_chars = real_petitions_file(real, rows, source)
        for head in HEADS:
            ft.models[head].save_model(str(Path(tmp) / f"{head}.bin"))
        python = sys.executable
        commands = {
            "triage predict": [python, "-m", "triage.cli", "predict", "--model", str(model_dir), "--input", str(source),
                               "--output", str(Path(tmp) / "triage.csv")],
            "triage predict --workers 1": [python, "-m", "triage.cli", "predict", "--model", str(model_dir), "--input",
                                           str(source), "--output", str(Path(tmp) / "triage1.csv"), "--workers", "1"],
            "fastText + jieba process": [python, str(Path(__file__).resolve()), "--fasttext-predict", tmp, str(source),
                                         str(Path(tmp) / "fasttext.csv")],
        }
        timings: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
        for run in range(runs):  # interleaved, so that a busy minute on the machine falls on all of them
            for name, command in commands.items():
                log(f"whole process {run + 1}/{runs}: {name} on {rows:,} petitions …")
                timings[name].append(timed_process(command))
    result: dict[str, Any] = {"rows": rows, "mean_body_chars": mean_chars, "runs": runs, "processes": {}}
    for name, measured in timings.items():
        result["processes"][name] = {"median_wall_seconds": statistics.median(m["wall_seconds"] for m in measured),
                                     "runs": measured}
    baseline = result["processes"]["fastText + jieba process"]["median_wall_seconds"]
    for entry in result["processes"].values():
        entry["speedup_over_fasttext"] = round(baseline / entry["median_wall_seconds"], 3)
    return result


def print_whole(whole: dict[str, Any]) -> None:
    print(f"\nwhole processes on {whole['rows']:,} real petitions (mean body {whole['mean_body_chars']} characters), "
          f"median wall time of {whole['runs']} fresh starts:")
    for name, entry in whole["processes"].items():
        cpu = statistics.median(m["cpu_seconds"] for m in entry["runs"])
        loads = ", ".join(f"{m['load_avg']:.1f}" for m in entry["runs"])
        print(f"  {name:<28} {entry['median_wall_seconds']:7.1f} s  x{entry['speedup_over_fasttext']:.2f} vs fastText"
              f"  (CPU {cpu:.1f} s, scoring workers not counted; load average after each run: {loads})")


# ------------------------------------------------------------------ main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained artifact directory to time instead of training the project's model here")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "speed.json"),
                        help="write all figures here (default: %(default)s)")
    parser.add_argument("--real", default=str(REAL), help="folder with train.csv and dev.csv (default: %(default)s)")
    parser.add_argument("--repeat-to", type=int, default=5000, help="petitions per timed batch (dev repeated)")
    parser.add_argument("--runs", type=int, default=5, help="timed batch runs per pipeline; the median is reported")
    parser.add_argument("--latency-calls", type=int, default=500)
    parser.add_argument("--train-sample", type=int, help="train every pipeline on a random sample of this many "
                        "petitions (smoke tests only: accuracy is then not comparable with the README)")
    parser.add_argument("--profile", type=int, metavar="N", help="also cProfile the project's predict on N petitions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--whole-rows", type=int, default=30060, help="petitions in the whole-process comparison")
    parser.add_argument("--whole-runs", type=int, default=3, help="fresh starts of each whole process; the median counts")
    parser.add_argument("--whole-only", action="store_true",
                        help="only the whole-process comparison (fastText is still trained; no in-process figures)")
    parser.add_argument("--fasttext-predict", nargs=3, metavar=("MODELS", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fasttext_predict:
        fasttext_predict_process(*args.fasttext_predict)
        return 0

    real = Path(args.real)
    train_csv, dev_csv = real / "train.csv", real / "dev.csv"
    if not (train_csv.exists() and dev_csv.exists()):
        print(f"speed benchmark needs the real petitions at {train_csv} (training the baselines and, without "
              f"--model, the project's model) and {dev_csv} (accuracy, and the petitions that are timed); "
              "they are not there, so nothing was measured.")
        return 3
    try:
        import fasttext  # noqa: F401
    except ImportError:
        print("fastText is not installed: pip install -r benchmarks/requirements.txt", file=sys.stderr)
        return 2

    taxonomy = load_taxonomy()
    if args.model:
        from model.artifact import load_model

        loaded = load_model(args.model)
        taxonomy = loaded.model.taxonomy
    log("reading ledgers …")
    frame = read_ledgers([train_csv, DEFAULT_CORPUS], taxonomy).frame
    if args.train_sample and args.train_sample < len(frame):
        frame = frame.sample(n=args.train_sample, random_state=args.seed).reset_index(drop=True)
    dev = read_ledgers([dev_csv], taxonomy).frame
    train_texts, train_labels = texts_of(frame), label_arrays(frame)
    dev_texts, truth = texts_of(dev), label_arrays(dev)
    bulk = repeat_to(dev_texts, args.repeat_to)
    codes = taxonomy_codes(taxonomy)

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_at_start": os.getloadavg()},
        "train_rows": len(frame), "dev_rows": len(dev), "bulk_rows": len(bulk),
        "train_sample": args.train_sample, "fasttext_params": FASTTEXT_PARAMS, "pipelines": [],
    }

    # -- the project's model
    if args.model:
        model, train_seconds, source = loaded.model, None, f"artifact {args.model} ({loaded.version})"
    else:
        from training.train import fit_with_thresholds

        log(f"training the project's model on {len(frame)} petitions …")
        started = time.perf_counter()
        model, _ = fit_with_thresholds(frame, taxonomy, seed=args.seed, progress=lambda m: log("  " + m))
        train_seconds, source = time.perf_counter() - started, "trained here on train.csv + corpus"
    results["project_model"] = source

    # -- baselines
    log("training fastText (jieba tokens) …")
    started = time.perf_counter()
    ft_jieba = FastTextHeads(jieba_segment()).fit(train_texts, train_labels)
    ft_seconds = time.perf_counter() - started
    ft_rjieba = ft_jieba.with_tokenizer(rjieba_segment)
    same = sum(ft_jieba.tokenize(t) == rjieba_segment(t) for t in dev_texts)
    results["jieba_rjieba_identical_dev"] = f"{same}/{len(dev_texts)}"
    if not args.whole_only:
        log("training char TF-IDF + LogisticRegression …")
        started = time.perf_counter()
        charlr = CharLogReg().fit(train_texts, train_labels)
        lr_seconds = time.perf_counter() - started

        pipelines: list[tuple[str, Callable[[Sequence[str]], Any], float | None, bool]] = [
            ("project TriageModel.predict", model.predict, train_seconds, True),
            ("project predict_proba only", model.predict_proba, None, False),
            ("fastText + jieba", ft_jieba.predict, ft_seconds, True),
            ("fastText + rjieba", ft_rjieba.predict, None, True),
            ("char TF-IDF + LogReg", charlr.predict, lr_seconds, True),
        ]
        rows = []
        for name, predict, seconds, has_labels in pipelines:
            log(f"timing {name}: {args.runs} x {len(bulk)} petitions …")
            row: dict[str, Any] = {"pipeline": name, "train_seconds": seconds, **throughput(predict, bulk, args.runs)}
            if has_labels:
                row["accuracy"] = score(predict(dev_texts), truth, codes)
            rows.append(row)
        ft_rates = {r["pipeline"]: r["per_second"] for r in rows}
        for row in rows:
            row["ratio_fasttext_jieba"] = row["per_second"] / ft_rates["fastText + jieba"]
            row["ratio_fasttext_rjieba"] = row["per_second"] / ft_rates["fastText + rjieba"]
        results["pipelines"] = rows

        log(f"single-petition latency: {args.latency_calls} calls each …")
        results["latency"] = {
            "suggest": latency(model.suggest, dev_texts, args.latency_calls),
            "predict_one": latency(lambda t: model.predict([t]), dev_texts, args.latency_calls),
        }
    if args.whole_runs > 0:
        with tempfile.TemporaryDirectory(prefix="speed-model-") as tmp:
            model_dir = Path(args.model) if args.model else Path(tmp) / "model"
            if not args.model:
                from model.artifact import save_model

                save_model(model, model_dir, {"version": "speed-benchmark"})
            results["whole_process"] = whole_processes(model_dir, ft_jieba, real, args.whole_rows, args.whole_runs)
    results["machine"]["load_avg_at_end"] = os.getloadavg()

    print(f"\n{len(frame)} training petitions, {len(dev)} dev petitions; throughput on {len(bulk)} "
          f"(dev repeated), median of {args.runs} runs; project model: {source}")
    if args.train_sample:
        trained = "the baselines" if args.model else "every pipeline"
        print(f"SMOKE SETTINGS: {trained} trained on a sample of {args.train_sample} petitions")
    if results["pipelines"]:
        print_table(results["pipelines"])
        print("train s: the project's is fit_with_thresholds (3 out-of-fold fits and the final fit per head, on all cores; "
              "thresholds from the out-of-fold scores); "
              "the baselines' is one fit, tokenisation included")
    else:
        print("(--whole-only: no in-process figures)")
    print(f"jieba and rjieba tokens identical on {results['jieba_rjieba_identical_dev']} dev petitions")
    for name, lat in results.get("latency", {}).items():
        print(f"project {name}: median {lat['median_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms "
              f"over {lat['calls']} calls")
    if "whole_process" in results:
        print_whole(results["whole_process"])
    print(f"load average start {results['machine']['load_avg_at_start'][0]:.2f}, end "
          f"{results['machine']['load_avg_at_end'][0]:.2f} ({os.cpu_count()} CPUs)")

    if args.profile:
        log(f"profiling the project's predict on {args.profile} petitions …")
        report = profile(model.predict, repeat_to(dev_texts, args.profile))
        results["profile"] = report
        print(f"\ncProfile of TriageModel.predict on {args.profile} petitions:\n{report}")

    if args.json:
        target = Path(args.json)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".tmp")
        partial.write_text(json.dumps(results, ensure_ascii=False, indent=2, default=float), encoding="utf-8")
        partial.replace(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
