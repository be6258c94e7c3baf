"""Feature extraction: jieba words, character n-grams, the title, and the
taxonomy's keyword lists and rules. Every step is a scikit-learn transformer."""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from model.taxonomy import Taxonomy
from model.text import normalize, segment, title_of


def title_text(text: str) -> str:
    return normalize(title_of(text))


class KeywordFeatures(TransformerMixin, BaseEstimator):
    """log(1 + hits) of each label's keyword list, and one 0/1 column per rule.

    The lists come from the province's taxonomy file, so an added keyword takes
    effect at the next training run; the model learns how far to trust it."""

    def __init__(self, taxonomy: Taxonomy, scale: float = 1.0) -> None:
        self.taxonomy = taxonomy
        self.scale = scale

    def fit(self, X: Iterable[str], y: object = None) -> KeywordFeatures:
        self.keyword_patterns_ = []
        for head in ("division", "key_group"):
            for label in self.taxonomy.labels(head):
                if label.keywords:
                    words = sorted(label.keywords, key=len, reverse=True)
                    pattern = re.compile("|".join(re.escape(w) for w in words))
                    self.keyword_patterns_.append((f"kw:{head}:{label.code}", pattern))
        self.rules_ = list(self.taxonomy.rules)
        return self

    def transform(self, X: Iterable[str]) -> sp.csr_matrix:
        rows = []
        for text in X:
            text = normalize(text)
            row = [np.log1p(len(p.findall(text))) for _, p in self.keyword_patterns_]
            row += [1.0 if rule.matches(text) else 0.0 for rule in self.rules_]
            rows.append(row)
        width = len(self.keyword_patterns_) + len(self.rules_)
        # TF-IDF rows have unit norm; `scale` keeps these few dense columns from
        # dominating the margin of a linear model.
        return sp.csr_matrix(self.scale * np.asarray(rows, dtype=np.float64).reshape(-1, width))

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        names = [name for name, _ in self.keyword_patterns_] + [f"rule:{r.id}" for r in self.rules_]
        return np.asarray(names, dtype=object)


def build_features(taxonomy: Taxonomy, max_char_features: int = 150_000) -> FeatureUnion:
    words = TfidfVectorizer(
        preprocessor=normalize, tokenizer=segment, token_pattern=None, lowercase=False,
        ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32,
    )
    # Character n-grams survive the typos, dialect spellings and missing
    # punctuation that break word segmentation.
    chars = TfidfVectorizer(
        preprocessor=normalize, analyzer="char", ngram_range=(1, 3), min_df=2,
        sublinear_tf=True, max_features=max_char_features, dtype=np.float32,
    )
    title = TfidfVectorizer(
        preprocessor=title_text, tokenizer=segment, token_pattern=None, lowercase=False,
        min_df=1, sublinear_tf=True, dtype=np.float32,
    )
    return FeatureUnion([
        ("word", words), ("char", chars), ("title", title), ("keywords", KeywordFeatures(taxonomy)),
    ])
