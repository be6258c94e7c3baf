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

from model.taxonomy import Rule, Taxonomy
from model.text import segment, title_of


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


def build_features(taxonomy: Taxonomy, max_char_features: int = 150_000) -> FeatureUnion:
    # Input is normalised once by TriageModel, so no vectorizer repeats it.
    words = TfidfVectorizer(
        preprocessor=None, tokenizer=segment, token_pattern=None, lowercase=False,
        ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32,
    )
    # Character n-grams survive the typos, dialect spellings and missing
    # punctuation that break word segmentation.
    chars = TfidfVectorizer(
        preprocessor=None, analyzer="char", ngram_range=(1, 3), min_df=2,
        sublinear_tf=True, max_features=max_char_features, dtype=np.float32,
    )
    title = TfidfVectorizer(
        preprocessor=title_of, tokenizer=segment, token_pattern=None, lowercase=False,
        min_df=1, sublinear_tf=True, dtype=np.float32,
    )
    return FeatureUnion([
        ("word", words), ("char", chars), ("title", title), ("keywords", KeywordFeatures(taxonomy)),
    ])
