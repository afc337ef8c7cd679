import json

import numpy as np
import pytest
import zarr
from conformance_kit import ome_ngff_problems
from csc_common.geometry import Geometry
from csc_common.manifest import read_manifest
from csc_common.volumes import Level, read_levels
from csc_postprocessor.cli import main

G1 = Geometry((8.0, 8.0, 8.0), (100.0, 36.5, -12.0), (24, 28, 40))
G2 = Geometry((4.0, 4.0, 4.0), (0.0, 0.0, 0.0), (16, 16, 16))


@pytest.fixture
def predictions(make_predictions, balls):
    mito = balls(G1.shape, [(12, 14, 10), (12, 14, 22), (5, 5, 34)], 5.5).astype(np.float32) * 0.9
    ecs = np.zeros(G2.shape, np.float32)
    ecs[:, :8] = 0.8
    return make_predictions(
        [
            (5, "ds_a", "mito", mito, G1),
            (5, "ds_a", "ecs", np.full(G1.shape, 0.7, np.float32), G1),
            (6, "ds_b", "ecs", ecs, G2),
        ]
    )


def _read(path, name):
    arr = zarr.open_array(str(path / name), mode="r", zarr_format=2)
    return arr[...], dict(arr.attrs)


def _assert_ome_ngff_groups(manifest_path):
    """Every class path is ``crop<N>/<class>/s0`` in a valid OME-NGFF group whose levels are the manifest geometry."""
    m = read_manifest(manifest_path, "processed")
    zroot = m.resolve(m["zarr"])
    n = 0
    for crop in m["crops"]:
        for c in crop["classes"]:
            assert c["path"] == f"crop{crop['id']}/{c['name']}/s0"
            grp = zarr.open_group(str(zroot / f"crop{crop['id']}/{c['name']}"), mode="r", zarr_format=2)
            attrs = dict(grp.attrs)
            assert ome_ngff_problems(attrs, {k: a.shape for k, a in grp.arrays()}) == [], attrs
            assert read_levels(zroot / f"crop{crop['id']}/{c['name']}") == [
                Level("s0", Geometry.from_json(c["geometry"]))
            ]
            n += 1
    assert n


def test_default_steps_write_masks_and_ids(predictions, capsys):
    out = predictions.parent / "processed.json"
    assert main(["--predictions", str(predictions), "--output", str(out), "-q"]) == 0
    m = read_manifest(out, "processed")
    zroot = m.resolve(m["zarr"])
    assert zroot.name == "processed.zarr"
    _assert_ome_ngff_groups(out)
    mito, attrs = _read(zroot, "crop5/mito/s0")
    assert mito.dtype == np.uint32 and attrs == {"voxel_size": [8.0, 8.0, 8.0], "translation": [100.0, 36.5, -12.0]}
    assert set(np.unique(mito)) == {0, 1, 2, 3}  # touching balls merge without a watershed
    ecs, _ = _read(zroot, "crop6/ecs/s0")
    assert ecs.dtype == np.uint8 and ecs[:, :8].all() and not ecs[:, 8:].any()
    crops = {c["id"]: c for c in m["crops"]}
    assert crops[5]["classes"][0]["geometry"] == G1.to_json() and crops[5]["dataset"] == "ds_a"
    assert {c["name"]: c["dtype"] for c in crops[5]["classes"]} == {"mito": "uint32", "ecs": "uint8"}
    assert m["inputs"][0]["kind"] == "predictions"


def test_steps_in_config_file_and_blockwise_equals_whole(predictions, tmp_path):
    steps = {
        "classes": {
            "mito": [
                {"op": "threshold", "value": 0.5},
                {"op": "watershed"},
                {"op": "remove_small", "min_size_nm3": 8.0**3 * 10},
            ]
        }
    }
    cfg = tmp_path / "steps.yaml"
    cfg.write_text(json.dumps({"steps": steps}))
    results = []
    for extra in ([], ["--blockwise", "always", "--block-size", "8"], ["--blockwise", "always", "--block-size", "13"]):
        out = tmp_path / f"p{len(results)}" / "processed.json"
        assert main(["--predictions", str(predictions), "--output", str(out), "--config", str(cfg), "-q", *extra]) == 0
        _assert_ome_ngff_groups(out)
        results.append(_read(out.with_suffix(".zarr"), "crop5/mito/s0")[0])
    assert len(np.unique(results[0])) == 4  # background + 3 balls, the touching pair split
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_process_file_wrong_shape_fails_cleanly(predictions, tmp_path, capsys):
    f = tmp_path / "my_process.py"
    f.write_text("def process_func(array, *, class_name, geometry):\n    return array[1:] > 0.5\n")
    out = predictions.parent / "processed.json"
    rc = main(["--predictions", str(predictions), "--output", str(out), "--process-file", str(f)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("csc-process: error: crop 5 class mito: process_func returned shape (23, 28, 40)")
    assert not out.exists() and not out.with_suffix(".zarr").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_process_file_blockwise_merges_ids_across_blocks(predictions, tmp_path):
    f = tmp_path / "my_process.py"
    f.write_text(
        "from scipy import ndimage\n"
        "def process_func(array, *, class_name, geometry):\n"
        "    if class_name != 'mito':\n        return None\n"
        "    return ndimage.label(array > 0.5)[0]\n"
    )
    out = tmp_path / "b" / "processed.json"
    assert (
        main(
            [
                "--predictions",
                str(predictions),
                "--output",
                str(out),
                "--process-file",
                str(f),
                "-q",
                "--blockwise",
                "always",
                "--block-size",
                "8",
            ]
        )
        == 0
    )
    mito, _ = _read(out.with_suffix(".zarr"), "crop5/mito/s0")
    assert set(np.unique(mito)) == {0, 1, 2, 3}
    m = read_manifest(out, "processed")
    kinds = {c["name"]: c["steps"] for crop in m["crops"] for c in crop["classes"]}
    assert kinds["mito"] == "process_func" and kinds["ecs"].startswith("threshold")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p.write_text("{not json"), "not valid JSON"),
        (lambda p: p.write_text(p.read_text().replace('"predictions"', '"processed"', 1)), "/kind"),
        (lambda p: p.unlink(), "manifest file not found"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(predictions, capsys, setup, message):
    setup(predictions)
    out = predictions.parent / "processed.json"
    assert main(["--predictions", str(predictions), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists() and not out.with_suffix(".zarr").exists()


def test_bad_steps_file_exit_2(predictions, tmp_path, capsys):
    bad = tmp_path / "steps.yaml"
    bad.write_text("classes:\n  mito: [{op: components}]\n")
    out = predictions.parent / "processed.json"
    assert main(["--predictions", str(predictions), "--output", str(out), "--steps", str(bad)]) == 2
    assert "put 'threshold' first" in capsys.readouterr().err
    assert not out.exists()


def test_a_perfect_prediction_reproduces_the_truth(make_predictions, balls):
    """Probabilities equal to the truth give back the truth: masks exactly, instances up to their numbering."""
    from csc_postprocessor.blockwise import relabel_by_appearance

    truth_ids = np.zeros(G1.shape, np.uint32)
    for i, c in enumerate([(5, 5, 5), (12, 20, 30), (18, 6, 25), (6, 22, 8)]):
        truth_ids[balls(G1.shape, [c], 4.0)] = 300 + 17 * i  # ids above 255
    truth_er = np.zeros(G1.shape, bool)
    truth_er[:, 10:20, 5:35] = True
    preds = make_predictions(
        [(3, "ds", "mito", (truth_ids > 0).astype(np.float32), G1), (3, "ds", "er", truth_er.astype(np.float32), G1)]
    )
    out = preds.parent / "processed.json"
    assert main(["--predictions", str(preds), "--output", str(out), "-q"]) == 0
    mito, _ = _read(out.with_suffix(".zarr"), "crop3/mito/s0")
    er, _ = _read(out.with_suffix(".zarr"), "crop3/er/s0")
    np.testing.assert_array_equal(er, truth_er.astype(np.uint8))
    np.testing.assert_array_equal(mito, relabel_by_appearance(truth_ids)[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--predictions is required (predictions manifest (the predictor's predictions.json) to read)"),
        (["--predictions", "p.json"], "--output is required"),
        (["--predictions", "p.json", "--output", "out.zarr"], "--output out.zarr: the output manifest must be a .json"),
        (["--predictions", "p.json", "--output", "o.json", "--block-size", "4"], "--block-size: must be >= 8, got 4"),
    ],
)
def test_usage_errors_are_one_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("csc-process: error: ") and message in err[0], err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("halo: -1\n", "halo: must be >= 0, got -1"),
        ("block_size: 2\n", "block_size: must be >= 8, got 2"),
        ("steps: true\n", "steps: True is not str or a mapping"),
        ("blockwise: sometimes\n", "blockwise: 'sometimes' is not one of auto, always, never"),
    ],
)
def test_config_file_values_name_the_file_and_field(predictions, tmp_path, capsys, text, message):
    cfg = tmp_path / "process.yaml"
    cfg.write_text(text)
    out = tmp_path / "x" / "processed.json"
    rc = main(["--predictions", str(predictions), "--output", str(out), "--config", str(cfg)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"csc-process: error: {cfg}: {message}"], err
    assert not out.exists() and not out.with_suffix(".zarr").exists()


def test_the_kind_comes_from_the_predictions_manifest(predictions):
    data = json.loads(predictions.read_text())
    for crop in data["crops"]:
        for c in crop["classes"]:
            c["kind"] = {"mito": "semantic", "ecs": "instance"}[c["name"]]  # the reverse of the challenge's table
    predictions.write_text(json.dumps(data))
    out = predictions.parent / "processed.json"
    assert main(["--predictions", str(predictions), "--output", str(out), "-q"]) == 0
    zroot = out.with_suffix(".zarr")
    assert _read(zroot, "crop5/mito/s0")[0].dtype == np.uint8  # a mask, not ids
    ecs = _read(zroot, "crop6/ecs/s0")[0]
    assert ecs.dtype == np.uint32 and set(np.unique(ecs)) == {0, 1}  # one connected object
    m = read_manifest(out, "processed")
    assert {c["name"]: c["kind"] for crop in m["crops"] for c in crop["classes"]} == {
        "mito": "semantic",
        "ecs": "instance",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("import sys\nsys.exit(0)\n", "called sys.exit(0) while being imported"),
        (
            "import sys\ndef process_func(array, *, class_name, geometry):\n    sys.exit(0)\n",
            "crop 5 class mito: process_func of {f} called sys.exit(0)",
        ),
        (
            "def process_func(array, *, class_name, geometry):\n    raise SystemExit('done')\n",
            "process_func of {f} called sys.exit('done')",
        ),
    ],
)
def test_sys_exit_in_the_process_file_is_a_failure_naming_the_file(predictions, tmp_path, capsys, body, message):
    f = tmp_path / "exits.py"
    f.write_text(body)
    out = predictions.parent / "processed.json"
    rc = main(["--predictions", str(predictions), "--output", str(out), "--process-file", str(f)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(f) in err[0] and message.format(f=f) in err[0], err
    assert not out.exists() and not out.with_suffix(".zarr").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def _litter(folder):
    return sorted(
        p.name for p in folder.iterdir() if p.name.startswith((".processed.zarr.", ".csc-scratch-")) and p.is_dir()
    )


def _start_stalled(predictions, tmp_path):
    """``csc-process --blockwise always`` in a subprocess, stalled inside process_func with its temp folders made."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    marker = tmp_path / "inside"
    slow = tmp_path / "slow.py"
    slow.write_text(
        "import pathlib, time\n"
        "def process_func(array, *, class_name, geometry):\n"
        f"    pathlib.Path({str(marker)!r}).touch()\n"
        "    time.sleep(120)\n"
    )
    out = predictions.parent / "processed.json"
    cmd = [Path(sys.executable).parent / "csc-process", "--predictions", str(predictions), "--output", str(out)]
    cmd += ["--process-file", str(slow), "--blockwise", "always", "--block-size", "8", "-q"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    return proc, out


def test_a_killed_blockwise_run_leaves_no_temp_folders_after_a_rerun(predictions, tmp_path):
    import signal

    proc, out = _start_stalled(predictions, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = _litter(out.parent)
    assert any(n.startswith(".processed.zarr.") for n in left) and any(n.startswith(".csc-scratch-") for n in left)
    assert all(f"p{proc.pid}-t" in n for n in left), left  # named by their owner, so the next run can tell
    assert main(["--predictions", str(predictions), "--output", str(out), "--blockwise", "always", "-q"]) == 0
    assert _litter(out.parent) == [] and read_manifest(out, "processed")["crops"]


def test_sigterm_cleans_up_on_the_way_out(predictions, tmp_path):
    import signal

    proc, out = _start_stalled(predictions, tmp_path)
    assert _litter(out.parent)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert proc.stderr is not None and proc.stderr.read().strip() == "csc-process: terminated (SIGTERM)"
    assert _litter(out.parent) == [] and not out.exists() and not out.with_suffix(".zarr").exists()
