"""CharNgramTfidf and WordNgramTfidf must be scikit-learn's TF-IDF, only faster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from model.features import CharNgramTfidf, WordNgramTfidf
from model.text import ask_of, segment, title_of
from training.corpus import generate
from training.train import texts_of

ODD = ["", "a", "ab", "  两个  空格\n\n换行\t制表", "İstanbul ÀB", "𠮷野家 emoji 🙂🙂", "全角ＡＢＣ１２３", "x"]


def reference(max_features: int | None) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True,
                           max_features=max_features, dtype=np.float32)


@pytest.mark.parametrize("max_features", [None, 500])
def test_same_vocabulary_and_weights_as_scikit_learn(max_features):
    texts = texts_of(pd.DataFrame(generate(n=200, seed=3))) + ODD * 2
    ours, theirs = CharNgramTfidf(min_df=2, max_features=max_features), reference(max_features)
    a, b = ours.fit_transform(texts), theirs.fit_transform(texts)
    assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())
    np.testing.assert_allclose(a.toarray(), b.toarray(), rtol=1e-5, atol=1e-6)
    unseen = ["从没见过的字：龘靐", "", *ODD]
    np.testing.assert_allclose(ours.transform(unseen).toarray(), theirs.transform(unseen).toarray(), rtol=1e-5, atol=1e-6)
    assert a.dtype == np.float32


def test_more_than_three_characters_per_gram_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="at most 3"):
        CharNgramTfidf(max_n=4).fit(["一段文字"])


@pytest.mark.parametrize(("preprocessor", "max_n", "min_df"), [(None, 2, 2), (title_of, 1, 1), (ask_of, 1, 2), (None, 2, 1)])
def test_same_words_and_weights_as_scikit_learn(preprocessor, max_n, min_df):
    texts = texts_of(pd.DataFrame(generate(n=200, seed=5))) + ODD * 2 + ["AT&T 0769-12345 c++", "工资 工资 工资"]
    ours = WordNgramTfidf(segment, preprocessor, max_n=max_n, min_df=min_df)
    theirs = TfidfVectorizer(tokenizer=segment, preprocessor=preprocessor, token_pattern=None, lowercase=False,
                             ngram_range=(1, max_n), min_df=min_df, sublinear_tf=True, dtype=np.float32)
    a, b = ours.fit_transform(texts), theirs.fit_transform(texts)
    assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())
    np.testing.assert_allclose(a.toarray(), b.toarray(), rtol=1e-5, atol=1e-6)
    unseen = ["从没见过的词：龘靐", "", *ODD, texts[0][::-1]]
    np.testing.assert_allclose(ours.transform(unseen).toarray(), theirs.transform(unseen).toarray(), rtol=1e-5, atol=1e-6)


def test_word_vocabulary_maps_names_to_columns_like_scikit_learn():
    texts = texts_of(pd.DataFrame(generate(n=100, seed=5)))
    ours = WordNgramTfidf(segment).fit(texts)
    theirs = TfidfVectorizer(tokenizer=segment, token_pattern=None, lowercase=False, ngram_range=(1, 2),
                             min_df=2, sublinear_tf=True).fit(texts)
    assert ours.vocabulary_ == theirs.vocabulary_


def test_counting_a_large_ledger_block_by_block_gives_the_same_features(monkeypatch):
    """CharNgramTfidf.fit counts FIT_CHUNK_CHARS characters at a time to bound its memory;
    blocks of a few petitions must give what one block gives, and what scikit-learn gives."""
    import model.features

    texts = texts_of(pd.DataFrame(generate(n=200, seed=3))) + ODD * 2
    whole = CharNgramTfidf(min_df=2, max_features=500)
    expected = whole.fit_transform(texts)
    monkeypatch.setattr(model.features, "FIT_CHUNK_CHARS", 1500)
    blocks = CharNgramTfidf(min_df=2, max_features=500)
    got = blocks.fit_transform(texts)
    assert list(blocks.get_feature_names_out()) == list(whole.get_feature_names_out())
    np.testing.assert_array_equal(blocks.idf_, whole.idf_)
    np.testing.assert_array_equal(got.toarray(), expected.toarray())
    np.testing.assert_allclose(got.toarray(), reference(500).fit_transform(texts).toarray(), rtol=1e-5, atol=1e-6)


def test_one_text_alone_gets_the_row_it_gets_among_others():
    # The service transforms one petition at a time, by a path of its own: it must give
    # the very same values, not merely close ones, or a decision could differ.
    texts = texts_of(pd.DataFrame(generate(n=100, seed=7))) + ODD
    for vectorizer in (CharNgramTfidf(min_df=2, max_features=2000), WordNgramTfidf(segment), WordNgramTfidf(segment, ask_of, 1)):
        vectorizer.fit(texts[:80])
        together = vectorizer.transform(texts)
        for i, text in enumerate(texts):
            alone = vectorizer.transform([text])
            assert alone.dtype == together.dtype
            np.testing.assert_array_equal(alone.indices, together[i].indices)
            np.testing.assert_array_equal(alone.data, together[i].data)
