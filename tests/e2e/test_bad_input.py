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


# Flags that would be silently ignored, or contradict each other: one line, exit 2, nothing written.
# The other inputs need not exist: the refusal comes before anything is read.
CONTRADICTIONS = {
    "predict --roi with --crops": (
        "csc_predictor.cli",
        [
            "--model",
            "m.json",
            "--dataset",
            "d.json",
            "--output",
            "out/p.json",
            "--roi",
            "0,0,0:8,8,8",
            "--crops",
            "901",
        ],
        "--crops '901' would be ignored with --roi/--whole-volume",
    ),
    "predict --volume without a region": (
        "csc_predictor.cli",
        ["--model", "m.json", "--dataset", "d.json", "--output", "out/p.json", "--volume", "ds"],
        "--volume 'ds' would be ignored without --roi or --whole-volume",
    ),
    "fetch --source local with --endpoint-url": (
        "csc_fetcher.cli",
        ["--source", "local", "--bucket-dir", "b", "--dest", "out", "--endpoint-url", "http://127.0.0.1:9"],
        "--endpoint-url 'http://127.0.0.1:9' would be ignored with --source local",
    ),
    "fetch --source synthetic with --endpoint-url": (
        "csc_fetcher.cli",
        ["--source", "synthetic", "--dest", "out", "--endpoint-url", "http://127.0.0.1:9"],
        "would be ignored with --source synthetic",
    ),
    "fetch --source s3 with --bucket-dir": (
        "csc_fetcher.cli",
        ["--source", "s3", "--dest", "out", "--bucket-dir", "b"],
        "--bucket-dir 'b' would be ignored with --source s3",
    ),
    "fetch --source s3 with --size": (
        "csc_fetcher.cli",
        ["--source", "s3", "--dest", "out", "--size", "tiny"],
        "--size 'tiny' would be ignored with --source s3",
    ),
    "fetch --zip with --crops": (
        "csc_fetcher.cli",
        ["--zip", "--crops", "101", "--dest", "out"],
        "--zip works only with --crops all",
    ),
    "fetch --zip with --output": (
        "csc_fetcher.cli",
        ["--zip", "--dest", "out", "--output", "out/dataset.json"],
        "--output 'out/dataset.json' would be ignored with --zip",
    ),
    "fetch --resolution with --fetch-all-em-resolutions": (
        "csc_fetcher.cli",
        ["--dest", "out", "--resolution", "8", "--fetch-all-em-resolutions"],
        "--resolution picks EM levels and --fetch-all-em-resolutions takes every level",
    ),
    "process --halo without --process-file": (
        "csc_postprocessor.cli",
        ["--predictions", "p.json", "--output", "out/o.json", "--halo", "4"],
        "--halo 4 would be ignored without --process-file",
    ),
    "process --block-size with --blockwise never": (
        "csc_postprocessor.cli",
        ["--predictions", "p.json", "--output", "out/o.json", "--blockwise", "never", "--block-size", "64"],
        "--block-size 64 would be ignored with --blockwise never",
    ),
    "process --max-whole-voxels without auto": (
        "csc_postprocessor.cli",
        ["--predictions", "p.json", "--output", "out/o.json", "--blockwise", "always", "--max-whole-voxels", "9"],
        "--max-whole-voxels 9 would be ignored with --blockwise always",
    ),
    "view --scores without --chart": (
        "csc_viewer.cli",
        ["--data", "out", "--scores", "s.json", "--montage", "out/m.png"],
        "--scores 's.json' would be ignored without --chart",
    ),
    "pack --check with --processed": (
        "csc_packer.cli",
        ["--check", "s.zip", "--processed", "p.json", "--output", "out/s.json"],
        "takes no --processed or --output",
    ),
}


@pytest.mark.parametrize("case", sorted(CONTRADICTIONS))
def test_ignored_or_contradictory_flags_are_refused(tmp_path, monkeypatch, capsys, case):
    module, args, expected = CONTRADICTIONS[case]
    monkeypatch.chdir(tmp_path)
    rc = importlib.import_module(module).main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and expected in err[0], err
    assert list(tmp_path.iterdir()) == []


# A bad flag value: argparse's message on one line with a pointer to --help, never ~20 lines of usage.
BAD_FLAGS = {
    "csc-fetch": ["--retries", "abc"],
    "csc-train": ["--iterations", "abc"],
    "csc-export": ["--opset", "abc"],
    "csc-predict": ["--batch-size", "abc"],
    "csc-process": ["--halo", "abc"],
    "csc-pack": ["--strict=maybe"],
    "csc-evaluate": ["--workers", "abc"],
    "csc-view": ["--port", "abc"],
}


@pytest.mark.parametrize("script", sorted(BAD_FLAGS))
def test_every_console_script_prints_one_line_for_a_bad_flag_value(tmp_path, script):
    import subprocess
    import sys
    from pathlib import Path

    run = subprocess.run(
        [Path(sys.executable).parent / script, *BAD_FLAGS[script]], capture_output=True, text=True, cwd=tmp_path
    )
    err = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(err) == 1, run.stderr
    flag = BAD_FLAGS[script][0].split("=")[0]
    assert err[0].startswith(f"{script}: error: {flag}: ") and err[0].endswith(f"(see {script} --help)"), err
    if script == "csc-train":
        assert err[0] == "csc-train: error: --iterations: invalid int value: 'abc' (see csc-train --help)"
    assert run.stdout == "" and list(tmp_path.iterdir()) == []
