"""Feature extraction: jieba words, character n-grams, the title, the closing
request, and the taxonomy's keyword lists. Every step is a scikit-learn transformer; the rule
columns are added by TriageModel from the rule hits it computes once."""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import FeatureUnion
from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2
from sklearn.utils.validation import check_is_fitted

from model.taxonomy import Rule, Taxonomy
from model.text import ask_of, segment, title_of


# auto_wrap_output_keys=None: these transformers only return sparse matrices, and
# scikit-learn's set_output wrapper around transform() cost more than the work for one petition.
class KeywordFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
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
        check_is_fitted(self, "keyword_patterns_")
        rows = [self.values(text) for text in X]
        return sp.csr_matrix(np.asarray(rows, dtype=np.float64).reshape(-1, len(self.keyword_patterns_)))

    def values(self, text: str) -> np.ndarray:
        """One text's row of `transform`, dense: a value per keyword list, zeros included."""
        return np.asarray([np.log1p(len(p.findall(text))) for _, p in self.keyword_patterns_], dtype=np.float64)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray([name for name, _ in self.keyword_patterns_], dtype=object)


_BITS = 21  # every Unicode code point (+1) fits in 21 bits
_MASK = (1 << _BITS) - 1
_WHITE_SPACES = re.compile(r"\s\s+")
# CharNgramTfidf.fit counts the n-grams of this many characters at a time: their
# codes, text indices and their numbering take tens of bytes per character, which for
# a whole large ledger at once was most of training's peak memory.
FIT_CHUNK_CHARS = 2_000_000


# WordNgramTfidf weighs this many texts at a time: the (text, column) pairs of every
# word and word pair of a large ledger at once, as 64-bit integers, took several times
# the memory of the matrix they make.
WEIGH_CHUNK_ROWS = 10_000


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


def _tfidf(rows: np.ndarray, cols: np.ndarray, n_docs: int, idf: np.ndarray, dtype: Any) -> sp.csr_matrix:
    """Counts per (text, column) -> sublinear tf x idf, rows l2-normalised: TfidfVectorizer's
    weighting with sublinear_tf=True, smooth_idf=True, norm="l2", without normalize()'s
    input checks, which cost more than the work for one petition. (COO->CSR sums the
    duplicates in linear time; counting by sorting was slower for large batches.)"""
    if n_docs == 1:  # one petition, as the service asks: its row built directly, at half the cost
        counts = _one_row(*np.unique(cols, return_counts=True), len(idf), dtype)
    else:
        counts = sp.coo_matrix((np.ones(len(rows), dtype), (rows, cols)), shape=(n_docs, len(idf))).tocsr()
    return _weigh_counts(counts, idf)


def _positions(ordered: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each key sits in the sorted array `ordered`, and which keys are in it at all
    (the positions of the others are not to be used)."""
    at = np.searchsorted(ordered, keys)
    found = at < len(ordered)
    found[found] = ordered[at[found]] == keys[found]
    return at, found


def _one_row(columns: np.ndarray, per_column: np.ndarray, width: int, dtype: Any) -> sp.csr_matrix:
    """The counts of one text as a one-row matrix; `columns` distinct and in order."""
    return sp.csr_matrix((per_column.astype(dtype), columns.astype(np.int32), np.array([0, len(columns)], np.int32)),
                         shape=(1, width))


def _weigh_counts(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    # In place: the same operations, without three temporary copies of the values.
    np.log(counts.data, out=counts.data)
    counts.data += 1
    counts.data *= idf[counts.indices]
    inplace_csr_row_normalize_l2(counts)
    return counts


def _distinct(values: np.ndarray) -> np.ndarray:
    """np.unique(values) by sorting: numpy 2's default hashing was about 15 times
    slower on the millions of (text, word) keys of a large ledger."""
    ordered = np.sort(values)
    first = np.ones(len(ordered), bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return ordered[first]


def stack_rows(blocks: list[sp.csr_matrix]) -> sp.csr_matrix:
    """sp.vstack(blocks, format="csr"), taking the blocks out of `blocks` as they are
    copied: the matrix's arrays are reserved at once but only filled block by block,
    and each block is let go once copied, so the blocks and the matrix they make are
    never in memory together in whole."""
    if len(blocks) == 1:
        return blocks.pop()
    shape = (sum(b.shape[0] for b in blocks), blocks[0].shape[1])
    nnz = sum(b.nnz for b in blocks)
    index_type = np.int32 if max(nnz, shape[1]) <= np.iinfo(np.int32).max else np.int64
    data = np.empty(nnz, np.result_type(*(b.dtype for b in blocks)))
    indices = np.empty(nnz, index_type)
    indptr = np.zeros(shape[0] + 1, index_type)
    row = at = 0
    while blocks:
        block = blocks.pop(0)
        data[at:at + block.nnz] = block.data
        indices[at:at + block.nnz] = block.indices
        indptr[row + 1:row + 1 + block.shape[0]] = block.indptr[1:] + at
        row, at = row + block.shape[0], at + block.nnz
        del block
    return sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)


def _idf(doc_freq: np.ndarray, n_docs: int, dtype: Any) -> np.ndarray:
    return (np.log((1 + n_docs) / (1 + doc_freq.astype(dtype))) + 1).astype(dtype)


class CharNgramTfidf(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """TfidfVectorizer(analyzer="char", lowercase=True, sublinear_tf=True, min_df,
    max_features) with n-grams counted by numpy instead of Python dictionaries.

    Same vocabulary, same weights (tests/test_fast_vectorizers.py checks it against
    scikit-learn); faster to transform, and character n-grams were the largest cost
    of a prediction.

    Parameters
    ----------
    max_n : int, default=3
        Longest n-gram (at most 3: three 21-bit code points fill a 64-bit code).
    min_df : int, default=2
        Fewest texts an n-gram must occur in.
    max_features : int, optional
        Keep only the most frequent n-grams.
    dtype : numpy dtype, default=float32

    Attributes
    ----------
    codes_ : ndarray of uint64
        The vocabulary, each n-gram as one integer, in scikit-learn's order.
    idf_ : ndarray
        Inverse document frequency of each n-gram.
    """

    def __init__(self, max_n: int = 3, min_df: int = 2, max_features: int | None = None,
                 dtype: Any = np.float32) -> None:
        self.max_n = max_n
        self.min_df = min_df
        self.max_features = max_features
        self.dtype = dtype

    def _texts(self, X: Iterable[str]) -> list[str]:
        if self.max_n > 3:
            raise ValueError(f"max_n must be at most 3 (three 21-bit fields fill 63 bits), got {self.max_n}")
        return [_WHITE_SPACES.sub(" ", text.lower()) for text in X]

    def _codes(self, X: Iterable[str]) -> tuple[np.ndarray, np.ndarray, int]:
        texts = self._texts(X)
        return *_ngram_codes(texts, self.max_n), len(texts)

    def fit(self, X: Iterable[str], y: object = None) -> CharNgramTfidf:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Iterable[str], y: object = None) -> sp.csr_matrix:
        return stack_rows(self.fit_transform_blocks(X))

    def fit_transform_blocks(self, X: Iterable[str]) -> list[sp.csr_matrix]:
        """The rows of `fit_transform(X)` as consecutive blocks of rows (a large ledger's
        features are stacked from them block by block, `stack_rows`)."""
        texts = self._texts(X)
        # Texts are read a block at a time (FIT_CHUNK_CHARS; a text is never split), twice:
        # once for the vocabulary, document frequencies and totals, added up block by
        # block, then again to weigh each block's kept n-grams, as `transform` does.
        # Keeping every block's counts until the vocabulary was known took several times
        # the matrix, and sorting each block with its inverse took more time than
        # counting it twice.
        blocks, start, size = [], 0, 0
        for end, text in enumerate(texts, start=1):
            size += len(text)
            if size >= FIT_CHUNK_CHARS or end == len(texts):
                blocks.append((start, end))
                start, size = end, 0
        # The n-grams are numbered in the order they are first seen, through pandas' hash
        # tables: looking millions of codes up in a sorted vocabulary by bisection, or
        # sorting each block with its inverse, took several times as long.
        seen = np.zeros(0, np.uint64)
        doc_freq, totals = np.zeros(0, np.int64), np.zeros(0, np.int64)
        for start, end in blocks:
            codes, rows = _ngram_codes(texts[start:end], self.max_n)
            local, block_vocabulary = pd.factorize(codes)
            del codes
            number = pd.Index(seen).get_indexer(block_vocabulary)
            new = number < 0
            number[new] = len(seen) + np.arange(new.sum())
            seen = np.concatenate([seen, block_vocabulary[new]])
            doc_freq, totals = (np.concatenate([counts, np.zeros(new.sum(), np.int64)]) for counts in (doc_freq, totals))
            # Summed per (text, n-gram), each pair is one stored entry: counting entries per
            # column gives the document frequency.
            every = sp.csr_matrix((np.ones(len(rows), np.int32), (rows, local)), shape=(end - start, len(block_vocabulary)))
            every.sum_duplicates()
            doc_freq[number] += np.bincount(every.indices, minlength=len(block_vocabulary))
            totals[number] += np.bincount(local, minlength=len(block_vocabulary))
            del every, rows, local
        order = np.argsort(seen)
        vocabulary, doc_freq, totals = seen[order], doc_freq[order], totals[order]
        del seen, order
        keep = doc_freq >= self.min_df
        if self.max_features is not None and keep.sum() > self.max_features:
            # scikit-learn's own cut: the most frequent terms by total count, ranked by
            # the same argsort over float32 totals in vocabulary order, so ties fall alike.
            ranked = (-totals.astype(self.dtype)[keep]).argsort()[: self.max_features]
            chosen = np.zeros(len(vocabulary), bool)
            chosen[np.flatnonzero(keep)[ranked]] = True
            keep = chosen
        self.codes_ = vocabulary[keep]
        self.idf_ = _idf(doc_freq[keep], len(texts), self.dtype)
        del vocabulary, doc_freq, totals, keep
        columns = pd.Index(self.codes_)
        weighed = []
        for start, end in blocks:
            codes, rows = _ngram_codes(texts[start:end], self.max_n)
            cols = columns.get_indexer(codes)
            known = cols >= 0
            weighed.append(_tfidf(rows[known], cols[known], end - start, self.idf_, self.dtype))
        return weighed

    def transform(self, X: Iterable[str]) -> sp.csr_matrix:
        check_is_fitted(self, "idf_")
        return self._weigh(*self._codes(X))

    def _weigh(self, codes: np.ndarray, rows: np.ndarray, n_docs: int) -> sp.csr_matrix:
        if n_docs == 1:
            # One petition, as the service asks: its distinct n-grams looked up, in order, rather
            # than every occurrence at random (the search then moves forward through the vocabulary).
            distinct, per_code = np.unique(codes, return_counts=True)
            cols, known = _positions(self.codes_, distinct)
            return _weigh_counts(_one_row(cols[known], per_code[known], len(self.idf_), self.dtype), self.idf_)
        cols, known = _positions(self.codes_, codes)
        return _tfidf(rows[known], cols[known], n_docs, self.idf_, self.dtype)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        names = []
        for code in self.codes_.tolist():
            fields = [(code >> (_BITS * (self.max_n - 1 - i))) & _MASK for i in range(self.max_n)]
            names.append("".join(chr(f - 1) for f in fields if f))
        return np.asarray(names, dtype=object)


class WordNgramTfidf(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """TfidfVectorizer(tokenizer, preprocessor, token_pattern=None, lowercase=False,
    ngram_range=(1, max_n), min_df, sublinear_tf=True) with the n-grams looked up
    by numpy: words become integers once, and a word pair is found by its two
    integers instead of by building the string "w1 w2" and hashing it.

    Same vocabulary, same weights (tests/test_fast_vectorizers.py checks it).

    Parameters
    ----------
    tokenizer : callable
        Text to tokens (`model.text.segment`).
    preprocessor : callable, optional
        Text to the part that is read (the title, the closing request).
    max_n : {1, 2}, default=2
        Words, or words and word pairs.
    min_df : int, default=2
        Fewest texts an n-gram must occur in.
    dtype : numpy dtype, default=float32

    Attributes
    ----------
    words_ : dict of str to int
        Word ids of the vocabulary.
    names_ : ndarray of str
        Feature names, as scikit-learn's `get_feature_names_out`.
    idf_ : ndarray
        Inverse document frequency of each column.
    """

    def __init__(self, tokenizer: Any, preprocessor: Any = None, max_n: int = 2, min_df: int = 2,
                 dtype: Any = np.float32) -> None:
        self.tokenizer = tokenizer
        self.preprocessor = preprocessor
        self.max_n = max_n
        self.min_df = min_df
        self.dtype = dtype

    def _word_ids(self, X: Iterable[str], words: dict[str, int], grow: bool) -> tuple[np.ndarray, np.ndarray]:
        """The id in `words` of every token of every text, one flat array (-1 for a word
        not there, or, with `grow`, a new id added to `words`; 32-bit, as a vocabulary
        never has billions of words), and each text's number of tokens. Tokens become
        integers text by text: the strings of a large ledger's tokens, kept all at once,
        took more memory than everything else in the fit."""
        if self.max_n not in (1, 2):
            raise ValueError(f"max_n must be 1 or 2, got {self.max_n}")
        prepare = self.preprocessor or (lambda text: text)
        parts, lengths = [], []
        for text in X:
            tokens = self.tokenizer(prepare(text))
            found = (words.setdefault(t, len(words)) for t in tokens) if grow else map(words.get, tokens, repeat(-1))
            parts.append(np.fromiter(found, dtype=np.int32, count=len(tokens)))
            lengths.append(len(tokens))
        ids = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        return ids, np.asarray(lengths, dtype=np.int64)

    def _entries(self, ids: np.ndarray, lengths: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
        """(text, word id) of every known word, and (text, pair key) of every word pair,
        for word ids below `size` (-1: unknown)."""
        owner = np.repeat(np.arange(len(lengths)), lengths)
        known = ids >= 0
        if self.max_n == 1:
            return owner[known], ids[known], np.zeros(0, np.int64), np.zeros(0, np.int64)
        pair = (owner[:-1] == owner[1:]) & known[:-1] & known[1:]
        keys = ids[:-1][pair].astype(np.int64) * size + ids[1:][pair]
        return owner[known], ids[known], owner[:-1][pair], keys

    def fit(self, X: Iterable[str], y: object = None) -> WordNgramTfidf:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Iterable[str], y: object = None) -> sp.csr_matrix:
        return stack_rows(self.fit_transform_blocks(X))

    def fit_transform_blocks(self, X: Iterable[str]) -> list[sp.csr_matrix]:
        """The rows of `fit_transform(X)` as consecutive blocks of rows (a large ledger's
        features are stacked from them block by block, `stack_rows`)."""
        every: dict[str, int] = {}
        ids, lengths = self._word_ids(X, every, grow=True)
        n_docs = len(lengths)
        size = max(len(every), 1)
        # Document frequency: each (text, word) and (text, pair) counted once, a block of
        # texts at a time (WEIGH_CHUNK_ROWS; a text is never split). Each block's pairs are
        # kept as its distinct pairs and the number of its texts with each, merged at the
        # end: a pair's every text, kept until then, took several times the matrix.
        ends = np.concatenate([[0], np.cumsum(lengths)])
        word_df = np.zeros(len(every), np.int64)
        pair_parts, pair_counts = [], []
        for start in range(0, n_docs, WEIGH_CHUNK_ROWS):
            stop = min(start + WEIGH_CHUNK_ROWS, n_docs)
            word_rows, word_ids, pair_rows, pair_keys = self._entries(ids[ends[start]:ends[stop]], lengths[start:stop],
                                                                      len(every))
            word_df += np.bincount(_distinct(word_rows * size + word_ids) % size, minlength=len(every))
            # (pair, text) in that order: distinct, they come sorted by pair.
            in_texts = _distinct(pair_keys * (stop - start) + pair_rows) // (stop - start)
            first = np.ones(len(in_texts), bool)
            first[1:] = in_texts[1:] != in_texts[:-1]
            pair_parts.append(in_texts[first])
            pair_counts.append(np.diff(np.append(np.flatnonzero(first), len(in_texts))))
            del word_rows, word_ids, pair_rows, pair_keys, in_texts, first
        pairs_seen, where = np.unique(np.concatenate(pair_parts), return_inverse=True)
        pair_df = np.bincount(where, np.concatenate(pair_counts), minlength=len(pairs_seen)).astype(np.int64)
        del pair_parts, pair_counts, where
        kept_words = np.flatnonzero(word_df >= self.min_df)
        pair_kept = pair_df >= self.min_df
        # A pair seen in min_df texts has both its words in those texts, so every word of
        # a kept pair is a kept word: the vocabulary needs only the kept words' ids.
        vocabulary = list(every)
        self.words_ = {vocabulary[i]: n for n, i in enumerate(kept_words)}
        renumber = np.full(len(every), -1, np.int64)
        renumber[kept_words] = np.arange(len(kept_words))
        first, second = renumber[pairs_seen[pair_kept] // size], renumber[pairs_seen[pair_kept] % size]
        names = [vocabulary[i] for i in kept_words] + [f"{vocabulary[kept_words[a]]} {vocabulary[kept_words[b]]}"
                                                       for a, b in zip(first.tolist(), second.tolist(), strict=True)]
        # scikit-learn's column order: feature names sorted as strings.
        order = sorted(range(len(names)), key=names.__getitem__)
        column = np.empty(len(names), np.int64)
        column[order] = np.arange(len(names))
        self.names_ = np.asarray([names[i] for i in order], dtype=object)
        self.word_columns_ = column[: len(kept_words)]
        keys = first * len(kept_words) + second
        by_key = np.argsort(keys)
        self.pair_keys_, self.pair_columns_ = keys[by_key], column[len(kept_words):][by_key]
        doc_freq = np.concatenate([word_df[kept_words], pair_df[pair_kept][by_key]])
        self.idf_ = np.empty(len(names), self.dtype)
        self.idf_[np.concatenate([self.word_columns_, self.pair_columns_])] = _idf(doc_freq, n_docs, self.dtype)
        del names, order, column, pairs_seen, pair_df, doc_freq
        ids = renumber.astype(np.int32)[ids]  # every id is >= 0 here: renumber never reads index -1
        return self._weigh_blocks(ids, lengths)

    def transform(self, X: Iterable[str]) -> sp.csr_matrix:
        check_is_fitted(self, "idf_")
        ids, lengths = self._word_ids(X, self.words_, grow=False)
        return self._weigh_one(ids) if len(lengths) == 1 else self._weigh(ids, lengths)

    def _weigh_one(self, ids: np.ndarray) -> sp.csr_matrix:
        """`_weigh` of one text, as the service asks: the same columns, without the
        bookkeeping of which text each word belongs to, which cost more than the lookups."""
        known = ids >= 0
        cols = self.word_columns_[ids[known]]
        if self.max_n == 2:
            pair = known[:-1] & known[1:]
            keys = ids[:-1][pair].astype(np.int64) * len(self.words_) + ids[1:][pair]
            at, found = _positions(self.pair_keys_, keys)
            cols = np.concatenate([cols, self.pair_columns_[at[found]]])
        return _tfidf(cols, cols, 1, self.idf_, self.dtype)

    def _weigh(self, ids: np.ndarray, lengths: np.ndarray) -> sp.csr_matrix:
        return stack_rows(self._weigh_blocks(ids, lengths))

    def _weigh_blocks(self, ids: np.ndarray, lengths: np.ndarray) -> list[sp.csr_matrix]:
        # A block of texts at a time: each row's weights depend on that row alone.
        ends = np.concatenate([[0], np.cumsum(lengths)])
        return [self._weigh_rows(ids[ends[start]:ends[min(start + WEIGH_CHUNK_ROWS, len(lengths))]],
                                 lengths[start:start + WEIGH_CHUNK_ROWS])
                for start in range(0, max(len(lengths), 1), WEIGH_CHUNK_ROWS)]

    def _weigh_rows(self, ids: np.ndarray, lengths: np.ndarray) -> sp.csr_matrix:
        word_rows, word_ids, pair_rows, pair_keys = self._entries(ids, lengths, len(self.words_))
        at, found = _positions(self.pair_keys_, pair_keys)
        rows = np.concatenate([word_rows, pair_rows[found]])
        cols = np.concatenate([self.word_columns_[word_ids], self.pair_columns_[at[found]]])
        return _tfidf(rows, cols, len(lengths), self.idf_, self.dtype)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return self.names_.copy()

    @property
    def vocabulary_(self) -> dict[str, int]:
        """Feature name -> column, as scikit-learn's vectorizers have it."""
        return {name: column for column, name in enumerate(self.names_)}


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
    # Input is normalised once by TriageModel, so no vectorizer repeats it. The
    # vectorizers are scikit-learn's TF-IDF computed faster (tests/test_fast_vectorizers.py).
    words = WordNgramTfidf(segment, max_n=2, min_df=2)
    # Character n-grams survive the typos, dialect spellings and missing
    # punctuation that break word segmentation.
    chars = CharNgramTfidf(max_n=3, min_df=2, max_features=max_char_features)
    title = WordNgramTfidf(segment, title_of, max_n=1, min_df=1)
    # The closing request read again on its own: the taxonomy labels what is asked,
    # and a petition that tells of pay but asks for a school's fees to be checked
    # belongs to the school's authority (its weight: docs/model.md, "Features").
    ask = WordNgramTfidf(segment, ask_of, max_n=1, min_df=2)
    return FeatureUnion([
        ("word", words), ("char", chars), ("title", title), ("ask", ask if ask_weight else "drop"),
        ("keywords", KeywordFeatures(taxonomy)),
    ], transformer_weights={"ask": ask_weight})
