"""Quarterly retraining end to end: two quarters of generated petitions, intake
decisions in a real SQLite file, a registry on disk, the CLI as staff run it."""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from model.artifact import load_model, signing_key
from model.taxonomy import load_taxonomy
from service.settings import get_settings
from training.corpus import generate, write_corpus
from training.decisions import read_decisions
from training.evaluate import evaluate_decisions
from training.ledger import read_ledger
from training.registry import Registry, RegistryError
from training.retrain import choose_holdout
from training.train import label_arrays, predict_frame, taxonomy_codes
from triage.cli import main

TAXONOMY = load_taxonomy()
Q1, Q2 = date(2026, 1, 1), date(2026, 4, 1)
N = 260
CONTRACT_DDL = """
CREATE TABLE triages (id VARCHAR(36) PRIMARY KEY, external_id VARCHAR(200), title_masked TEXT, body_masked TEXT,
                      division VARCHAR(40), risk VARCHAR(10), key_group VARCHAR(40), created_at DATETIME);
CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, triage_id VARCHAR(36) REFERENCES triages(id),
                        revision INTEGER, division VARCHAR(40), risk VARCHAR(10), key_group VARCHAR(40),
                        accepted BOOLEAN, decided_by VARCHAR(200), reason TEXT, created_at DATETIME);
"""


def quarter(seed: int, start: date, n: int = N) -> list[dict[str, str]]:
    rows = generate(n=n, seed=seed)
    rng = random.Random(seed)
    for row in rows:
        row["received_at"] = (start + timedelta(days=rng.randrange(0, 90))).isoformat()
    return rows


def other_division(code: str) -> str:
    return "labor_inspection" if code != "labor_inspection" else "pension"


@dataclass
class Data:
    q1: Path
    q2: Path
    q1_bad: Path
    db: Path
    q1_rows: list[dict[str, str]]
    q2_rows: list[dict[str, str]]
    conflicting_id: str
    duplicated_id: str
    relabelled_id: str  # a held-out petition whose final label comes from revision 2 of its decision
    relabelled_to: str
    extra_text: str


def write_decisions_db(path: Path, q1: list[dict[str, str]], q2: list[dict[str, str]], conflicting: dict[str, str]) -> tuple[str, str]:
    """The service's two tables as the contract names them, with revisions."""
    relabel_to = other_division(q2[0]["division"])
    extra_text = "我在工地干了半年，老板一直拖欠工资，电话[手机号]，请劳动监察帮忙"
    triages = [  # id, external_id, title, body, suggested division, risk, key group, created_at (UTC)
        ("t-1", q2[0]["id"], q2[0]["title"], q2[0]["body"], q2[0]["division"], q2[0]["risk"], q2[0]["key_group"],
         "2026-04-20 02:00:00.000000"),
        ("t-2", q1[2]["id"], q1[2]["title"], q1[2]["body"], q1[2]["division"], q1[2]["risk"], q1[2]["key_group"],
         "2026-02-03 02:00:00.000000"),
        ("t-3", conflicting["id"], conflicting["title"], conflicting["body"], "external", "low", "none",
         "2026-02-04 02:00:00.000000"),
        ("t-4", None, "欠薪", extra_text, "external", "medium", "none", "2026-02-15 03:00:00.000000"),
    ]
    decisions = [  # triage, revision, division, risk, key group, accepted, by, reason, created_at
        ("t-1", 1, "employment", q2[0]["risk"], q2[0]["key_group"], 0, "王五", "先分到就业处", "2026-04-20 03:00:00"),
        ("t-1", 2, relabel_to, q2[0]["risk"], q2[0]["key_group"], 0, "王五", "复核后改", "2026-04-21 03:00:00"),
        ("t-2", 1, q1[2]["division"], "high" if q1[2]["risk"] != "high" else "low", q1[2]["key_group"], 0, "赵六",
         "来电称要去省政府", "2026-02-03 05:00:00"),
        ("t-3", 1, conflicting["division"], conflicting["risk"], conflicting["key_group"], 0, "赵六", "台账两处不一致",
         "2026-02-04 05:00:00"),
        ("t-4", 1, "labor_inspection", "medium", "none", 0, "赵六", "欠薪", "2026-02-15 05:00:00"),
    ]
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.executescript(CONTRACT_DDL)
        connection.executemany("INSERT INTO triages VALUES (?,?,?,?,?,?,?,?)", triages)
        connection.executemany("INSERT INTO decisions (triage_id, revision, division, risk, key_group, accepted, "
                               "decided_by, reason, created_at) VALUES (?,?,?,?,?,?,?,?,?)", decisions)
        connection.commit()
    return relabel_to, extra_text


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    folder = tmp_path_factory.mktemp("ledgers")
    q1_rows, q2_rows = quarter(101, Q1), quarter(102, Q2)
    # The same petition twice (kept once) and one id listed with two different divisions.
    duplicate = dict(q1_rows[0])
    conflict = dict(q1_rows[1]) | {"division": other_division(q1_rows[1]["division"])}
    write_corpus([*q1_rows, duplicate, conflict], folder / "q1.csv")
    write_corpus(q2_rows, folder / "q2.csv")
    # A challenger trained on scrambled divisions must lose to the champion.
    bad = [dict(r) for r in q1_rows]
    divisions = [r["division"] for r in bad]
    random.Random(5).shuffle(divisions)
    for row, division in zip(bad, divisions, strict=True):
        row["division"] = division
    write_corpus(bad, folder / "q1_bad.csv")
    relabel_to, extra_text = write_decisions_db(folder / "triage.db", q1_rows, q2_rows, q1_rows[1])
    return Data(folder / "q1.csv", folder / "q2.csv", folder / "q1_bad.csv", folder / "triage.db", q1_rows, q2_rows,
                q1_rows[1]["id"], q1_rows[0]["id"], q2_rows[0]["id"], relabel_to, extra_text)


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(*argv: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return Run(code, out.getvalue(), err.getvalue())


def retrain(registry: Registry, *argv: str) -> tuple[Run, str]:
    before = set(registry.version_names())
    result = run("retrain", "--registry", str(registry.root), *argv)
    assert result.code == 0, result.err
    (version,) = set(registry.version_names()) - before
    return result, version


@pytest.fixture(scope="module", autouse=True)
def service_key(triage_home: Path) -> None:
    """The session's signing key, made if no test made it yet: the service's TRIAGE_HOME holds
    one, and retrain refuses to make one unasked."""
    signing_key()


@pytest.fixture(scope="module")
def lifecycle(data: Data, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Champion on Q1, challenger on Q1+Q2 with decisions, a scrambled challenger,
    promotions, a refusal, a forced promotion and a rollback — as staff would run them."""
    registry = Registry(tmp_path_factory.mktemp("registry") / "reg")
    reg = str(registry.root)
    steps: dict = {"registry": registry}
    steps["r0"], c0 = retrain(registry, "--data", str(data.q1), "--by", "tester")
    steps["p0"] = run("models", "promote", c0, "--registry", reg, "--by", "tester")
    steps["r1"], c1 = retrain(registry, "--data", str(data.q1), "--data", str(data.q2), "--decisions", str(data.db),
                              "--by", "数据科 李四")
    # 260 held-out petitions hold ~30 high-risk ones: one of them moves high recall by 0.033, more than
    # the default tolerance. This promotion is about the registry, not that noise, so it is widened here.
    steps["p1"] = run("models", "promote", c1, "--registry", reg, "--by", "数据科 李四", "--tolerance", "0.1")
    steps["p0_stale"] = run("models", "promote", c0, "--registry", reg)
    export = data.db.parent / "decisions.csv"
    steps["export"] = run("export-decisions", "--db", str(data.db), "--out", str(export))
    steps["r2"], c2 = retrain(registry, "--data", str(data.q1_bad), "--data", str(data.q2), "--decisions", str(export))
    steps["p2_refused"] = run("models", "promote", c2, "--registry", reg)
    steps["state_after_refusal"] = registry.read_state()
    steps["p2_no_reason"] = run("models", "promote", c2, "--registry", reg, "--force")
    steps["p2_forced"] = run("models", "promote", c2, "--registry", reg, "--force", "--reason", "新政策上线，先用新模型",
                             "--by", "处长")
    steps["state_after_force"] = registry.read_state()
    steps["rollback"] = run("models", "rollback", "--registry", reg, "--reason", "新模型分错太多")
    steps["state"] = registry.read_state()
    steps["list"] = run("models", "list", "--registry", reg)
    steps["show"] = run("models", "show", c2, "--registry", reg)
    steps["rollback2"] = run("models", "rollback", "--registry", reg)
    steps["champion_after_rollback2"] = registry.champion()
    steps["rollback3"] = run("models", "rollback", "--registry", reg)
    steps["champion_after_rollback3"] = registry.champion()
    steps.update(c0=c0, c1=c1, c2=c2, export_path=export)
    return steps


def report_of(lifecycle: dict, version: str) -> str:
    return lifecycle["registry"].report_path(version).read_text(encoding="utf-8")


def held_out_truth_frame(data: Data) -> pd.DataFrame:
    frame = read_ledger(data.q2, TAXONOMY)
    frame.loc[frame["id"] == data.relabelled_id, "division"] = data.relabelled_to
    return frame


# ---------------------------------------------------------------- comparison
def test_champion_and_challenger_scored_on_identical_held_out_ids(lifecycle, data):
    meta = lifecycle["registry"].metadata(lifecycle["c1"])
    evaluation = meta["evaluation"]
    assert evaluation["holdout"]["method"] == "period" and evaluation["holdout"]["period"] == "2026Q2"
    assert evaluation["champion"]["version"] == lifecycle["c0"]
    assert evaluation["champion"]["ids"] == evaluation["challenger"]["ids"] == evaluation["holdout"]["ids"]
    assert set(evaluation["holdout"]["ids"]) == {r["id"] for r in data.q2_rows}
    assert evaluation["champion"]["metrics"]["n"] == evaluation["challenger"]["metrics"]["n"] == len(data.q2_rows)
    # The recorded champion numbers are reproduced by scoring the champion on Q2 with the decision applied.
    frame = held_out_truth_frame(data)
    champion = load_model(lifecycle["registry"].model_dir(lifecycle["c0"])).model
    again = evaluate_decisions(predict_frame(champion, frame), label_arrays(frame), taxonomy_codes(TAXONOMY))
    recorded = evaluation["champion"]["metrics"]
    assert again["division"]["accuracy"] == pytest.approx(recorded["division"]["accuracy"])
    assert again["risk"]["high_recall"] == pytest.approx(recorded["risk"]["high_recall"])
    # The challenger never saw a Q2 petition.
    assert meta["training_data"]["period"][1] < "2026-04-01"


def test_first_run_without_champion_evaluates_only_the_challenger(lifecycle):
    meta = lifecycle["registry"].metadata(lifecycle["c0"])
    assert meta["evaluation"]["champion"] is None
    assert meta["evaluation"]["holdout"]["method"] == "random"
    report = report_of(lifecycle, lifecycle["c0"])
    assert "The registry has no champion yet, and no model in service could be loaded" in report
    assert "random stratified" in report and "all dated petitions fall in 2026Q1" in report
    assert lifecycle["p0"].code == 0 and "now the champion (was none)" in lifecycle["p0"].out


@pytest.fixture
def served_without_registry(small_model_dir, monkeypatch) -> Iterator[Path]:
    """No champion yet: the service serves TRIAGE_MODEL_DIR, which the first promotion replaces."""
    monkeypatch.setenv("TRIAGE_MODEL_DIR", str(small_model_dir))
    get_settings.cache_clear()
    yield small_model_dir
    get_settings.cache_clear()


def test_a_first_challenger_is_compared_with_the_model_in_service(data, served_without_registry, tmp_path):
    # A challenger trained on scrambled divisions must not take the served model's place unchecked.
    small_model_dir = served_without_registry
    registry = Registry(tmp_path / "reg")
    first, version = retrain(registry, "--data", str(data.q1_bad), "--holdout", str(data.q2))
    promoted = run("models", "promote", version, "--registry", str(registry.root))
    in_service = load_model(small_model_dir).version
    assert "champion: none in the registry yet; compared with the model served without one" in first.out
    assert f"in service {in_service}:" in first.out and "WORSE" in first.out
    compared = registry.metadata(version)["evaluation"]["champion"]
    assert compared["version"] == in_service and compared["in_service"] == str(small_model_dir)
    assert compared["ids"] == registry.metadata(version)["evaluation"]["challenger"]["ids"]
    assert "compared with the model served without one" in report_of({"registry": registry}, version)
    assert promoted.code == 1 and f"worse than {in_service}" in promoted.err and "division.macro_f1" in promoted.err
    assert registry.champion() is None


def test_the_first_promotion_can_be_rolled_back_to_the_model_served_before(data, served_without_registry, tmp_path):
    # The first champion had no previous one: rollback refused, and nothing short of moving
    # the registry away put the model served before back into service.
    registry = Registry(tmp_path / "reg")
    _, version = retrain(registry, "--data", str(data.q1), "--holdout", str(data.q2))
    promoted = run("models", "promote", version, "--registry", str(registry.root), "--force", "--reason", "新模型")
    rolled_back = run("models", "rollback", "--registry", str(registry.root), "--reason", "回到原模型")
    again = run("models", "rollback", "--registry", str(registry.root))
    listed = run("models", "list", "--registry", str(registry.root))
    before = load_model(served_without_registry)
    assert promoted.code == 0, promoted.err
    assert rolled_back.code == 0, rolled_back.err
    assert registry.champion() == before.version
    # A copy in the registry, which the service loads as it loads any champion.
    assert load_model(registry.model_dir(before.version)).metadata["model_sha256"] == before.metadata["model_sha256"]
    assert again.code == 2 and "no previous" in again.err
    assert listed.code == 0 and f"* {before.version}" in listed.out, listed.out + listed.err
    history = registry.read_state()["history"]
    assert [(e["action"], e["version"]) for e in history] == [
        ("register", version), ("register", before.version), ("promote", before.version), ("promote", version),
        ("rollback", before.version)]
    assert history[3]["previous"] == before.version


def test_progress_is_shown_on_stderr(lifecycle):
    err = lifecycle["r1"].err
    for step in ("reading 2 ledger file(s)", "reading decisions", "held out the latest quarter, 2026Q2",
                 "fitting on", "scoring challenger", "scoring champion", "registering"):
        assert step in err
    assert "challenger" in lifecycle["r1"].out and "report:" in lifecycle["r1"].out


# ---------------------------------------------------------------- promotion
def test_a_worse_challenger_is_refused(lifecycle):
    refused = lifecycle["p2_refused"]
    assert refused.code == 1
    assert "division.macro_f1" in refused.err and "worse than champion" in refused.err
    assert lifecycle["state_after_refusal"]["champion"] == lifecycle["c1"]
    meta = lifecycle["registry"].metadata(lifecycle["c2"])
    assert any(c["worse"] for c in meta["evaluation"]["checks"])
    assert "Promotion would be refused" in report_of(lifecycle, lifecycle["c2"])


def test_force_needs_a_reason_and_records_it(lifecycle):
    assert lifecycle["p2_no_reason"].code == 2 and "--reason" in lifecycle["p2_no_reason"].err
    assert lifecycle["p2_forced"].code == 0
    state = lifecycle["state_after_force"]
    assert state["champion"] == lifecycle["c2"]
    entry = state["history"][-1]
    assert entry["action"] == "promote" and entry["version"] == lifecycle["c2"]
    assert entry["forced"] is True and entry["reason"] == "新政策上线，先用新模型" and entry["by"] == "处长"
    assert entry["previous"] == lifecycle["c1"]
    assert any(c["worse"] for c in entry["checks"])


def test_rollback_restores_the_previous_champion(lifecycle):
    assert lifecycle["rollback"].code == 0
    state = lifecycle["state"]
    assert state["champion"] == lifecycle["c1"]
    last = state["history"][-1]
    assert last["action"] == "rollback" and last["version"] == lifecycle["c1"] and last["previous"] == lifecycle["c2"]
    assert [e["action"] for e in state["history"]] == [
        "register", "promote", "register", "promote", "register", "promote", "rollback"]
    # Nothing is overwritten: every version and report is still there.
    registry = lifecycle["registry"]
    for version in (lifecycle["c0"], lifecycle["c1"], lifecycle["c2"]):
        assert (registry.model_dir(version) / "model.joblib").is_file()
        assert registry.report_path(version).is_file()
    assert not [p for p in registry.root.iterdir() if p.name.startswith(".registry.json")]
    # A second rollback goes back to the first champion, a third has nothing left.
    assert lifecycle["rollback2"].code == 0 and lifecycle["champion_after_rollback2"] == lifecycle["c0"]
    assert lifecycle["rollback3"].code == 2 and "no previous" in lifecycle["rollback3"].err
    assert lifecycle["champion_after_rollback3"] == lifecycle["c0"]


def test_registry_refuses_to_overwrite_a_version(lifecycle):
    registry = lifecycle["registry"]
    loaded = load_model(registry.model_dir(lifecycle["c1"]))
    sha = loaded.metadata["model_sha256"]
    with pytest.raises(RegistryError, match="never overwritten"):
        registry.register(loaded.model, loaded.metadata, "<html></html>")
    assert load_model(registry.model_dir(lifecycle["c1"])).metadata["model_sha256"] == sha
    assert registry.fresh_version(lifecycle["c1"]) == lifecycle["c1"] + "-2"


def test_promotion_against_a_stale_champion_is_refused(lifecycle):
    # c0 was compared with nobody; once c1 is champion it cannot come back without --force.
    result = lifecycle["p0_stale"]
    assert result.code == 1 and "evaluated against no champion" in result.err
    assert lifecycle["p1"].code == 0


def test_list_and_show(lifecycle):
    assert lifecycle["list"].code == 0
    lines = lifecycle["list"].out.splitlines()
    assert [line[2:].split()[0] for line in lines[:-1]] == [lifecycle[c] for c in ("c0", "c1", "c2")]
    assert lines[1].startswith("* " + lifecycle["c1"]) and f"compared with {lifecycle['c0']}" in lines[1]
    shown = json.loads(lifecycle["show"].out)
    assert shown["version"] == lifecycle["c2"] and shown["report"].endswith(f"{lifecycle['c2']}.html")
    assert [e["action"] for e in shown["history"]] == ["register", "promote"]


# ---------------------------------------------------------------- decisions
def test_decisions_replace_ledger_labels_and_are_listed(lifecycle, data):
    info = lifecycle["registry"].metadata(lifecycle["c1"])["training_data"]["decisions"]
    assert info["decisions"] == 4 and info["extra_rows"] == 1
    assert info["overrides_per_head"] == {"division": 1, "risk": 1, "key_group": 0}
    assert info["conflicts_resolved"] == [data.conflicting_id]
    report = report_of(lifecycle, lifecycle["c1"])
    table = re.search(r'<table id="table-overrides">.*?</table>', report, re.S).group(0)
    assert data.relabelled_id in table and TAXONOMY.name_of("division", data.relabelled_to) in table
    assert "复核后改" in table and "先分到就业处" not in table  # the latest revision stands
    assert "赵六" in table


def test_export_decisions_is_a_ledger_retrain_accepts(lifecycle, data):
    assert lifecycle["export"].code == 0
    path = lifecycle["export_path"]
    exported = read_decisions(path, TAXONOMY)
    direct = read_decisions(data.db, TAXONOMY)
    columns = ["id", "title", "body", "division", "risk", "key_group", "suggested_division", "accepted"]
    pd.testing.assert_frame_equal(exported[columns], direct[columns])
    assert exported.loc[exported["id"] == data.relabelled_id, "division"].item() == data.relabelled_to
    assert data.extra_text in set(exported["body"])
    assert len(read_ledger(path, TAXONOMY)) == 4  # also readable as a plain ledger (--data)
    # retrain read it as --decisions (the scrambled challenger's run)
    meta = lifecycle["registry"].metadata(lifecycle["c2"])
    assert meta["training_data"]["decisions"]["source"] == path.name
    assert meta["training_data"]["decisions"]["decisions"] == 4


def test_decisions_from_the_service_schema(tmp_path, data):
    """The service's own tables (service.database) hold what training reads."""
    from sqlalchemy import create_engine, insert

    from service.database import Base, DecisionRecord, TriageRecord

    url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    row = data.q2_rows[3]
    with engine.begin() as connection:
        connection.execute(insert(TriageRecord), [{
            "id": "abc", "external_id": row["id"], "title_masked": row["title"], "body_masked": row["body"],
            "model_version": "v", "division": row["division"], "division_confidence": 0.9, "risk": row["risk"],
            "key_group": row["key_group"], "needs_review": False, "suggestion": {}}])
        connection.execute(insert(DecisionRecord), [
            {"triage_id": "abc", "revision": 1, "division": "exams", "risk": "low", "key_group": "none",
             "accepted": False, "decided_by": "甲", "reason": None},
            {"triage_id": "abc", "revision": 2, "division": "pension", "risk": "low", "key_group": "none",
             "accepted": False, "decided_by": "乙", "reason": "改"}])
    engine.dispose()
    frame = read_decisions(url, TAXONOMY)
    assert frame[["id", "division", "decided_by", "revision"]].values.tolist() == [[row["id"], "pension", "乙", 2]]
    assert frame["suggested_division"].item() == row["division"]


def test_unknown_decision_label_names_the_triage_and_field(tmp_path, data):
    path = tmp_path / "bad.db"
    write_decisions_db(path, data.q1_rows, data.q2_rows, data.q1_rows[1])
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("UPDATE decisions SET division = 'housing' WHERE triage_id = 't-4'")
        connection.commit()
    result = run("export-decisions", "--db", str(path), "--out", str(tmp_path / "out.csv"))
    assert result.code == 2
    assert "triage t-4: unknown division 'housing'" in result.err and "column 'division'" in result.err
    assert not (tmp_path / "out.csv").exists()


# ---------------------------------------------------------------- report
def test_report_has_the_figures_and_tables(lifecycle, data):
    report = report_of(lifecycle, lifecycle["c1"])
    # self-contained: nothing to fetch
    for external in ("<script", "<link", "src=", "url(", "http://", "https://"):
        assert external not in report
    # champion vs challenger per head
    for head, metrics in (("division", ("accuracy", "macro-F1")),
                          ("risk", ("high-risk recall", "share flagged high")),
                          ("key_group", ("key-group F1",))):
        table = re.search(rf'<table id="table-{head}">.*?</table>', report, re.S).group(0)
        assert lifecycle["c0"] in table
        for name in metrics:
            assert name in table
    svg_ids = set(re.findall(r'<svg id="([^"]+)"', report))
    assert {"bars-division-challenger", "bars-division-champion", "bars-risk-challenger",
            "bars-key_group-challenger", "confusion-division-challenger", "confusion-division-champion",
            "reliability-division", "label-shares-division", "drift-division", "drift-risk",
            "override-rate"} <= svg_ids
    confusion = re.search(r'<svg id="confusion-division-challenger".*?</svg>', report, re.S).group(0)
    for code in ("labor_inspection", "pension", "external"):
        assert TAXONOMY.name_of("division", code) in confusion
    reliability = re.search(r'<svg id="reliability-division".*?</svg>', report, re.S).group(0)
    assert reliability.count("<polyline") == 2  # champion and challenger
    # data
    counts = re.search(r'<table id="label-counts-division">.*?</table>', report, re.S).group(0)
    assert "held-out period" in counts and "champion&#x27;s training" in counts
    small = re.search(r'<table id="table-small-classes">.*?</table>', report, re.S).group(0)
    assert TAXONOMY.name_of("key_group", "land_lost_farmers") in small  # none in the generated quarters
    assert "never predicted" in small
    conflicts = re.search(r'<table id="table-conflicting-ids">.*?</table>', report, re.S).group(0)
    assert data.conflicting_id in conflicts and "settled by a decision" in conflicts
    duplicates = re.search(r'<table id="table-duplicates">.*?</table>', report, re.S).group(0)
    assert data.duplicated_id in duplicates
    # drift
    assert "Words never seen in training" in report
    assert re.search(r"word vocabulary of champion [^:]+: <b>\d+\.\d %</b> in the held-out period", report)
    override = re.search(r'<table id="table-override-rate">.*?</table>', report, re.S).group(0)
    # (suggested, final) per decision, as write_decisions_db recorded them
    pairs = [(data.q2_rows[0]["division"], data.relabelled_to), (data.q1_rows[2]["division"],) * 2,
             ("external", data.q1_rows[1]["division"]), ("external", "labor_inspection")]
    external = [final != "external" for suggested, final in pairs if suggested == "external"]
    row = (f'{TAXONOMY.name_of("division", "external")}</td><td>external</td><td class="num">{len(external)}</td>'
           f'<td class="num">{sum(external)}</td><td class="num">{100 * sum(external) / len(external):.1f} %</td>')
    assert row in override
    # model card
    card = report[report.index('id="model-card"'):]
    for text in ("Intended use", "A person decides", "must not be used for scoring, ranking, profiling or "
                 "tracking petitioners as persons", "Known weak classes", "Data period", "2026-04-01"):
        assert text in card


# ---------------------------------------------------------------- hold-out choice
def _frame(dates: list[str | None], n_per: int = 40) -> pd.DataFrame:
    rows = []
    for i, when in enumerate(dates * n_per):
        rows.append({"id": f"x{i}", "title": "t", "body": "b", "division": ["pension", "exams"][i % 2],
                     "risk": "low", "key_group": "none", "received_at": pd.Timestamp(when) if when else pd.NaT})
    return pd.DataFrame(rows)


def test_holdout_is_the_latest_quarter_when_dated():
    split = choose_holdout(_frame(["2025-11-03", "2026-02-10", "2026-03-30"]))
    assert split.method == "period" and split.period == "2026Q1"
    assert len(split.held) == 80 and (split.held["received_at"] >= "2026-01-01").all()
    assert choose_holdout(_frame(["2025-11-03", "2026-02-10"]), quarter="2025Q4").period == "2025Q4"


def test_holdout_is_random_and_says_so_when_dates_are_missing():
    split = choose_holdout(_frame([None, None, "2026-02-10"]), seed=1)
    assert split.method == "random" and split.period is None
    assert "only 40 of 120 petitions have a received_at date" in split.description
    assert len(split.held) == 24
    assert sorted(split.held["division"].value_counts().tolist()) == [12, 12]  # stratified


def test_explicit_holdout_ledger_is_scored_and_kept_out_of_training(data, tmp_path):
    registry = Registry(tmp_path / "reg")
    result, version = retrain(registry, "--data", str(data.q1), "--data", str(data.q2), "--holdout", str(data.q2))
    evaluation = registry.metadata(version)["evaluation"]
    assert evaluation["holdout"]["method"] == "ledger"
    assert set(evaluation["challenger"]["ids"]) == {r["id"] for r in data.q2_rows}
    assert f"{len(data.q2_rows)} of them also in the training ledgers were taken out of training" in result.out
    # Q1 without its repeated row and without the id labelled two ways (no decision settles it here)
    assert registry.metadata(version)["training_data"]["rows"] == len(data.q1_rows) - 1


def test_high_recall_bought_with_an_unworkable_queue_is_not_the_bar():
    from training.registry import compare

    champion = {"division": {"macro_f1": 0.6}, "risk": {"high_recall": 0.95, "high_share": 0.25}}
    workable = {"division": {"macro_f1": 0.6}, "risk": {"high_recall": 0.80, "high_share": 0.12}}
    checks = {c.metric: c for c in compare(champion, workable)}
    assert not checks["risk.high_recall"].worse and checks["risk.high_recall"].excused
    flooding = {"division": {"macro_f1": 0.6}, "risk": {"high_recall": 0.99, "high_share": 0.40}}
    assert any(c.worse for c in compare(champion, flooding))


def test_a_drop_that_does_not_count_says_why_beside_ok(capsys):
    # "risk.high_recall champion 0.562 challenger 0.250 -0.312 ok" read as a mistake.
    from training.registry import compare
    from triage.cli import _print_checks

    champion = {"division": {"macro_f1": 0.6}, "risk": {"high_recall": 0.95, "high_share": 0.25}}
    workable = {"division": {"macro_f1": 0.6}, "risk": {"high_recall": 0.80, "high_share": 0.12}}
    _print_checks(compare(champion, workable), 0.02)
    line = next(x for x in capsys.readouterr().out.splitlines() if "risk.high_recall" in x)
    assert line.endswith("ok: the champion flags 25.0% of petitions high, over the 15% a review queue can take; "
                         "the challenger flags 12.0%"), line


def test_the_first_champion_of_a_registry_says_a_running_service_needs_a_restart(small_model, tmp_path, capsys):
    registry = Registry(tmp_path / "registry")
    for version in ("v1", "v2"):
        registry.register(small_model.model, {**small_model.metadata, "version": version})
    assert main(["models", "promote", "v1", "--registry", str(registry.root), "--force", "--reason", "first"]) == 0
    first = capsys.readouterr()
    assert "v1 is now the champion" in first.out
    assert "until it is restarted" in first.err
    assert main(["models", "promote", "v2", "--registry", str(registry.root), "--force", "--reason", "second"]) == 0
    assert "restarted" not in capsys.readouterr().err, "a watched registry's later promotions need no restart"


def test_retrain_groups_thresholds_by_the_ledgers_matter_and_board_as_train_does(data, tmp_path, monkeypatch):
    import training.retrain as retrain_module
    from training.train import matter_groups

    ledger = pd.read_csv(data.q1, dtype=str, keep_default_na=False)
    ledger["事项编号"] = [f"事项-{i // 3}" for i in range(len(ledger))]
    ledger["地市"] = ["甲市" if i % 2 else "乙市" for i in range(len(ledger))]
    path = tmp_path / "台账 带事项编号.csv"
    ledger.drop(columns=["matter"]).to_csv(path, index=False, encoding="utf-8-sig")
    seen: dict[str, pd.DataFrame] = {}

    def fit(frame: pd.DataFrame, *args: object, **kwargs: object) -> None:
        seen["frame"] = frame
        raise KeyboardInterrupt  # what fitting is given is all this test needs

    monkeypatch.setattr(retrain_module, "fit_with_thresholds", fit)
    assert run("retrain", "--registry", str(tmp_path / "reg"), "--data", str(path), "--data", str(data.q2)).code == 130
    frame = seen["frame"]
    from_q1 = frame["source"] == str(path)
    assert set(frame.loc[from_q1, "board"]) == {"甲市", "乙市"}
    assert frame.loc[from_q1, "matter"].str.startswith("事项-").all()
    groups = matter_groups(frame, from_q1.to_numpy())
    assert groups is not None and set(groups[from_q1.to_numpy()]) == {"board:甲市", "board:乙市"}


def test_the_promote_command_printed_after_retrain_pastes_back_with_a_space_in_the_registry(tmp_path, monkeypatch):
    import shlex

    import training.retrain as retrain_module
    from training.report import _verdict
    from training.retrain import RetrainResult
    from triage.cli import build_parser

    registry = tmp_path / "信访 数据" / "registry"
    metadata = {"evaluation": {"holdout": {"description": "2026Q3"}, "challenger": {"metrics": {}}, "champion": None}}
    monkeypatch.setattr(retrain_module, "retrain", lambda *a, **k: RetrainResult(
        "v1", registry / "models" / "v1", registry / "reports" / "v1.html", metadata, []))
    monkeypatch.setattr("training.evaluate.summary_line", lambda metrics: "")
    result = run("retrain", "--data", "台账.csv", "--registry", str(registry))
    (line,) = [ln for ln in result.out.splitlines() if ln.startswith("to put it into service: ")]
    args = build_parser().parse_args(shlex.split(line.removeprefix("to put it into service: "))[1:])
    assert (args.version, args.registry) == ("v1", str(registry))
    html = _verdict({"version": "v1", "registry": str(registry), "evaluation": {"champion": None}})
    assert f"--registry {shlex.quote(str(registry))}" in html.replace("&#x27;", "'")


def test_a_challenger_flagging_too_many_high_is_refused_with_both_shares_not_made_up_figures(small_model, tmp_path):
    from training.registry import PromotionRefused

    registry = Registry(tmp_path / "registry")
    champion = {"division": {"macro_f1": 0.8}, "risk": {"high_recall": 0.5, "high_share": 0.108}}
    flooding = {"division": {"macro_f1": 0.8}, "risk": {"high_recall": 0.5, "high_share": 0.243}}
    evaluation = {"challenger": {"metrics": flooding},
                  "champion": {"version": "in-service", "metrics": champion, "in_service": "/srv/default"}}
    registry.register(small_model.model, {**small_model.metadata, "version": "v1", "evaluation": evaluation})
    with pytest.raises(PromotionRefused) as refused:
        registry.promote("v1")
    message = str(refused.value)
    assert "24.3%" in message and "10.8%" in message and "15%" in message
    assert "1.000" not in message and "0.000" not in message
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        from triage.cli import _print_checks
        _print_checks(refused.value.checks, 0.02)
    (line,) = [ln for ln in printed.getvalue().splitlines() if "high_share" in ln]
    assert "WORSE" in line and "24.3%" in line and "10.8%" in line and "1.000" not in line


def test_a_registry_that_cannot_be_written_is_refused_before_training(data, tmp_path, monkeypatch):
    import training.retrain as retrain_module

    def fit(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained although the registry cannot be written")

    monkeypatch.setattr(retrain_module, "fit_with_thresholds", fit)
    ledger = tmp_path / "台账.csv"
    ledger.write_text("not a folder", encoding="utf-8")
    result = run("retrain", "--data", str(data.q1), "--data", str(data.q2), "--registry", str(ledger / "registry"))
    assert result.code == 2
    assert f"{ledger} is a file, not a folder" in result.err


def _registry_with_champion(small_model, root: Path) -> Registry:
    registry = Registry(root)
    registry.register(small_model.model, {**small_model.metadata, "version": "v1"})
    registry.promote("v1", force=True, reason="first")
    return registry


def test_retrain_signing_with_another_key_than_the_champions_is_refused_before_training(
        small_model, data, tmp_path, monkeypatch):
    import training.retrain as retrain_module

    registry = _registry_with_champion(small_model, tmp_path / "registry")

    def fit(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained a model the service could not load")

    monkeypatch.setattr(retrain_module, "fit_with_thresholds", fit)
    # Run from another folder without the service's TRIAGE_HOME: no key there yet.
    workstation = tmp_path / "工作站"
    monkeypatch.setenv("TRIAGE_HOME", str(workstation / "var"))
    monkeypatch.delenv("TRIAGE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("TRIAGE_SIGNING_KEY_FILE", raising=False)
    get_settings.cache_clear()  # the settings name the key file under TRIAGE_HOME
    try:
        result = run("retrain", "--data", str(data.q1), "--data", str(data.q2), "--registry", str(registry.root))
        assert result.code == 2 and "v1" in result.err and "no signing key" in result.err
        assert not (workstation / "var" / "signing.key").exists()
        monkeypatch.setenv("TRIAGE_SIGNING_KEY", "another key of this workstation")
        result = run("retrain", "--data", str(data.q1), "--data", str(data.q2), "--registry", str(registry.root))
        assert result.code == 2 and "was signed with key id" in result.err and "TRIAGE_SIGNING_KEY" in result.err
    finally:
        get_settings.cache_clear()


def test_a_first_retrain_without_a_signing_key_is_refused_before_training_unless_a_new_key_is_asked_for(data, tmp_path, monkeypatch):
    import training.retrain as retrain_module

    # Run from another folder without the service's TRIAGE_HOME, into a registry with no
    # champion yet: there was no key to compare with, so a key was made in that folder and the
    # challenger signed with it, which the service refused once promoted.
    registry = Registry(tmp_path / "registry")
    workstation = tmp_path / "工作站"
    key_file = workstation / "var" / "signing.key"
    monkeypatch.setenv("TRIAGE_HOME", str(workstation / "var"))
    monkeypatch.delenv("TRIAGE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("TRIAGE_SIGNING_KEY_FILE", raising=False)
    get_settings.cache_clear()  # the settings name the key file under TRIAGE_HOME
    try:
        with monkeypatch.context() as patch:
            patch.setattr(retrain_module, "fit_with_thresholds", lambda *a, **k: pytest.fail("trained without a key"))
            result = run("retrain", "--data", str(data.q1), "--data", str(data.q2), "--registry", str(registry.root))
        assert result.code == 2 and "no signing key" in result.err
        # Names the key file it would make, the TRIAGE_HOME it looked in, and the ways out.
        assert str(key_file) in result.err and f"TRIAGE_HOME is {workstation / 'var'}" in result.err
        assert "TRIAGE_SIGNING_KEY_FILE" in result.err and "--new-signing-key" in result.err
        assert not key_file.exists() and registry.version_names() == []

        result, version = retrain(registry, "--data", str(data.q1), "--data", str(data.q2), "--new-signing-key")
        assert key_file.exists()
        assert registry.key_id(version) == signing_key(create=False, key_file=key_file).key_id
    finally:
        get_settings.cache_clear()


def test_a_first_retrain_with_another_key_than_the_model_in_services_is_refused_before_training(
        small_model_dir, data, tmp_path, monkeypatch):
    import training.retrain as retrain_module

    # A workstation with a key of its own, pointed at the service's model: the model in service
    # could not be loaded with that key, the run went on without comparing, and signed the
    # challenger with a key the service refuses.
    registry = Registry(tmp_path / "registry")
    monkeypatch.setenv("TRIAGE_MODEL_DIR", str(small_model_dir))
    monkeypatch.setenv("TRIAGE_SIGNING_KEY", "another key of this workstation")
    monkeypatch.setattr(retrain_module, "fit_with_thresholds", lambda *a, **k: pytest.fail("trained with another key"))
    result = run("retrain", "--data", str(data.q1), "--data", str(data.q2), "--registry", str(registry.root))
    assert result.code == 2 and f"the model in service ({small_model_dir})" in result.err
    assert "TRIAGE_SIGNING_KEY_FILE" in result.err and registry.version_names() == []


def test_promoting_a_version_the_service_cannot_load_with_the_champions_key_is_refused(
        small_model, tmp_path, monkeypatch):
    from training.registry import PromotionRefused

    registry = _registry_with_champion(small_model, tmp_path / "registry")
    with monkeypatch.context() as patch:
        patch.setenv("TRIAGE_SIGNING_KEY", "another key of this workstation")
        # Compared with v1 and no worse: only the key stands in the way.
        metrics = small_model.metadata["heldout_metrics"]
        evaluation = {"challenger": {"metrics": metrics}, "champion": {"version": "v1", "metrics": metrics}}
        registry.register(small_model.model, {**small_model.metadata, "version": "v2", "evaluation": evaluation})
    with pytest.raises(PromotionRefused, match="signed with key id"):
        registry.promote("v2")
    assert registry.champion() == "v1"
    assert registry.promote("v2", force=True, reason="签名密钥已更换")["forced"]


def test_decisions_on_case_numbers_stored_masked_are_all_kept(tmp_path):
    # Case numbers such as 0531-2026-0001 look like a landline and are stored as [电话]: the
    # decisions on every such petition were taken as one, and all but the last dropped.
    from training.ledger import LedgerWarning

    path = tmp_path / "triage.db"
    bodies = ["我在工地摔伤了腿，单位不给申请工伤认定。", "公司三个月没发工资，老板找不到了。", "我的养老金今年没有按时发放。"]
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.executescript(CONTRACT_DDL)
        for n, (body, division) in enumerate(zip(bodies, ["work_injury", "labor_inspection", "pension"],
                                                 strict=True)):
            connection.execute("INSERT INTO triages VALUES (?,?,?,?,?,?,?,?)",
                               (f"t-{n}", "[电话]", "来信", body, "external", "low", "none", "2026-07-01 02:00:00"))
            connection.execute("INSERT INTO decisions (triage_id, revision, division, risk, key_group, accepted, "
                               "decided_by, reason, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                               (f"t-{n}", 1, division, "low", "none", 0, "张三", "", f"2026-07-0{n + 1} 03:00:00"))
        connection.commit()
    with pytest.warns(LedgerWarning, match="3 decisions have a case number that was stored masked"):
        frame = read_decisions(path, TAXONOMY)
    assert sorted(frame["id"]) == ["t-0", "t-1", "t-2"]
    assert sorted(frame["division"]) == ["labor_inspection", "pension", "work_injury"]


def test_a_damaged_version_is_neither_promoted_nor_rolled_back_to(small_model, tmp_path):
    # The service refuses an artifact cut short and keeps its model: the registry must not
    # name it champion, or the two disagree on what is in service.
    registry = _registry_with_champion(small_model, tmp_path / "registry")
    registry.register(small_model.model, {**small_model.metadata, "version": "v2"})
    registry.register(small_model.model, {**small_model.metadata, "version": "v3"})
    damaged = registry.model_dir("v2") / "model.joblib"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    with pytest.raises(RegistryError, match=r"v2: .* is not the file its metadata records"):
        registry.promote("v2", force=True, reason="新季度")
    assert registry.champion() == "v1"
    registry.promote("v3", force=True, reason="新季度")
    original = registry.model_dir("v1") / "model.joblib"
    original.write_bytes(original.read_bytes()[:1000])
    with pytest.raises(RegistryError, match=r"v1: .* is not the file its metadata records"):
        registry.rollback(reason="回退")
    assert registry.champion() == "v3"


def test_a_database_url_is_named_without_its_password_when_decisions_cannot_be_read(tmp_path):
    # The service's TRIAGE_DATABASE_URL carries the database password: an error printed it
    # on the terminal, where it stayed in the scrollback and in cron and CI logs.
    result = run("export-decisions", "--db", "postgresql+psycopg://triage:S3cretPass@127.0.0.1:1/triage",
                 "--out", str(tmp_path / "决定.csv"))
    assert result.code == 2 and "triage:***@127.0.0.1:1/triage" in result.err and "S3cretPass" not in result.err


def test_the_promote_command_printed_after_retrain_checks_what_retrain_checked(small_model, tmp_path, monkeypatch):
    # retrain --metric division.top3_accuracy --tolerance 0.1 showed "ok", and the plain promote
    # command it printed checked the default metrics instead and refused.
    import shlex

    import training.retrain as retrain_module
    from training.retrain import RetrainResult

    registry = _registry_with_champion(small_model, tmp_path / "信访 数据" / "registry")
    champion = {"division": {"macro_f1": 0.80, "top3_accuracy": 0.95}, "risk": {"high_recall": 0.8, "high_share": 0.1}}
    challenger = {"division": {"macro_f1": 0.72, "top3_accuracy": 0.90}, "risk": {"high_recall": 0.8, "high_share": 0.1}}
    evaluation = {"holdout": {"description": "2026Q3"}, "challenger": {"metrics": challenger},
                  "champion": {"version": "v1", "metrics": champion}}
    registry.register(small_model.model, {**small_model.metadata, "version": "v2", "evaluation": evaluation})
    monkeypatch.setattr(retrain_module, "retrain", lambda *a, **k: RetrainResult(
        "v2", registry.model_dir("v2"), registry.report_path("v2"), {"evaluation": evaluation}, []))
    monkeypatch.setattr("training.evaluate.summary_line", lambda metrics: "")
    result = run("retrain", "--data", "台账.csv", "--registry", str(registry.root),
                 "--metric", "division.top3_accuracy", "--tolerance", "0.1")
    assert result.code == 0, result.err
    (line,) = [ln for ln in result.out.splitlines() if ln.startswith("to put it into service: ")]
    promoted = run(*shlex.split(line.removeprefix("to put it into service: "))[1:])
    assert promoted.code == 0, promoted.err
    assert registry.champion() == "v2"
