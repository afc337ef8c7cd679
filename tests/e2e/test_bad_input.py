"""Every stage refuses a missing, corrupted or wrong-kind input manifest the same way:
one line on stderr naming the file and the problem, exit code 2, no output manifest."""

import importlib
import json

import pytest
from csc_common.manifest import new_manifest, now, write_manifest

# stage module, the flag taking the input manifest, extra args, output flag -> file name
STAGES = {
    "trainer": ("csc_trainer.cli", ["--dataset", "{m}"], "model.json"),
    "exporter": ("csc_exporter.cli", ["--model", "{m}"], "onnx-model.json"),
    "predictor": ("csc_predictor.cli", ["--model", "{m}", "--dataset", "{m}"], "predictions.json"),
    "postprocessor": ("csc_postprocessor.cli", ["--predictions", "{m}"], "processed.json"),
    "packer": ("csc_packer.cli", ["--processed", "{m}", "--test-manifest", "{csv}"], "submission.json"),
}


def _wrong_kind(path):
    write_manifest(
        path,
        new_manifest(
            "submission",
            "packer",
            now(),
            args=[],
            zip={"path": "s.zip", "sha256": "0" * 64, "bytes": 1},
            rows=0,
            packed=0,
            missing=[],
        ),
    )


CASES = {
    "missing": (None, "manifest file not found"),
    "corrupted": ('{"kind": "dataset", ', "not valid JSON"),
    "wrong-kind": (_wrong_kind, "/kind: is 'submission'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_refuses_bad_manifest(tmp_path, capsys, shared_cellmap, stage, case):
    module, args, out_name = STAGES[stage]
    make, expected = CASES[case]
    m = tmp_path / "in.json"
    if callable(make):
        make(m)
    elif make is not None:
        m.write_text(make)
    out = tmp_path / "out" / out_name
    argv = [a.format(m=m, csv=shared_cellmap / "tests_test_crop_manifest.csv") for a in args]
    rc = importlib.import_module(module).main([*argv, "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and str(m) in err[0] and expected in err[0], err
    assert not out.exists()


def test_evaluator_refuses_missing_submission(tmp_path, capsys, shared_cellmap):
    from csc_common.volumes import open_group
    from csc_evaluator.cli import main

    open_group(tmp_path / "truth.zarr", "w")
    out = tmp_path / "result.json"
    rc = main(
        [
            str(tmp_path / "nope.zip"),
            "--truth",
            str(tmp_path / "truth.zarr"),
            "--test-manifest",
            str(shared_cellmap / "tests_test_crop_manifest.csv"),
            "--output",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nope.zip" in err[0]
    assert not out.exists() and not (tmp_path / "scores.json").exists()


def test_viewer_refuses_corrupted_manifest(tmp_path, capsys):
    from csc_viewer.cli import main

    m = tmp_path / "x.json"
    m.write_text(json.dumps([1]))
    rc = main(["--manifest", str(m), "--montage", str(tmp_path / "m.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(m) in err[0]
    assert not (tmp_path / "m.png").exists()
