"""``csc batch-eval``: the original's CSV, a local pool of one-row processes, and the Kubernetes Job's submit path."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml
from csc_evaluator.batch import parse_batch_csv
from csc_evaluator.cli import batch_main, main
from csc_evaluator.k8sjob import parse_indexes


@pytest.fixture
def batch(tmp_path, tiny_case, ev):
    """Truth + four submissions in their own folders: perfect, shifted, missing, not a zip; and the CSV."""
    _, truth = tiny_case
    shifted = {c: {k: (np.roll(a, 1, axis=0), g) for k, (a, g) in labels.items()} for c, labels in truth.items()}
    for name, arrays in (("a", truth), ("b", shifted)):
        (tmp_path / "subs" / name).mkdir(parents=True)
        ev.write_submission(tmp_path / "subs" / name / "sub.zarr", arrays)
        ev.zip_dir(tmp_path / "subs" / name / "sub.zarr", tmp_path / "subs" / name / "submission.zip")
    (tmp_path / "subs" / "d").mkdir()
    (tmp_path / "subs" / "d" / "submission.zip").write_bytes(b"not a zip")
    csv = tmp_path / "batch.csv"
    csv.write_text(
        "team,data_path,evaluation_id\n"
        f"x,{tmp_path / 'subs/a/submission.zip'},007\n"  # absolute path; an integer id as pandas reads it
        "y,subs/b/submission.zip,b-2\n"  # relative to the CSV's folder
        "\n"
        "z,subs/c/submission.zip,3\n"  # not there
        "w,subs/d/submission.zip,4\n"  # not a zip
    )
    return tmp_path, csv


def _argv(tmp_path, csv, *extra):
    return ["-c", str(csv), "-t", str(tmp_path / "truth.zarr"), "-q", *extra]


def test_pool_scores_every_row_like_csc_evaluate_and_counts_failures(batch, capsys):
    tmp_path, csv = batch
    rc = batch_main(_argv(tmp_path, csv, "--workers", "2"))
    out = capsys.readouterr().out.splitlines()
    assert rc == 2, out  # two rows failed; the others were scored all the same
    assert out[-1] == "batch-eval: 2 of 4 rows scored, 2 failed"
    assert sorted(ln.split(":")[0] for ln in out[:-1]) == [
        f"row {i} (evaluation {e})" for i, e in enumerate(["7", "b-2", "3", "4"])
    ]
    a, b = tmp_path / "subs/a", tmp_path / "subs/b"
    assert json.loads((a / "eval_7.results").read_text())["overall_score"] == 1.0
    shifted = json.loads((b / "eval_b-2.results").read_text())
    assert 0 < shifted["overall_score"] < 1
    assert (b / "eval_b-2_extended.results").is_file() and (b / "eval_b-2.scores.json").is_file()
    # the same numbers as one csc-evaluate run of that submission
    assert main([str(b / "submission.zip"), "--truth", str(tmp_path / "truth.zarr"), "--output", str(tmp_path / "r.json"), "-q"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "r.json").read_text()) == shifted
    failed = {ln.split(":")[0]: ln for ln in out if "FAILED" in ln}
    assert "submission not found" in failed["row 2 (evaluation 3)"] and not (tmp_path / "subs/c").exists()
    assert "(exit 2)" in failed["row 3 (evaluation 4)"] and (tmp_path / "subs/d/eval_4.log").is_file()
    assert not (tmp_path / "subs/d/eval_4.results").exists()


def test_one_row_is_what_a_pod_runs(batch, capsys):
    tmp_path, csv = batch
    assert batch_main(_argv(tmp_path, csv, "--row", "1")) == 0
    assert (tmp_path / "subs/b/eval_b-2.results").is_file() and not (tmp_path / "subs/a/eval_7.results").exists()
    assert batch_main(_argv(tmp_path, csv, "--row", "3")) == 2  # that row's own exit code: bad input
    assert batch_main(_argv(tmp_path, csv, "--row", "9")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--row 9: " + f"{csv} has 4 data rows (0..3)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("path,evaluation_id\na.zip,1\n", "missing data_path"),
        ("data_path,evaluation_id\n", "no rows after the header"),
        ("data_path,evaluation_id\na.zip,1\na.zip,01\n", "both would write eval_1.results"),
        ("data_path,evaluation_id\na.zip,../x\n", "cannot name a file"),
        ("data_path,evaluation_id\n,1\n", "line 2: data_path is empty"),
    ],
)
def test_bad_csv_is_one_line_exit_2_and_runs_nothing(tmp_path, tiny_case, capsys, text, expected):
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    before = sorted(tmp_path.rglob("*"))
    assert batch_main(_argv(tmp_path, csv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and str(csv) in err[0], err
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--apply"], "--apply submits the Job written by --kubernetes"),
        (["--kubernetes", "--row", "0"], "give one"),
        (["--kubernetes", "--data-root", "/usr"], "is not under --data-root /usr"),
        (["--workers", "0"], "--workers: must be >= 1"),
        (["--kubernetes", "--job-name", "Bad_Name"], "--job-name 'Bad_Name'"),
    ],
)
def test_bad_options_are_one_line(batch, capsys, extra, expected):
    tmp_path, csv = batch
    assert batch_main(_argv(tmp_path, csv, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "batch.job.yaml").exists()


def test_csv_rows_resolve_against_the_csv_folder(tmp_path):
    rows = parse_batch_csv("data_path,evaluation_id\nsub/s.zip, 12 \n/abs/t.zip,run-a\n", tmp_path / "in" / "b.csv")
    assert [(r.submission, r.evaluation_id) for r in rows] == [
        ((tmp_path / "in/sub/s.zip").resolve(), "12"),
        (Path("/abs/t.zip"), "run-a"),
    ]
    assert rows[0].result == (tmp_path / "in/sub/eval_12.results").resolve()


def _fake_kubectl(bindir: Path, status: dict) -> Path:
    """A kubectl that records its arguments and answers `get job` with ``status``."""
    bindir.mkdir()
    calls = bindir / "calls.txt"
    script = bindir / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'case "$*" in *"get job"*) cat <<\'EOF\'\n' + json.dumps({"status": status}) + "\nEOF\n;; esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return calls


def test_kubernetes_apply_waits_and_counts_failed_indexes(batch, capsys, monkeypatch):
    tmp_path, csv = batch
    status = {"failedIndexes": "1,3", "conditions": [{"type": "Failed", "status": "True", "reason": "FailedIndexes"}]}
    calls = _fake_kubectl(tmp_path / "bin", status)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    rc = batch_main(_argv(tmp_path, csv, "--kubernetes", "--apply", "--data-root", str(tmp_path), "-n", "3",
                          "--namespace", "ns1", "--poll-s", "0.01"))  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 2 and "batch-eval: 2 of 4 rows scored, 2 failed" in out
    job = tmp_path / "batch.job.yaml"
    assert calls.read_text().splitlines() == [
        f"--namespace ns1 apply -f {job}",
        "--namespace ns1 get job csc-batch-eval -o json",
    ]
    doc = yaml.safe_load(job.read_text())
    assert (
        doc["spec"]["completions"] == 4
        and "--eval-workers=3" in doc["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    pods_csv = (tmp_path / "batch.job.csv").read_text().splitlines()
    assert pods_csv == ["data_path,evaluation_id", "subs/a/submission.zip,7", "subs/b/submission.zip,b-2",
                        "subs/c/submission.zip,3", "subs/d/submission.zip,4"]  # fmt: skip


def test_kubernetes_without_kubectl_is_bad_input(batch, capsys, monkeypatch):
    tmp_path, csv = batch
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert batch_main(_argv(tmp_path, csv, "--kubernetes", "--apply", "--data-root", str(tmp_path))) == 2
    assert "needs kubectl on PATH" in capsys.readouterr().err


def test_failed_indexes_syntax():
    assert parse_indexes("1,3-5,9") == {1, 3, 4, 5, 9}
    assert parse_indexes(None) == set() == parse_indexes("")
