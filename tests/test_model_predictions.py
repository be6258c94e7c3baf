from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.svm import LinearSVC

from model.calibration import TemperatureScaledLinear, _rows, retempered, temperature_factor
from model.explain import _informative
from model.taxonomy import HEADS
from model.text import ASK_CHARS, join_fields, normalize
from model.thresholds import high_risk_threshold
from model.triage import LARGE_MAX_ITER, ModelInputError, TriageModel, _training_rows
from training.corpus import generate
from training.train import GENERATED_MIN_HIGH_CUT, fit_with_thresholds, texts_of

WAGES = join_fields("老板拖欠工资", "我在电子厂上班，老板三个月没发工资，我们二十多个工友找不到人。")
SELF_HARM = join_fields("讨薪无门", "工资一直拿不到，再不解决我就从公司楼顶跳楼。")


def test_suggestion_has_top3_probabilities_and_all_heads(small_model):
    s = small_model.model.suggest(WAGES)
    assert len(s["division_top3"]) == 3
    probs = [p for _, p in s["division_top3"]]
    assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
    assert s["division"] == s["division_top3"][0][0]
    assert s["risk"] in ("low", "medium", "high") and s["key_group"] in small_model.model.taxonomy.codes("key_group")
    assert isinstance(s["needs_review"], bool)


def test_explanation_offsets_point_at_the_words_in_the_text(small_model):
    s = small_model.model.suggest(WAGES)
    terms = s["explanation"]["division"]["terms"]
    assert terms, "the division head must say which words drove it"
    for term in terms:
        for span in term["spans"]:
            assert WAGES[span["start"]:span["end"]] == span["text"]


def test_a_self_harm_statement_is_high_risk_and_explained_by_its_rule(small_model):
    s = small_model.model.suggest(SELF_HARM)
    assert s["risk"] == "high" and s["needs_review"] is True
    rules = s["explanation"]["risk"]["rules"]
    fired = [r for r in rules if r["rule"] == "risk.self_harm"]
    assert fired and fired[0]["spans"][0]["text"] == "跳楼"


def test_key_group_rule_marks_the_group_and_raises_risk(small_model):
    text = join_fields("民办教师养老问题", "我是一名原民办教师，教了二十年书，教龄一直没有认定，退休后养老金很低。")
    s = small_model.model.suggest(text)
    assert s["key_group"] == "minban_teachers"
    assert s["risk"] in ("medium", "high")


def test_a_key_group_rule_names_the_group_and_the_head_decides_whether_there_is_one(small_model):
    model = small_model.model
    text = join_fields("民办教师养老问题", "我是一名原民办教师，教了二十年书，教龄一直没有认定，退休后养老金很低。")
    saved = model.thresholds_["key_group_any"], model.key_group_rules_alone
    try:
        model.key_group_rules_alone = False  # as trained beside enough real petitions
        model.thresholds_["key_group_any"] = 1.01  # the head can then never find a key-group case
        s = model.suggest(text)
        assert s["key_group"] == "none" and s["key_group_rule"] is None
        assert "key_group.minban_teachers" in s["rules"], "the rule still fires and is reported"
        model.key_group_rules_alone = True
        assert model.suggest(text)["key_group"] == "minban_teachers"
    finally:
        model.thresholds_["key_group_any"], model.key_group_rules_alone = saved


def test_a_rule_for_a_key_group_the_head_never_learned_decides_alone(taxonomy):
    # Marked real, so that the head decides for the groups it learned.
    frame = pd.DataFrame(generate(n=300, seed=11)).drop(columns="synthetic")
    frame = frame[frame["key_group"] != "retired_athletes"]  # as if a province had just added the group
    model, _ = fit_with_thresholds(frame, taxonomy, seed=0)
    assert "retired_athletes" not in model.classes_["key_group"] and not model.key_group_rules_alone
    model.thresholds_["key_group_any"] = 1.01
    s = model.suggest(join_fields("安置问题", "我是省体工队的退役运动员，至今没有安置"))
    assert s["key_group"] == "retired_athletes" and s["key_group_rule"] == "key_group.retired_athletes"


def test_a_model_pickled_before_the_key_group_and_class_weight_options_says_how_it_was_trained(small_model):
    state = dict(small_model.model.__getstate__())
    del state["key_group_rules_alone"], state["head_class_weights"]
    old = TriageModel.__new__(TriageModel)
    old.__setstate__(state)
    assert old.key_group_rules_alone is True
    assert old.get_params()["head_class_weights"] == dict.fromkeys(["division", "risk", "key_group", "risk_high"],
                                                                   "balanced")


def test_needs_review_when_confidence_is_below_the_division_threshold(small_model):
    model = small_model.model
    saved = dict(model.thresholds_["division"])
    try:
        s = model.suggest(WAGES)
        model.thresholds_["division"][s["division"]] = 1.01
        assert model.suggest(WAGES)["needs_review"] is True
    finally:
        model.thresholds_["division"] = saved


def test_a_petition_too_short_to_route_needs_review_however_confident(small_model):
    model = small_model.model
    saved = dict(model.thresholds_["division"])
    try:
        model.thresholds_["division"] = dict.fromkeys(saved, 0.0)
        for text in ("你好", "拖欠工资", join_fields("拖欠工资", "电话 13912345678 13812345678")):
            assert model.suggest(text)["needs_review"] is True, text
            assert model.predict([text])[0]["needs_review"] is True, text
        assert model.suggest(WAGES)["needs_review"] is False
        assert [d["needs_review"] for d in model.predict(["你好", WAGES])] == [True, False]
    finally:
        model.thresholds_["division"] = saved


def test_same_data_and_seed_give_identical_predictions_on_one_core_or_all(taxonomy):
    frame = pd.DataFrame(generate(n=300, seed=11))
    texts = texts_of(frame)
    probas = [TriageModel(taxonomy, n_jobs=n_jobs, random_state=5).fit(texts, frame[list(HEADS)])
              .predict_proba(texts[:40]) for n_jobs in (None, None, 2)]
    for head in probas[0]:
        np.testing.assert_array_equal(probas[0][head], probas[1][head])
        np.testing.assert_array_equal(probas[0][head], probas[2][head])


def test_a_large_ledger_is_calibrated_on_one_held_out_sample(taxonomy):
    # The large-ledger path, made to apply at 600 petitions: each head is fitted once, and
    # thresholds and held-out metrics come from the held-out rows alone.
    frame = pd.DataFrame(generate(n=600, seed=11))
    fits = [fit_with_thresholds(frame, taxonomy, seed=3, n_jobs=n_jobs, holdout_above=500, holdout_rows=150)
            for n_jobs in (None, 2)]
    (model, fitted), (parallel_model, _) = fits
    held_out = len(fitted["heldout_ids"])
    # About 150, from rows whose labels are common enough to spare some, in whole scenarios:
    # no held-out petition has a sibling in training.
    assert 100 < held_out <= 200 and fitted["heldout_metrics"]["n"] == held_out
    held = frame["id"].isin(fitted["heldout_ids"])
    assert not set(frame["matter"][held]) & set(frame["matter"][~held])
    assert fitted["heldout_metrics"]["scope"].startswith(f"held-out sample of {held_out}")
    assert not hasattr(model, "oof_rows_") and not hasattr(model, "oof_proba_")
    assert all(0 < head.temperature_ < np.inf for head in model.heads_.values())
    texts = texts_of(frame)[:40]
    for head, proba in model.predict_proba(texts).items():
        np.testing.assert_array_equal(proba, parallel_model.predict_proba(texts)[head])
    # Fitted in-process: risk and high risk by SGD, the others by liblinear stopped after
    # LARGE_MAX_ITER solver passes.
    assert {h: m.sgd for h, m in model.heads_.items()} == {
        "division": False, "risk": True, "key_group": False, "risk_high": True}
    assert isinstance(model.heads_["risk"].estimator_, SGDClassifier)
    assert model.heads_["division"].max_iter == model.heads_["key_group"].max_iter == LARGE_MAX_ITER
    assert model.heads_["division"].estimator_.max_iter == LARGE_MAX_ITER
    # Below the size it does not apply: every row is scored out-of-fold, by heads fitted to convergence.
    small_model, small = fit_with_thresholds(frame, taxonomy, seed=3, holdout_above=600)
    assert len(small["heldout_ids"]) == 600
    assert all(head.max_iter is None and not head.sgd for head in small_model.heads_.values())
    assert small_model.heads_["division"].estimator_.max_iter == LinearSVC().max_iter


def test_a_large_ledger_head_trains_on_its_other_labels_and_a_weighted_draw_of_its_common_one():
    y = np.array(["common"] * 900 + ["rare"] * 60 + ["mid"] * 140, dtype=object)
    holdout = np.arange(0, 1100, 11)
    kept = np.arange(len(y))
    for class_weight in ("balanced", None):
        rows, weight = _training_rows(kept, holdout, y, None, 500, class_weight, 0)
        train, held = rows[: len(rows) - len(holdout)], rows[len(rows) - len(holdout):]
        np.testing.assert_array_equal(held, holdout)  # held out last, all of them
        assert len(train) == 500 and not np.isin(train, holdout).any()
        others = np.setdiff1d(np.flatnonzero(y != "common"), holdout)
        assert np.isin(others, train).all()  # every row of the other labels
        training_rows = len(y) - len(holdout)
        if class_weight == "balanced":  # every row weighs as it would among all of them
            np.testing.assert_allclose(weight[train], training_rows / 500)
        else:  # the draw stands for all of its label's rows
            common = np.setdiff1d(np.flatnonzero(y == "common"), holdout)
            drawn = train[y[train] == "common"]
            np.testing.assert_allclose(weight[drawn], len(common) / len(drawn))
            np.testing.assert_allclose(weight[others], 1.0)
    # At or under the cap, every row, unweighted.
    rows, weight = _training_rows(kept, holdout, y, None, 5000, "balanced", 0)
    assert weight is None and len(rows) == len(y)


def test_consecutive_training_rows_are_a_view_of_the_matrix_not_a_copy():
    X = sp.random(50, 30, density=0.3, format="csr", random_state=0)
    for rows in (np.arange(10, 40), np.arange(0, 50), np.array([3, 7, 8, 20])):
        part = _rows(X, rows)
        np.testing.assert_array_equal(part.toarray(), X[rows].toarray())
        assert np.shares_memory(part.data, X.data) == (len(rows) > 4)


def test_a_label_seen_once_is_left_out_of_its_head_and_reported(taxonomy):
    frame = pd.DataFrame(generate(n=300, seed=11))
    groups = frame.loc[frame["key_group"] != "none", "key_group"].value_counts().index
    lone_group = frame["key_group"] == groups[1]
    lone = frame.index[lone_group][0]
    frame.loc[lone_group & (frame.index != lone), "key_group"] = "none"
    model = TriageModel(taxonomy).fit(texts_of(frame), frame[list(HEADS)])
    assert groups[1] in model.skipped_labels_["key_group"]
    assert groups[1] not in model.classes_["key_group"] and groups[0] in model.classes_["key_group"]
    # Its row still gets a probability for threshold choice, from the model that saw it.
    assert len(model.heldout_rows_) == len(frame)
    assert all(np.isfinite(d["key_group_confidence"]) for d in model.heldout_decisions_)


def test_rows_weighted_down_pull_the_model_less(taxonomy):
    frame = pd.DataFrame(generate(n=300, seed=11))
    texts, pension = texts_of(frame), (frame["division"] == "pension").to_numpy()
    column = sorted(set(frame["division"])).index("pension")
    plain = TriageModel(taxonomy).fit(texts, frame[list(HEADS)]).predict_proba(texts)
    light = TriageModel(taxonomy).fit(texts, frame[list(HEADS)], sample_weight=np.where(pension, 0.05, 1.0))
    assert light.predict_proba(texts)["division"][pension, column].mean() < plain["division"][pension, column].mean()
    with pytest.raises(ModelInputError, match="one positive number per text"):
        TriageModel(taxonomy).fit(texts, frame[list(HEADS)], sample_weight=np.zeros(len(texts)))


def test_a_word_of_the_closing_request_is_located_in_the_request(small_model):
    filler = "我在厂里上班好几年了，平时工作也很认真。" * 8
    text = join_fields("求助", filler + "请劳动保障监察部门督促老板尽快支付拖欠的工资。")
    request_begins = text.rfind("请劳动")
    for head in ("division", "risk", "key_group"):
        for term in small_model.model.suggest(text)["explanation"][head]["terms"]:
            if term["kind"] == "ask":
                assert all(span["start"] >= request_begins - ASK_CHARS for span in term["spans"])
                assert all(text[span["start"]:span["end"]] == span["text"] for span in term["spans"])


def test_probabilities_are_calibrated_on_held_out_data(small_model):
    # Expected calibration error measured at training time on petitions the model did not see.
    assert small_model.metadata["heldout_metrics"]["division"]["ece"] < 0.15


def test_bad_input_says_what_was_expected(taxonomy):
    model = TriageModel(taxonomy)
    with pytest.raises(ModelInputError, match="sequence of texts"):
        model.fit("一段文字", [["pension", "low", "none"]])
    with pytest.raises(ModelInputError, match="not defined in the taxonomy"):
        model.fit(["a", "b"], [["pension", "low", "none"], ["housing", "low", "none"]])
    with pytest.raises(ModelInputError, match="groups must hold one value per text"):
        model.fit(["a", "b"], [["pension", "low", "none"]] * 2, groups=["m1"])


def _twins(n: int = 150) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Every row twice, under a random label: only a model that saw the twin can be right."""
    rows = sp.random(n, 400, density=0.05, random_state=0, format="csr")
    labels = np.random.default_rng(0).choice(["a", "b"], n)
    return sp.vstack([rows, rows]).tocsr(), np.tile(labels, 2), np.tile(np.arange(n), 2)


def test_out_of_fold_scores_never_come_from_a_model_that_saw_a_sibling():
    X, y, twins = _twins()
    leaky = TemperatureScaledLinear(C=10.0).fit(X, y)
    fair = TemperatureScaledLinear(C=10.0).fit(X, y, groups=twins)

    def oof_accuracy(model: TemperatureScaledLinear) -> float:
        return float((model.classes_[model.oof_proba_.argmax(1)] == y).mean())

    # Without groups two in three rows are scored by a model that learned their twin.
    assert oof_accuracy(leaky) > 0.75
    assert oof_accuracy(fair) < 0.65
    # And the temperature, fitted on those scores, is no longer sharpened by the leak.
    assert fair.temperature_ > leaky.temperature_


@pytest.mark.filterwarnings("ignore:The least populated class")
def test_groups_that_would_take_a_label_out_of_a_fold_fall_back_to_plain_folds():
    X, y, twins = _twins()
    y = y.copy()
    y[twins == 0] = "c"  # label c lives in one group: grouped folds would leave it out of training once
    model = TemperatureScaledLinear().fit(X, y, groups=twins)
    assert list(model.classes_) == ["a", "b", "c"]
    assert np.isfinite(model.oof_proba_).all()


def test_without_real_petitions_high_risk_needs_a_rule_or_an_even_chance(small_model):
    # small_model is trained on generated petitions only: its p(high) cut was not measured on real intake.
    assert small_model.model.thresholds_["risk_high"] >= GENERATED_MIN_HIGH_CUT
    assert small_model.metadata["thresholds"]["risk_high"] >= GENERATED_MIN_HIGH_CUT


def test_when_the_target_recall_is_out_of_reach_the_high_risk_cut_fills_the_flag_budget():
    # 20 petitions, 4 high-risk; a rule finds 2. The budget (0.2 + 0.1) allows 6 flags:
    # p(high) >= 0.8 adds a third high-risk petition, 0.6 and 0.5 only more flags.
    p_high = np.asarray([0.9, 0.8, 0.7, 0.6, 0.5, 0.2, 0.1] + [0.0] * 13)
    rule = np.zeros(20, bool)
    rule[[10, 11]] = True
    truth = np.zeros(20, bool)
    truth[[1, 10, 11, 6]] = True
    assert high_risk_threshold(p_high, rule, truth, target_recall=0.9, max_extra_share=0.1) == 0.6
    assert high_risk_threshold(p_high, rule, truth, target_recall=0.9, max_extra_share=0.1, fill_budget=False) == 0.8
    # Within reach, both stop at the highest cut that reaches it.
    assert high_risk_threshold(p_high, rule, truth, target_recall=0.75, max_extra_share=0.1, fill_budget=False) == 0.8


def test_the_feature_matrix_is_the_feature_unions_own(small_model):
    model = small_model.model
    texts = [WAGES, SELF_HARM, ""]
    hits = [model.rule_hits(t) for t in texts]
    ours = model._matrix(texts, hits)[:, : -len(model.taxonomy.rules)]
    np.testing.assert_allclose(ours.toarray(), model.features_.transform(texts).toarray())


def test_one_petitions_matrix_is_its_row_of_the_matrix_of_several(small_model):
    # suggest() builds one petition's row by a path of its own; every value must be the
    # same, or a decision or an explanation's weight could differ from the batch's.
    model = small_model.model
    texts = [normalize(t) for t in (WAGES, SELF_HARM, "", join_fields("", "龘靐"), WAGES + SELF_HARM)]
    hits = [model._hits(t) for t in texts]
    assert any(hits) and not all(hits)
    together = model._matrix(texts, hits)
    for i, text in enumerate(texts):
        alone = model._matrix([text], [hits[i]])
        assert alone.shape == (1, together.shape[1]) and alone.dtype == together.dtype
        np.testing.assert_array_equal(alone.indices, together[i].indices)
        np.testing.assert_array_equal(alone.data, together[i].data)


def test_an_explanation_shows_terms_with_a_letter_or_digit_and_more_than_one_character():
    assert [_informative(n) for n in ["工资", "12333", "A-1", "“欠薪”", "一", "，。", "--", ""]] == [
        True, True, True, True, False, False, False, False]


def test_a_lone_surrogate_is_read_as_a_replacement_character(small_model):
    # JSON may carry "\ud800"; neither the segmenter nor the n-grams can encode it.
    text = join_fields("拖欠工资", "老板\ud800三个月没发工资")
    s = small_model.model.suggest(text)
    assert s["division"] and len(normalize(text)) == len(text)


def test_petitions_without_titles_train_and_predict(taxonomy):
    # Hotline notes have no title: an empty title vocabulary is not an error.
    frame = pd.DataFrame(generate(n=300, seed=3))
    model = TriageModel(taxonomy).fit([join_fields("", body) for body in frame["body"]], frame[list(HEADS)])
    assert model.suggest(join_fields("", "老板拖欠工资三个月了"))["division"] in taxonomy.codes("division")


def test_enough_real_petitions_make_the_high_risk_head_logistic_unweighted_and_the_key_group_head_decide(taxonomy):
    frame = pd.DataFrame(generate(n=300, seed=11))
    frame["synthetic"] = np.arange(len(frame)) >= 10  # ten real petitions beside generated ones
    mostly_generated, _ = fit_with_thresholds(frame, taxonomy, seed=0)
    assert all(isinstance(head.estimator_, LinearSVC) for head in mostly_generated.heads_.values())
    assert all(head.estimator_.class_weight == "balanced" for head in mostly_generated.heads_.values())
    real, _ = fit_with_thresholds(frame.drop(columns="synthetic"), taxonomy, seed=0)  # 300 real petitions
    assert isinstance(real.heads_["risk_high"].estimator_, LogisticRegression)
    assert real.heads_["risk_high"].estimator_.class_weight is None
    assert all(isinstance(real.heads_[head].estimator_, LinearSVC) for head in HEADS)
    assert all(real.heads_[head].estimator_.class_weight == "balanced" for head in HEADS)
    assert mostly_generated.key_group_rules_alone and not real.key_group_rules_alone


def test_an_unknown_loss_or_head_is_refused_with_the_choices(taxonomy):
    X, y, _ = _twins()
    with pytest.raises(ValueError, match=r"loss must be one of \('squared_hinge', 'log_loss'\), got 'hinge'"):
        TemperatureScaledLinear(loss="hinge").fit(X, y)
    frame = pd.DataFrame(generate(n=120, seed=11))
    with pytest.raises(ModelInputError, match=r"head_losses names heads \['urgency'\]"):
        TriageModel(taxonomy, head_losses={"urgency": "log_loss"}).fit(texts_of(frame), frame[list(HEADS)])
    with pytest.raises(ModelInputError, match=r"head_class_weights names heads \['urgency'\]"):
        TriageModel(taxonomy, head_class_weights={"urgency": None}).fit(texts_of(frame), frame[list(HEADS)])
    with pytest.raises(ModelInputError, match=r"'balanced' or None per head, got \{'risk_high': 'auto'\}"):
        TriageModel(taxonomy, head_class_weights={"risk_high": "auto"}).fit(texts_of(frame), frame[list(HEADS)])


def test_a_head_pickled_under_its_former_name_loads_and_predicts_alike():
    X, y, _ = _twins()
    head = TemperatureScaledLinear().fit(X, y)
    # Protocol 0 names the class on a line of its own, as an artifact made before the rename did.
    old = pickle.dumps(head, protocol=0).replace(b"\nTemperatureScaledLinear\n", b"\nTemperatureScaledSVC\n")
    assert b"TemperatureScaledSVC" in old
    np.testing.assert_array_equal(pickle.loads(old).predict_proba(X), head.predict_proba(X))


def test_retempering_probabilities_equals_scaling_the_scores_again():
    scores = np.random.default_rng(0).normal(size=(50, 4)) * 3
    proba = softmax(scores / 0.7, axis=1)
    assert np.allclose(retempered(proba, 2.0), softmax(scores / 1.4, axis=1))


def test_the_temperature_is_fitted_on_the_rows_the_thresholds_are_chosen_on(taxonomy):
    # Generated petitions are scored far more surely than real ones: a temperature fitted
    # with them made the probabilities of real petitions from an unseen board too high.
    model = TriageModel(taxonomy, min_threshold_rows=2)
    head = TemperatureScaledLinear()
    head.classes_, head.temperature_ = np.array(["a", "b"]), 1.0
    model.heads_ = {"division": head}
    sure = softmax(np.array([[4.0, -4.0]] * 6 + [[np.nan, np.nan]]), axis=1)
    labels = {"division": np.array(["a", "a", "a", "b", "b", "b", "a"])}  # the threshold rows: half wrong
    rows = np.array([2, 3])
    oof = {"division": sure.copy()}
    model._temper_on(rows, oof, labels)
    factor = temperature_factor(sure[rows], np.array([0, 1]))
    assert factor > 1 and head.temperature_ == factor  # softer: what the rows say, not the sure rows around them
    assert np.allclose(oof["division"][:6], retempered(sure[:6], factor)) and np.isnan(oof["division"][6]).all()


def test_tempered_on_harder_real_rows_the_model_states_lower_probabilities(taxonomy):
    frame = pd.DataFrame(generate(n=900, seed=11))
    rng = np.random.default_rng(3)
    real = rng.random(len(frame)) < 0.4
    noisy = real & (rng.random(len(frame)) < 0.33)  # harder: a third of them relabelled at random
    frame.loc[noisy, "division"] = rng.choice(sorted(set(frame["division"])), size=int(noisy.sum()))
    texts = texts_of(frame)

    def overconfidence(on_threshold_rows: bool) -> float:
        model = TriageModel(taxonomy, min_threshold_rows=100, temperature_on_threshold_rows=on_threshold_rows).fit(
            texts, frame[list(HEADS)], threshold_rows=real)
        assert np.array_equal(model.heldout_rows_, np.flatnonzero(real))
        shown = model.heldout_decisions_
        right = frame["division"].to_numpy()[model.heldout_rows_] == np.array([d["division"] for d in shown])
        return float(np.mean([d["division_confidence"] for d in shown]) - right.mean())

    before, after = overconfidence(False), overconfidence(True)
    assert before > 0.05 and after < before - 0.05, (before, after)
