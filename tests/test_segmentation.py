from __future__ import annotations

import jieba
import pytest

from model.text import join_fields, normalize, segment
from training.corpus import generate


@pytest.mark.parametrize("row", generate(n=60, seed=3), ids=lambda r: r["id"])
def test_rjieba_segments_exactly_like_jieba(row):
    text = normalize(join_fields(row["title"], row["body"]))
    assert segment(text) == [w for w in jieba.lcut(text) if not w.isspace()]


def test_normalize_keeps_offsets():
    text = "１２３３３打不通！ＡＢＣ，我们"
    assert len(normalize(text)) == len(text)
    assert normalize(text).startswith("12333")
