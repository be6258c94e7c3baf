from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving import CLI, ROOT

from training.train import SYNTHETIC_WEIGHT, matter_groups, sample_weights
from triage.cli import main


def test_predict_writes_one_row_per_petition(small_model_dir, small_corpus, tmp_path):
    ledger = tmp_path / "in.csv"
    frame = pd.read_csv(small_corpus).head(25)[["id", "title", "body"]]
    frame.loc[0, "id"] = "=HYPERLINK(1)"
    frame.to_csv(ledger, index=False)
    out = tmp_path / "out.csv"
    assert main(["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(out)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert len(rows) == 25
    for column in ("id", "division", "division_confidence", "division_top3", "risk", "risk_confidence",
                   "key_group", "key_group_confidence", "needs_review"):
        assert column in rows[0]
    assert rows[0]["id"].startswith("'="), "formula-like cells must be neutralised for Excel"


def test_evaluate_reports_every_head(small_model_dir, small_corpus, capsys):
    assert main(["evaluate", "--model", str(small_model_dir), "--data", str(small_corpus), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for head in ("division", "risk", "key_group"):
        assert {"accuracy", "macro_f1", "per_class", "confusion"} <= metrics[head].keys()
    assert "high_recall" in metrics["risk"] and "any_f1" in metrics["key_group"]


def test_failed_training_writes_nothing_and_names_the_row(tmp_path, small_corpus, capsys):
    bad = tmp_path / "bad.csv"
    frame = pd.read_csv(small_corpus).head(50)
    frame.loc[7, "division"] = "housing"
    frame.to_csv(bad, index=False)
    out = tmp_path / "model"
    assert main(["train", "--data", str(bad), "--out", str(out)]) == 2
    assert "row 9, column 'division'" in capsys.readouterr().err
    assert not out.exists()
    assert not list(tmp_path.glob(".model*"))


def test_generated_petitions_count_less_only_beside_real_ones():
    mixed = pd.DataFrame({"synthetic": [True, False, True]})
    assert sample_weights(mixed).tolist() == [SYNTHETIC_WEIGHT, 1.0, SYNTHETIC_WEIGHT]
    # A ledger of one kind is weighed evenly: scaling every row would only change the SVM's C.
    assert sample_weights(pd.DataFrame({"synthetic": [True, True]})) is None
    assert sample_weights(pd.DataFrame({"title": ["a"]})) is None


def test_petitions_of_one_matter_share_a_calibration_group_where_thresholds_are_chosen():
    frame = pd.DataFrame({"id": ["g1", "g2", "g3", "r1", "r2"], "matter": ["s1", "s1", "s2", "", "s2"],
                          "synthetic": [True, True, True, False, False], "title": [""] * 5,
                          "body": ["养老金怎么算", "工伤认定要多久", "社保卡丢了怎么补办", "失业金领取条件", "职称评审时间"]})
    everywhere = matter_groups(frame, np.ones(len(frame), bool))
    assert everywhere[0] == everywhere[1] != everywhere[2]
    assert everywhere[2] == everywhere[4] and everywhere[3] not in set(everywhere[[0, 1, 2, 4]])
    # Thresholds chosen on the real rows: those share no matter, so nothing is grouped.
    assert matter_groups(frame, ~frame["synthetic"].to_numpy()) is None
    assert matter_groups(frame.drop(columns="matter"), np.ones(len(frame), bool)) is None


def test_predict_and_link_write_into_an_output_folder_that_does_not_exist_yet(small_model_dir, small_corpus,
                                                                              tmp_path, capsys):
    ledger = tmp_path / "in.csv"
    pd.read_csv(small_corpus).head(5)[["id", "title", "body"]].to_csv(ledger, index=False)
    predicted = tmp_path / "results" / "2026q4" / "suggestions.csv"
    assert main(["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(predicted)]) == 0
    assert len(list(csv.DictReader(predicted.open(encoding="utf-8-sig")))) == 5
    linked = tmp_path / "linked" / "matters.csv"
    assert main(["link", "--input", str(ledger), "--output", str(linked)]) == 0
    assert len(list(csv.DictReader(linked.open(encoding="utf-8-sig")))) == 5


def _process_group(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                found.append(int(entry.name))
    return found


def _partial_size(folder: Path, out: Path) -> int:
    """The size of the temporary file a command writes `out` through; 0 while there is none."""
    for partial in folder.glob(f".{out.name}.*"):
        with contextlib.suppress(FileNotFoundError):
            return partial.stat().st_size
    return 0


def test_predict_stopped_with_sigterm_leaves_no_partial_output_and_no_workers(small_model_dir, small_corpus, tmp_path):
    frame = pd.read_csv(small_corpus)[["id", "title", "body"]]
    ledger = tmp_path / "big.csv"
    pd.concat([frame.assign(id=frame["id"] + f"-{i}") for i in range(25)]).to_csv(ledger, index=False)
    out = tmp_path / "out.csv"
    out.write_text("last quarter's results\n", encoding="utf-8")
    with (tmp_path / "stderr").open("w") as stderr:
        run = subprocess.Popen([*CLI, "predict", "--model", str(small_model_dir), "--input", str(ledger), "--output",
                                str(out), "--workers", "2"], cwd=ROOT, stderr=stderr, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while _partial_size(tmp_path, out) <= 10_000 and run.poll() is None:
                assert time.monotonic() < deadline, "predict never started writing"
                time.sleep(0.05)
            assert run.poll() is None, "the ledger was scored before it could be stopped; make it longer"
            run.send_signal(signal.SIGTERM)
            assert run.wait(timeout=120) == 143
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
    assert "terminated; nothing was written" in (tmp_path / "stderr").read_text()
    assert out.read_text(encoding="utf-8") == "last quarter's results\n"
    assert not list(tmp_path.glob(f".{out.name}*"))
    deadline = time.monotonic() + 10
    while _process_group(run.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _process_group(run.pid), "the scoring workers outlived predict"


def test_an_output_that_cannot_be_written_is_named_in_one_line_not_a_traceback(small_model_dir, small_corpus,
                                                                               tmp_path, capsys):
    ledger = tmp_path / "in.csv"
    pd.read_csv(small_corpus).head(5)[["id", "title", "body"]].to_csv(ledger, index=False)
    # A file where the output's folder should be: the same refusal as a read-only or full disk.
    blocked = tmp_path / "results"
    blocked.write_text("", encoding="utf-8")
    for command in (["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(blocked / "p.csv")],
                    ["link", "--input", str(ledger), "--output", str(blocked / "l.csv")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"triage {command[0]}: error: {blocked}" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "results"]


def _unwritable(folder: str) -> bool:
    # Tried: os.access says yes to root wherever the mode would let it.
    try:
        os.rmdir(tempfile.mkdtemp(dir=folder))
    except OSError:
        return True
    return False


@pytest.mark.skipif(not _unwritable("/sys"), reason="needs a folder no one may write in (Linux's /sys)")
def test_an_output_in_a_folder_that_cannot_be_written_is_named_as_typed(small_model_dir, small_corpus, tmp_path, capsys):
    # The errors named the temporary file beside it (/sys/.p.csv.intz5uwb.tmp), never typed.
    ledger = tmp_path / "in.csv"
    pd.read_csv(small_corpus).head(5)[["id", "title", "body"]].to_csv(ledger, index=False)
    for command, out in ((["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output"], "/sys/p.csv"),
                         (["train", "--data", str(small_corpus), "--out"], "/sys/m")):
        assert main([*command, out]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"triage {command[0]}: error: {out}: "), err


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_link_stopped_half_way_leaves_no_partial_output_and_names_the_file(failure, small_corpus, tmp_path,
                                                                           monkeypatch, capsys):
    # A full disk or Ctrl-C while link wrote left OUT.csv.tmp, full of petition text, behind
    # a message saying nothing was written; the disk error did not say which file.
    ledger = tmp_path / "in.csv"
    pd.read_csv(small_corpus).head(5)[["id", "title", "body"]].to_csv(ledger, index=False)
    out = tmp_path / "linked.csv"

    def write_half_then_fail(frame, path, **options):
        Path(path).write_text("id,matter,title,body\nXF-1,M1,老板拖欠工资,", encoding="utf-8")
        raise failure

    monkeypatch.setattr(pd.DataFrame, "to_csv", write_half_then_fail)
    code = main(["link", "--input", str(ledger), "--output", str(out)])
    err = capsys.readouterr().err
    if isinstance(failure, OSError):
        assert code == 2 and f"triage link: error: {out}: No space left on device" in err, err
    else:
        assert code == 128 + signal.SIGINT and "nothing was written" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_two_links_writing_one_output_do_not_share_a_temporary_file(small_corpus, tmp_path):
    # The temporary file had a fixed name: a second run wrote into, and renamed away, the
    # file the first was still writing.
    ledger = tmp_path / "in.csv"
    pd.read_csv(small_corpus).head(5)[["id", "title", "body"]].to_csv(ledger, index=False)
    out = tmp_path / "linked.csv"
    other_run = tmp_path / "linked.csv.tmp"
    other_run.write_text("another run's rows", encoding="utf-8")
    assert main(["link", "--input", str(ledger), "--output", str(out)]) == 0
    assert other_run.read_text(encoding="utf-8") == "another run's rows"
    assert len(list(csv.DictReader(out.open(encoding="utf-8-sig")))) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "linked.csv", "linked.csv.tmp"]


def test_train_refuses_an_output_it_cannot_write_before_fitting(small_corpus, tmp_path, capsys):
    blocked = tmp_path / "models"
    blocked.write_text("", encoding="utf-8")
    assert main(["train", "--data", str(small_corpus), "--out", str(blocked / "q4")]) == 2
    captured = capsys.readouterr()
    assert f"triage train: error: {blocked}" in captured.err, captured.err
    # Found before the ledger is even read, so no training time is spent on it.
    assert "reading" not in captured.err and "petitions" not in captured.err, captured.err


def test_train_never_replaces_a_folder_or_file_that_is_not_a_model(small_corpus, tmp_path, capsys):
    # Saving replaces --out as a whole: `--out .`, a desktop folder or the ledger itself
    # (a slip of the keyboard) were deleted with everything in them.
    folder = tmp_path / "desktop"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me", encoding="utf-8")
    ledger = tmp_path / "ledger.csv"
    ledger.write_bytes(small_corpus.read_bytes())
    for out, named in ((folder, "notes.txt"), (ledger, "is not a model directory")):
        assert main(["train", "--data", str(ledger), "--out", str(out)]) == 2
        captured = capsys.readouterr()
        assert f"triage train: error: {out}" in captured.err and named in captured.err, captured.err
        assert "reading" not in captured.err, "refused before the ledger is read"
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert ledger.read_bytes() == small_corpus.read_bytes()


def test_saving_a_model_over_an_earlier_one_or_into_an_empty_folder_still_works(small_model, tmp_path):
    from model.artifact import ArtifactError, load_model, read_metadata, save_model

    empty = tmp_path / "empty"
    empty.mkdir()
    save_model(small_model.model, empty, {"version": "first"})
    save_model(small_model.model, empty, {"version": "second"})
    assert read_metadata(empty)["version"] == "second"
    assert load_model(empty).version == "second"
    (empty / "notes.txt").write_text("", encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"notes\.txt"):
        save_model(small_model.model, empty, {"version": "third"})
    assert read_metadata(empty)["version"] == "second"


def test_predict_and_link_never_write_over_their_input_ledger_or_into_a_folder(small_model_dir, small_corpus,
                                                                             tmp_path, capsys):
    ledger = tmp_path / "台账.csv"
    pd.read_csv(small_corpus).head(5).to_csv(ledger, index=False)
    before = ledger.read_bytes()
    for command in (["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(ledger)],
                    ["link", "--input", str(ledger), "--output", str(tmp_path / "." / "台账.csv")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"triage {command[0]}: error:" in err and "is also given as --input" in err, err
        assert ledger.read_bytes() == before, "the office's ledger was replaced by the results"
    assert main(["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"triage predict: error: {tmp_path}: is a folder" in err, err
    assert "scoring" not in err, "refused before the model is loaded and the ledger scored"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["台账.csv"]


def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path):
    # `triage evaluate … | head`: the closed pipe was reported as "error: Broken pipe", exit 2,
    # as if the command had failed.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen([*CLI, "models", "list", "--registry", str(tmp_path / "registry")], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run.stdout.close()  # the reader is gone before anything is written
    err = run.stderr.read().decode()
    assert run.wait(timeout=60) == 128 + signal.SIGPIPE, err
    assert err == "", err


@pytest.mark.parametrize("tolerance", ["nan", "inf", "5", "-0.1", "two"])
def test_a_tolerance_that_would_let_any_model_through_or_none_is_refused(tolerance, tmp_path, capsys):
    # --tolerance 5 or nan promoted a far worse model without --force or a reason (nan
    # compares false: nothing was ever "worse"), and nan went into registry.json, not JSON.
    for command in (["models", "promote", "v2", "--registry", str(tmp_path / "registry")],
                    ["retrain", "--data", "q.csv", "--registry", str(tmp_path / "registry")]):
        with pytest.raises(SystemExit) as stopped:
            main([*command, "--tolerance", tolerance])
        assert stopped.value.code == 2
        assert "expected a number from 0 to 1" in capsys.readouterr().err
    assert not (tmp_path / "registry").exists()


@pytest.mark.parametrize(("written", "quarter"), [("2026Q3", "2026Q3"), ("2026-Q3", "2026Q3"), ("2026 q3", "2026Q3"),
                                                  ("2026年第三季度", "2026Q3"), ("2026年第4季度", "2026Q4")])
def test_a_holdout_quarter_is_taken_as_people_write_it(written, quarter):
    from triage.cli import build_parser

    args = build_parser().parse_args(["retrain", "--data", "q.csv", "--holdout-quarter", written])
    assert args.holdout_quarter == quarter


def test_a_holdout_quarter_that_is_no_quarter_is_refused_before_anything_is_read(tmp_path, capsys):
    # Found only after the ledgers were read and a model trained from them, as "no petition
    # received in 2026-13" beside a list of quarters.
    with pytest.raises(SystemExit) as stopped:
        main(["retrain", "--data", str(tmp_path / "missing.csv"), "--holdout-quarter", "2026-13"])
    assert stopped.value.code == 2
    assert "'2026-13': expected a quarter such as 2026Q3" in capsys.readouterr().err


def test_predict_given_a_registry_names_the_champions_directory(small_model, small_corpus, tmp_path, capsys):
    # "registry/metadata.json is missing; not a model directory" left the user to find out
    # that a version directory was meant, and which.
    from training.registry import Registry

    registry = Registry(tmp_path / "registry")
    registry.register(small_model.model, {**small_model.metadata, "version": "v1"}, "<html></html>")
    registry.promote("v1", by="test", force=True, reason="first champion")
    out = tmp_path / "out.csv"
    assert main(["predict", "--model", str(registry.root), "--input", str(small_corpus), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"is a model registry: give one of its versions, {registry.root / 'models' / 'v1'} (its champion)" in err, err
    assert main(["predict", "--model", str(registry.root / "models" / "v1"), "--input", str(small_corpus),
                 "--output", str(out)]) == 0


def test_evaluating_a_small_ledger_without_key_groups_shows_na_and_no_sklearn_warning():
    # "key group any-F1 0.000" was shown for a ledger with no key-group petition where none
    # was predicted either, as if the model had got every one wrong, beside scikit-learn's
    # "A single label was found" warning.
    import warnings

    from training.evaluate import evaluate_decisions, summary_line

    decision = {"division": "pension", "division_top3": [("pension", 0.9)], "division_confidence": 0.9,
                "risk": "low", "key_group": "none", "needs_review": False}
    truth = {"division": ["pension", "pension"], "risk": ["low", "low"], "key_group": ["none", "none"]}
    codes = {"division": ["pension", "labor_inspection"], "risk": ["low", "medium", "high"],
             "key_group": ["none", "minban_teachers"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = evaluate_decisions([decision, decision], truth, codes)
    assert metrics["key_group"]["any_f1"] is None
    assert "key group any-F1 n/a" in summary_line(metrics)
    assert metrics["division"]["confusion"] == {"labels": ["pension"], "matrix": [[2]]}
    # One petition in a key group, missed: that is a score of 0, not n/a.
    truth["key_group"] = ["minban_teachers", "none"]
    assert evaluate_decisions([decision, decision], truth, codes)["key_group"]["any_f1"] == 0.0


def test_retrain_refuses_a_held_out_ledger_and_quarter_together(tmp_path, capsys):
    # The README gives them as alternatives; with both, the quarter was silently ignored.
    with pytest.raises(SystemExit) as stopped:
        main(["retrain", "--data", str(tmp_path / "台账.csv"), "--holdout", str(tmp_path / "三季度.csv"),
              "--holdout-quarter", "2025Q4"])
    assert stopped.value.code == 2
    assert "--holdout-quarter: not allowed with argument --holdout" in capsys.readouterr().err
