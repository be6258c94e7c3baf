from __future__ import annotations

from pathlib import Path

import jieba
import pandas as pd
import pytest

from model.text import join_fields, normalize, segment
from training.corpus import generate

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def jieba_tokens(text: str) -> list[str]:
    return [w for w in jieba.lcut(text) if not w.isspace()]


@pytest.mark.parametrize("row", generate(n=60, seed=3), ids=lambda r: r["id"])
def test_rjieba_segments_exactly_like_jieba(row):
    text = normalize(join_fields(row["title"], row["body"]))
    assert segment(text) == jieba_tokens(text)


@pytest.mark.parametrize("text", [
    "2016.4.19我去了人社局，电话0769-12345，网址12345.dg.gov.cn/input.do",
    "工资涨了80%--真的吗...工号t50337-2018，每月800-1500元，C++和C#培训",
    "A市B3区于2019年3月1日-2020年6月30日期间，共计26.27.28三天",
])
def test_ascii_runs_split_like_jieba(text):
    assert segment(normalize(text)) == jieba_tokens(normalize(text))


@pytest.mark.skipif(not (REAL / "dev.csv").exists(), reason=f"needs the real petitions at {REAL}/dev.csv (../shared)")
def test_rjieba_matches_jieba_on_real_petitions():
    frame = pd.read_csv(REAL / "dev.csv", dtype=str, keep_default_na=False)
    for title, body in zip(frame["title"], frame["body"], strict=True):
        text = normalize(join_fields(title, body))
        assert segment(text) == jieba_tokens(text)


def test_normalize_keeps_offsets():
    text = "１２３３３打不通！ＡＢＣ，我们"
    assert len(normalize(text)) == len(text)
    assert normalize(text).startswith("12333")
