"""What keeps suggestions honest on boards the model has never seen: numbers that
cannot route a petition, thresholds chosen across boards, self-training that teaches
routing only, and the measuring protocol itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model.taxonomy import HEADS
from model.text import feature_view, join_fields
from model.triage import TriageModel
from training.corpus import generate
from training.crossval import (
    Predictions,
    board_folds,
    board_of,
    metrics,
    near_duplicate_groups,
    repeated_grouped_folds,
    routed_share,
)
from training.selftrain import pseudo_labelled
from training.train import fit_with_thresholds, matter_groups, sample_weights, texts_of


def test_numbers_are_blanked_or_zeroed_with_offsets_kept():
    text = "电话13812345678，身份证*****************，2019年3月欠薪3000元，打12333没人接"
    viewed = feature_view(text)
    assert len(viewed) == len(text)
    assert "1381234" not in viewed and "*" not in viewed and "2019" not in viewed and "3000" not in viewed
    assert "0000年0月" in viewed and "12333" in viewed  # a date is a pattern; the hotline is a word
    assert feature_view(text, "digits") == text
    assert "2019年3月" in feature_view(text, "long_blank") and "1381234" not in feature_view(text, "long_blank")


def test_a_phone_number_or_an_id_does_not_change_the_suggestion(taxonomy):
    frame = pd.DataFrame(generate(n=300, seed=11))
    model = TriageModel(taxonomy, numbers="placeholders").fit(texts_of(frame), frame[list(HEADS)])
    plain = join_fields("工资拖欠", "公司拖欠我们三个月工资，请帮忙。")
    with_contacts = join_fields("工资拖欠", "公司拖欠我们三个月工资，请帮忙。联系电话13912345678，身份证号码*****************。")
    other_contacts = join_fields("工资拖欠", "公司拖欠我们三个月工资，请帮忙。联系电话15087654321，身份证号码*****************。")
    for head, proba in model.predict_proba([with_contacts, other_contacts]).items():
        np.testing.assert_allclose(proba[0], proba[1], err_msg=head)
    assert model.predict([plain])[0]["division"] == model.predict([with_contacts])[0]["division"]


def test_thresholds_are_chosen_on_boards_the_fold_models_did_not_see():
    frame = pd.DataFrame({"id": [f"p{i}" for i in range(6)], "board": ["a", "a", "b", "b", "c", ""],
                          "matter": ["m1", "m1", "", "", "", ""], "title": "",
                          "body": ["养老金", "失业金", "工伤认定", "职称评审", "拖欠工资", "人事考试"]})
    groups = matter_groups(frame, np.ones(6, bool))
    assert list(groups[:5]) == ["board:a", "board:a", "board:b", "board:b", "board:c"] and groups[5] == "id:p5"
    # Without boards, matters group as before; one board alone is no grouping by board.
    assert list(matter_groups(frame, np.ones(6, bool), across_boards=False)[:2]) == ["matter:m1", "matter:m1"]
    assert matter_groups(frame.assign(board="a"), np.ones(6, bool))[0] == "matter:m1"


def test_self_training_teaches_routing_and_leaves_risk_and_key_groups_alone(taxonomy):
    labelled = pd.DataFrame(generate(n=400, seed=11)).drop(columns="synthetic")  # as real petitions
    model, _ = fit_with_thresholds(labelled, taxonomy, seed=0)
    unlabelled = pd.DataFrame(generate(n=200, seed=12))[["id", "title", "body"]]
    pseudo = pseudo_labelled(model, unlabelled)
    assert 0 < len(pseudo) <= len(unlabelled) and pseudo["pseudo"].all() and pseudo["synthetic"].all()
    assert pseudo["id"].str.startswith("pseudo:").all()
    assert (pseudo["division"] == "external").any()  # so that leaving it out below is seen
    without = pseudo_labelled(model, unlabelled, leave_out=("external",))
    assert set(without["id"]) == set(pseudo.loc[pseudo["division"] != "external", "id"])
    combined = pd.concat([labelled, pseudo], ignore_index=True)
    weights = sample_weights(combined)
    rows = combined["pseudo"].fillna(False).to_numpy(bool)
    assert (weights["division"][rows] > 0).all() and (weights["risk"][rows] == 0).all()
    assert (weights["key_group"][rows] == 0).all() and (weights["risk"][~rows] == 1).all()
    # Rows of weight 0 are out of a head: a risk label only they carry is never learned.
    marked = combined.assign(risk=np.where(rows, "high", combined["risk"].replace("high", "medium")))
    fitted = TriageModel(taxonomy).fit(texts_of(marked), marked[list(HEADS)], sample_weight=weights)
    assert "high" not in fitted.classes_["risk"]
    assert not set(fitted.heldout_rows_) & set(np.flatnonzero(rows))


def test_leave_one_board_out_and_grouped_folds_never_split_a_board_or_a_matter():
    boards = np.array([board_of(s) for s in ["tipdm_s3", "tipdm_s4", "dongguan", "jiamusi", "jiamusi", "dongguan"] * 10])
    assert set(boards) == {"tipdm", "dongguan", "jiamusi"}
    for fold in board_folds(boards):
        assert len(set(boards[fold.test])) == 1 and not set(boards[fold.train]) & set(boards[fold.test])
    topics = ["拖欠工资", "养老金计算", "职称评审", "工伤认定", "失业保险金", "人事考试", "档案转移", "技能培训",
              "社保补缴", "劳动合同", "事业单位招聘", "最低工资标准", "劳务派遣", "仲裁受理", "窗口服务态度",
              "公益性岗位", "居民养老保险", "骗取社保基金", "人才引进补贴", "退休年龄"]
    letters = [f"我要反映{t}的问题，{t}一事已经拖了很久，{t}至今没有结果，恳请领导过问{t}。" for t in topics]
    texts = letters + [letter.replace("恳请", "请求") for letter in letters] + [f"咨询第{i}件小事" for i in range(20)]
    groups = near_duplicate_groups(texts)
    assert groups[0] == groups[20] and groups[0] != groups[1] and len(set(groups[:20])) == 20
    y = np.array(["a", "b", "c"] * 20)
    folds = repeated_grouped_folds(y, groups, n_splits=5, repeats=2)
    assert len(folds) == 10
    for fold in folds:
        assert not set(groups[fold.train]) & set(groups[fold.test])


def test_routed_share_takes_the_most_confident_while_precision_holds():
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7])
    assert routed_share(confidence, np.array([1, 1, 1, 0, 1])) == pytest.approx(0.6)
    assert routed_share(confidence, np.array([0, 1, 1, 1, 1])) == 0.0
    truth = {"division": np.array(["pension", "external"]), "risk": np.array(["high", "low"]),
             "key_group": np.array(["none", "none"])}
    pred = Predictions(np.array(["pension", "pension"]), np.array([0.9, 0.8]),
                       np.array([["pension", "external", "exams"]] * 2), np.array(["high", "high"]), np.array(["none"] * 2))
    figures = metrics(truth, pred)
    assert figures["division_accuracy"] == 0.5 and figures["division_accuracy_ours"] == 1.0
    assert figures["division_top3"] == 1.0 and figures["high_recall"] == 1.0 and figures["high_share"] == 1.0
