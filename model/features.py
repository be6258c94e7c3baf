"""Feature extraction: jieba words, character n-grams, the title, and the
taxonomy's keyword lists. Every step is a scikit-learn transformer; the rule
columns are added by TriageModel from the rule hits it computes once."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import normalize

from model.taxonomy import Rule, Taxonomy
from model.text import ask_of, segment, title_of


class KeywordFeatures(TransformerMixin, BaseEstimator):
    """log(1 + hits) of each label's keyword list, on normalised text.

    The lists come from the province's taxonomy file, so an added keyword takes
    effect at the next training run; the model learns how far to trust it."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy

    def fit(self, X: Iterable[str], y: object = None) -> KeywordFeatures:
        self.keyword_patterns_ = []
        for head in ("division", "key_group"):
            for label in self.taxonomy.labels(head):
                if label.keywords:
                    words = sorted(label.keywords, key=len, reverse=True)
                    pattern = re.compile("|".join(re.escape(w) for w in words))
                    self.keyword_patterns_.append((f"kw:{head}:{label.code}", pattern))
        return self

    def transform(self, X: Iterable[str]) -> sp.csr_matrix:
        rows = [[np.log1p(len(p.findall(text))) for _, p in self.keyword_patterns_] for text in X]
        return sp.csr_matrix(np.asarray(rows, dtype=np.float64).reshape(-1, len(self.keyword_patterns_)))

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray([name for name, _ in self.keyword_patterns_], dtype=object)


_BITS = 21  # every Unicode code point (+1) fits in 21 bits
_MASK = (1 << _BITS) - 1
_WHITE_SPACES = re.compile(r"\s\s+")


def _ngram_codes(texts: list[str], max_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every character n-gram (n = 1..max_n) of every text as one integer, with the
    index of its text. The code points (+1) are left-aligned in 21-bit fields and
    zero-padded, so integer order is string order ("a" < "ab" < "b"), the order
    scikit-learn gives its vocabulary. One pass of numpy over all texts at once."""
    points = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64) + 1
    owner = np.repeat(np.arange(len(texts)), [len(t) for t in texts])
    codes, rows = [], []
    gram = points << np.uint64(_BITS * (max_n - 1))
    for n in range(1, max_n + 1):
        if n > 1:
            gram = gram[:-1] | (points[n - 1:] << np.uint64(_BITS * (max_n - n)))
        inside = owner[: len(gram)] == owner[n - 1:]  # not straddling two texts
        codes.append(gram[inside])
        rows.append(owner[: len(gram)][inside])
    return np.concatenate(codes), np.concatenate(rows)


class CharNgramTfidf(TransformerMixin, BaseEstimator):
    """TfidfVectorizer(analyzer="char", lowercase=True, sublinear_tf=True, min_df,
    max_features) with n-grams counted by numpy instead of Python dictionaries.

    Same vocabulary, same weights (tests/test_char_ngrams.py checks it against
    scikit-learn); about ten times faster, and character n-grams are most of
    what a prediction costs."""

    def __init__(self, max_n: int = 3, min_df: int = 2, max_features: int | None = None,
                 dtype: Any = np.float32) -> None:
        self.max_n = max_n
        self.min_df = min_df
        self.max_features = max_features
        self.dtype = dtype

    def _codes(self, X: Iterable[str]) -> tuple[np.ndarray, np.ndarray, int]:
        if self.max_n > 3:
            raise ValueError(f"max_n must be at most 3 (three 21-bit fields fill 63 bits), got {self.max_n}")
        texts = [_WHITE_SPACES.sub(" ", text.lower()) for text in X]
        return *_ngram_codes(texts, self.max_n), len(texts)

    def fit(self, X: Iterable[str], y: object = None) -> CharNgramTfidf:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Iterable[str], y: object = None) -> sp.csr_matrix:
        codes, rows, n_docs = self._codes(X)
        vocabulary, column = np.unique(codes, return_inverse=True)
        # Summed per (text, n-gram), each pair is one stored entry: counting entries per
        # column gives the document frequency.
        every = sp.csr_matrix((np.ones(len(codes), np.int32), (rows, column)), shape=(n_docs, len(vocabulary)))
        every.sum_duplicates()
        doc_freq = np.bincount(every.indices, minlength=len(vocabulary))
        keep = doc_freq >= self.min_df
        if self.max_features is not None and keep.sum() > self.max_features:
            # scikit-learn's own cut: the most frequent terms by total count, ranked by
            # the same argsort over float32 totals in vocabulary order, so ties fall alike.
            totals = np.bincount(column, minlength=len(vocabulary)).astype(self.dtype)
            ranked = (-totals[keep]).argsort()[: self.max_features]
            chosen = np.zeros(len(vocabulary), bool)
            chosen[np.flatnonzero(keep)[ranked]] = True
            keep = chosen
        self.codes_ = vocabulary[keep]
        self.idf_ = (np.log((1 + n_docs) / (1 + doc_freq[keep].astype(self.dtype))) + 1).astype(self.dtype)
        return self._weigh(codes, rows, n_docs)

    def transform(self, X: Iterable[str]) -> sp.csr_matrix:
        return self._weigh(*self._codes(X))

    def _weigh(self, codes: np.ndarray, rows: np.ndarray, n_docs: int) -> sp.csr_matrix:
        cols = np.searchsorted(self.codes_, codes)
        known = cols < len(self.codes_)
        known[known] = self.codes_[cols[known]] == codes[known]
        counts = sp.csr_matrix((np.ones(known.sum(), self.dtype), (rows[known], cols[known])),
                               shape=(n_docs, len(self.codes_)))
        counts.sum_duplicates()
        counts.data = (np.log(counts.data) + 1) * self.idf_[counts.indices]
        return normalize(counts, norm="l2", copy=False)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        names = []
        for code in self.codes_.tolist():
            fields = [(code >> (_BITS * (self.max_n - 1 - i))) & _MASK for i in range(self.max_n)]
            names.append("".join(chr(f - 1) for f in fields if f))
        return np.asarray(names, dtype=object)


def rule_matrix(hits: list[list[tuple[Rule, Any]]], rules: tuple[Rule, ...]) -> sp.csr_matrix:
    """One 0/1 column per taxonomy rule, from rule hits computed once per petition
    (the same hits drive the decision and the explanation)."""
    index = {rule.id: i for i, rule in enumerate(rules)}
    rows, cols = [], []
    for row, row_hits in enumerate(hits):
        for rule, _ in row_hits:
            rows.append(row)
            cols.append(index[rule.id])
    data = np.ones(len(rows), dtype=np.float64)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(hits), len(rules)))


def rule_feature_names(rules: tuple[Rule, ...]) -> list[str]:
    return [f"keywords__rule:{rule.id}" for rule in rules]


def build_features(taxonomy: Taxonomy, max_char_features: int = 150_000, ask_weight: float = 0.5) -> FeatureUnion:
    # Input is normalised once by TriageModel, so no vectorizer repeats it.
    words = TfidfVectorizer(
        preprocessor=None, tokenizer=segment, token_pattern=None, lowercase=False,
        ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32,
    )
    # Character n-grams survive the typos, dialect spellings and missing
    # punctuation that break word segmentation.
    chars = CharNgramTfidf(max_n=3, min_df=2, max_features=max_char_features, dtype=np.float32)
    title = TfidfVectorizer(
        preprocessor=title_of, tokenizer=segment, token_pattern=None, lowercase=False,
        min_df=1, sublinear_tf=True, dtype=np.float32,
    )
    # The closing request read again on its own: the taxonomy labels what is asked,
    # and a petition that tells of pay but asks for a school's fees to be checked
    # belongs to the school's authority (weight: benchmarks/model_choices.py).
    ask = TfidfVectorizer(
        preprocessor=ask_of, tokenizer=segment, token_pattern=None, lowercase=False,
        min_df=2, sublinear_tf=True, dtype=np.float32,
    )
    # The keyword block stays last: TriageModel weighs it per head by position.
    return FeatureUnion([
        ("word", words), ("char", chars), ("title", title), ("ask", ask if ask_weight else "drop"), ("keywords", KeywordFeatures(taxonomy)),
    ], transformer_weights={"ask": ask_weight})
