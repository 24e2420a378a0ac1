"""The shared runner and run_all.py: statuses, tables, the CI check, and bad input."""

import csv
import subprocess
import sys

import pandas as pd
import pytest

from reproductions import runner

ROOT = runner.ROOT


@pytest.mark.parametrize("measured,printed,expected", [
    (12.449, "12.4", True), (12.45, "12.4", False), (45.6412, "45.6", True), (5.0364, "5.1", False),
    (3.0, "3.0", True),
])
def test_rounds_to(measured, printed, expected):
    assert runner.rounds_to(measured, printed) is expected


@pytest.mark.parametrize("metric,printed,measured,status", [
    ("M-Adds", "9.6", 9.475, "within_tolerance"),
    ("M-Adds", "2.8", 2.637, "off"),
    ("M-Adds", "4.1", 4.089, "match"),
    ("Params", "5.1", 5.0364, "off"),  # Params must round to the printed value
])
def test_cell_status(metric, printed, measured, status):
    assert runner.cell_status(metric, printed, measured) == status


@pytest.mark.parametrize("table", range(1, 10))
def test_reported_files_are_well_formed(table):
    df = runner.load_reported(table)
    assert list(df.columns) == ["row", "label", "attributes", "metric", "unit", "value", "note"]
    assert not df.duplicated(["row", "metric"]).any()
    for _, r in df.iterrows():
        if r["value"]:
            float(r["value"])
        assert r["unit"] in {"M", "B", "T", "%"}


def test_table_rows_and_statuses():
    from reproductions import table1

    counts = {p: runner.measure_counts(p) for p in table1.SPEC.presets}
    df = runner.build_table(table1.SPEC, "count", counts)
    assert list(df.columns) == runner.COLUMNS
    assert len(df) == len(runner.load_reported(1))
    status = df.set_index(["row", "metric"])["status"]
    assert status["resnet50", "Params"] == "match"
    assert status["resnet50", "Top-1"] == "not_measured"
    assert status["lr-net-50", "Params"] == "reported_only"


def test_check_fails_on_changed_golden_and_unrecorded_off_cells(monkeypatch, tmp_path):
    golden = tmp_path / "golden.json"
    golden.write_text('{"resnet50": {"params": 1, "madds": 2}}')
    monkeypatch.setattr(runner, "GOLDEN_FILE", golden)
    monkeypatch.setattr(runner, "FINDINGS_FILE", tmp_path / "none.csv")
    table = pd.DataFrame([{"row": "r", "metric": "M-Adds", "status": "off", "measured": "1.0",
                           "unit": "B", "reported": "2.0", "rel_delta": "-0.5"}])
    failures, known = runner.check({1: table}, {"resnet50": {"params": 1, "madds": 3}})
    assert any("counts changed" in f for f in failures)
    assert any("not a recorded finding" in f for f in failures)
    assert not known


def test_check_lists_recorded_findings_and_stale_ones(monkeypatch, tmp_path):
    findings = tmp_path / "findings.csv"
    with findings.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["table", "row", "metric", "direction", "finding"])
        w.writerow([1, "r", "M-Adds", "below", "known gap"])
        w.writerow([1, "s", "M-Adds", "either", "gap that closed"])
    monkeypatch.setattr(runner, "FINDINGS_FILE", findings)
    table = pd.DataFrame([
        {"row": "r", "metric": "M-Adds", "status": "off", "measured": "1.0", "unit": "B",
         "reported": "2.0", "rel_delta": "-0.5"},
        {"row": "s", "metric": "M-Adds", "status": "match", "measured": "2.0", "unit": "B",
         "reported": "2.0", "rel_delta": "0"},
    ])
    failures, known = runner.check({1: table}, {})
    assert len(known) == 1 and "table 1 / r / M-Adds" in known[0]
    assert failures == ["table 1 / s / M-Adds: recorded as a finding but now match; "
                        "remove it from reproductions/findings.csv"]


def test_check_fails_when_a_finding_states_the_wrong_side_of_the_paper(monkeypatch, tmp_path):
    # A finding's direction is checked against every cell it explains (issue #10, item 9: a
    # note said "above" of a cell that is below).
    findings = tmp_path / "findings.csv"
    findings.write_text("table,row,metric,direction,finding\n6,*,M-Adds,above,sits above the paper\n")
    monkeypatch.setattr(runner, "FINDINGS_FILE", findings)
    table = pd.DataFrame([
        {"row": "a", "metric": "M-Adds", "status": "within_tolerance", "measured": "219.666", "unit": "B",
         "reported": "220.8", "rel_delta": "-0.0051"},
        {"row": "b", "metric": "M-Adds", "status": "within_tolerance", "measured": "421.1", "unit": "B",
         "reported": "419.6", "rel_delta": "+0.0036"},
    ])
    failures, _ = runner.check({6: table}, {})
    assert failures == ["table 6 / a / M-Adds: its finding says the count is above the paper, but it is below "
                        "(-0.0051); correct reproductions/findings.csv"]


def test_recorded_findings_say_the_side_of_the_paper_their_direction_says():
    # The text may name a side only if it is the recorded direction (which the check verifies).
    words = {"above": ("above", "over the paper"), "below": ("short of", "below", "fewer")}
    for (table, row, metric), finding in runner.load_findings().items():
        for side, phrases in words.items():
            if any(p in finding.text for p in phrases):
                assert finding.direction == side, (table, row, metric, finding.text)


def test_write_atomic_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "t.csv"
    target.write_text("old")


    with pytest.raises(TypeError):
        runner.write_atomic(target, 123)  # not text: the write fails
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def _run_all(*args):
    return subprocess.run([sys.executable, "run_all.py", "--quiet", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_run_all_rejects_bad_input_in_one_line_from_the_command_line():
    result = _run_all("--tables", "12")
    assert result.returncode == 2
    assert "unknown table '12'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["--tables", "x"], "unknown table 'x'"),
    (["--tables", "1,0"], "unknown table '0'"),
    (["--fidelity", "proxy", "--tables", "3"], "table 3 declares no proxy experiments yet"),
    (["--tables", "6", "--proxy-scale", "large"], "--proxy-scale only applies to the training fidelities"),
    (["--fidelity", "full", "--data-dir", "/data", "--proxy-scale", "large"], "--proxy-scale applies to --fidelity proxy"),
    (["--fidelity", "proxy", "--proxy-scale", "huge"], "argument --proxy-scale: invalid choice: 'huge'"),
    (["--fidelity", "proxy", "--tables", "6", "--rows", "resnet50,nonsense"],
     "table 6 declares no proxy experiment for row nonsense"),
    (["--fidelity", "proxy", "--tables", "6,7", "--rows", "resnet50"], "--rows names rows of one table"),
    (["--tables", "6", "--rows", "resnet50"], "--rows only applies to the training fidelities"),
    (["--fidelity", "proxy", "--tables", "1", "--seeds", "0,1"], "at least 3 seeds"),
    (["--fidelity", "proxy", "--seeds", "1,x"], "--seeds takes comma-separated"),
    (["--fidelity", "proxy", "--check"], "--check and --update-golden compare counts"),
    (["--fidelity", "full", "--tables", "1"], "--fidelity full needs --data-dir"),
    (["--fidelity", "full", "--tables", "1", "--data-dir", "/nonexistent"],
     "dataset folder /nonexistent/imagenet not found"),
    # Flags that used to be ignored or badly reported (issue #10, item 6).
    (["--seeds", "0,1,2"], "--seeds only applies to the training fidelities"),
    (["--data-dir", "/data"], "--data-dir only applies to the training fidelities"),
    (["--tables", "1", "--strategy", "mirrored"], "--strategy only applies to the training fidelities"),
    (["--fidelity", "proxy", "--seeds", "0,0,0"], "--seeds lists seed 0 more than once"),
    (["--fidelity", "proxy", "--seeds", "-1,0,1"], "--seeds takes comma-separated non-negative integers, got '-1,0,1'"),
    (["--fidelity", "proxy", "--data-dir", "/data"], "--data-dir applies to --fidelity full"),
    (["--fidelity", "proxy", "--figures"], "--figures draws the count figures"),
    (["--fidelity", "fast"], "argument --fidelity: invalid choice: 'fast'"),
    (["--backend", "torch"], "argument --backend: invalid choice: 'torch'"),
    (["--tables"], "argument --tables: expected one argument"),
])
def test_run_all_rejects_bad_input_in_one_line(args, message, capsys):
    # In-process (no TensorFlow start-up per case); the case above runs the real command line.
    import run_all

    assert run_all.main(["--quiet", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and not captured.out


@pytest.mark.heavy
def test_run_all_check_end_to_end_writes_nothing_and_catches_a_stale_table(output_dir):
    import shutil

    shutil.copytree(ROOT / "tables", output_dir / "tables")
    before = {p.name: p.read_bytes() for p in (output_dir / "tables").iterdir()}
    result = _run_all("--tables", "1", "--check")
    assert result.returncode == 0, result.stderr
    assert "check passed" in result.stdout
    assert {p.name: p.read_bytes() for p in (output_dir / "tables").iterdir()} == before
    assert not (output_dir / "report").exists()
    # A committed table that is not what the code produces fails the check.
    md = output_dir / "tables" / "table1.md"
    md.write_text(md.read_text() + "edited by hand\n")
    result = _run_all("--tables", "1", "--check")
    assert result.returncode == 1
    assert "tables/table1.md differs from what the code produces" in result.stderr
