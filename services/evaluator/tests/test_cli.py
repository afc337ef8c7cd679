"""End to end through main(): both command forms, outputs, penalties, bad input -> one line and exit 2."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from csc_common import volumes
from csc_common.geometry import Geometry
from csc_common.manifest import read_manifest
from csc_evaluator.cli import main


def _run(tmp_path, sub, *extra, form="new"):
    if form == "new":
        argv = [str(sub), "--truth", str(tmp_path / "truth.zarr"), "--output", str(tmp_path / "out" / "result.json")]
    else:
        argv = ["-s", str(sub), "-t", str(tmp_path / "truth.zarr"), "-r", str(tmp_path / "out" / "result.json")]
    return main([*argv, "-q", *extra])


def _read(tmp_path):
    out = tmp_path / "out"
    return json.loads((out / "result.json").read_text()), json.loads((out / "result_extended.json").read_text())


@pytest.mark.parametrize("form", ["new", "original"])
def test_perfect_submission_scores_one(tmp_path, tiny_case, ev, form):
    _, truth = tiny_case
    ev.write_submission(tmp_path / "sub.zarr", truth)
    z = ev.zip_dir(tmp_path / "sub.zarr", tmp_path / "submission.zip")
    assert _run(tmp_path, z, form=form) == 0
    pub, ext = _read(tmp_path)
    assert pub["overall_score"] == 1.0 and pub["total_evals"] == 4 and pub["num_evals_done"] == 4
    assert set(pub["label_scores"]) == {"ecs", "mito"}
    m = read_manifest(tmp_path / "out" / "scores.json", "scores")
    assert m["overall_score"] == 1.0 and m["result"] == "result.json" and m["extended"] == "result_extended.json"
    assert ext["crop2"]["mito"]["status"] == "scored"


def test_missing_crop_and_pooled_penalties(tmp_path, tiny_case, ev, capsys):
    _, truth = tiny_case
    ev.write_submission(tmp_path / "sub.zarr", {"crop1": truth["crop1"]})  # crop2 not submitted
    assert _run(tmp_path, tmp_path / "sub.zarr", "--compare-empty") == 0
    pub, ext = _read(tmp_path)
    iou = 256 / (256 + 216)  # crop2 ecs missing: every one of its 6^3 voxels is a false negative
    f1 = 2 * 2 / (2 * 2 + 0 + 1)  # crop2 mito missing: its one GT object is a false negative
    nh = (1.0 + 1.0 + 0.0) / 3  # ... with a Hausdorff entry of 0
    assert pub["label_scores"]["ecs"]["iou"] == pytest.approx(iou, abs=1e-12)
    assert pub["label_scores"]["mito"]["f1"] == pytest.approx(f1, abs=1e-12)
    assert pub["label_scores"]["mito"]["normalized_hausdorff_distance"] == pytest.approx(nh, abs=1e-12)
    assert pub["overall_score"] == pytest.approx(math.sqrt(math.sqrt(f1 * nh) * iou), abs=1e-12)
    assert ext["crop2"]["ecs"] == {
        "tp": 0,
        "fp": 0,
        "fn": 216,
        "status": "missing",
        "num_voxels": 216,
        "voxel_size": [2.0, 2.0, 2.0],
        "is_missing": True,
    }
    assert ext["crop2"]["mito"]["is_missing"] and ext["crop2"]["mito"]["fn"] == 1
    assert ext["label_scores"]["ecs"]["fn"] == 216
    m = read_manifest(tmp_path / "out" / "scores.json", "scores")
    assert m["empty_overall_score"] == 0.0


def test_workers_do_not_change_results(tmp_path, tiny_case, ev):
    _, truth = tiny_case
    shifted = {c: {k: (np.roll(a, 1, axis=0), g) for k, (a, g) in labels.items()} for c, labels in truth.items()}
    ev.write_submission(tmp_path / "sub.zarr", shifted)
    assert _run(tmp_path, tmp_path / "sub.zarr", "--workers", "1") == 0
    one = _read(tmp_path)
    assert _run(tmp_path, tmp_path / "sub.zarr", "--workers", "2") == 0
    assert _read(tmp_path) == one
    assert 0 < one[0]["overall_score"] < 1


def test_instance_class_list_option(tmp_path, tiny_case, ev):
    _, truth = tiny_case
    ev.write_submission(tmp_path / "sub.zarr", truth)
    assert (
        main(
            [
                "-s",
                str(tmp_path / "sub.zarr"),
                "-t",
                str(tmp_path / "truth.zarr"),
                "-r",
                str(tmp_path / "out" / "result.json"),
                "-ic",
                "ecs",
                "-q",
            ]
        )
        == 0
    )
    pub, _ = _read(tmp_path)
    assert set(pub["label_scores"]["ecs"]) == {"f1", "normalized_hausdorff_distance", "combined_score"}
    assert set(pub["label_scores"]["mito"]) == {"iou"}


def test_resampled_and_translated_submission(tmp_path, tiny_case, ev):
    _, truth = tiny_case
    data, g = truth["crop1"]["mito"]
    fine = np.repeat(np.repeat(np.repeat(data, 2, 0), 2, 1), 2, 2)
    sub = {"crop1": {"mito": (fine, Geometry((2.0, 2.0, 2.0), g.translation, fine.shape))}}
    ev.write_submission(tmp_path / "sub.zarr", sub)
    assert _run(tmp_path, tmp_path / "sub.zarr") == 0
    _, ext = _read(tmp_path)
    assert (ext["crop1"]["mito"]["tp"], ext["crop1"]["mito"]["fp"], ext["crop1"]["mito"]["fn"]) == (2, 0, 0)
    assert ext["crop1"]["mito"]["hausdorff_norm_sum"] == 2.0


def test_ome_ngff_class_group_is_scored_unless_official_rules(tmp_path, tiny_case, ev):
    _, truth = tiny_case
    grp = volumes.open_group(tmp_path / "sub.zarr", "w")
    data, g = truth["crop1"]["ecs"]
    volumes.write_multiscale(grp.require_group("crop1"), "ecs", [(data, g)])
    assert _run(tmp_path, tmp_path / "sub.zarr") == 0
    _, ext = _read(tmp_path)
    assert ext["crop1"]["ecs"]["status"] == "scored" and ext["crop1"]["ecs"]["tp"] == 256
    assert _run(tmp_path, tmp_path / "sub.zarr", "--rules", "official") == 0
    _, ext = _read(tmp_path)
    assert ext["crop1"]["ecs"]["status"] == "missing"


def test_truth_mask_multiplies_both_and_is_not_a_class(tmp_path, tiny_case, ev):
    _, truth = tiny_case
    data, g = truth["crop1"]["ecs"]
    mask = np.zeros(g.shape, np.uint8)
    mask[:2] = 1
    ev.write_truth(tmp_path / "truth.zarr", {**truth, "crop1": {**truth["crop1"], "ecs_mask": (mask, g)}})
    pred = np.ones(g.shape, np.uint8)  # everywhere: without the mask FP = 256
    ev.write_submission(tmp_path / "sub.zarr", {"crop1": {"ecs": (pred, g)}})
    assert _run(tmp_path, tmp_path / "sub.zarr") == 0
    _, ext = _read(tmp_path)
    assert (ext["crop1"]["ecs"]["tp"], ext["crop1"]["ecs"]["fp"], ext["crop1"]["ecs"]["fn"]) == (128, 0, 0)
    assert "ecs_mask" not in ext["crop1"]
    assert _run(tmp_path, tmp_path / "sub.zarr", "--rules", "official") == 0
    _, ext = _read(tmp_path)
    assert ext["crop1"]["ecs_mask"]["status"] == "missing"  # the official scores the mask as a class


def _one_line_error(capsys, text):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("csc-evaluate: error:") and text in err[0], err


def test_bad_inputs_exit_2_with_one_line(tmp_path, tiny_case, ev, capsys):
    _, truth = tiny_case
    ev.write_submission(tmp_path / "sub.zarr", truth)
    assert main([str(tmp_path / "sub.zarr"), "--truth", str(tmp_path / "nope.zarr"), "-q"]) == 2
    _one_line_error(capsys, "nope.zarr: ground-truth zarr folder not found")
    assert (
        main(
            [
                str(tmp_path / "sub.zarr"),
                "--truth",
                str(tmp_path / "truth.zarr"),
                "--test-manifest",
                str(tmp_path / "none.csv"),
                "-q",
            ]
        )
        == 2
    )
    _one_line_error(capsys, "none.csv: test crop manifest not found")
    (tmp_path / "evil.zip").write_bytes(b"")
    import zipfile

    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../../escape", b"x")
    assert _run(tmp_path, tmp_path / "evil.zip") == 2
    _one_line_error(capsys, "member '../../escape' would extract outside")
    assert not (tmp_path / "out").exists()


def test_ratio_guard_and_shape_mismatch_exit_2(tmp_path, tiny_case, ev, capsys, monkeypatch):
    _, truth = tiny_case
    data, g = truth["crop1"]["mito"]
    fine = np.repeat(np.repeat(np.repeat(data, 2, 0), 2, 1), 2, 2)
    ev.write_submission(
        tmp_path / "sub.zarr", {"crop1": {"mito": (fine, Geometry((2.0,) * 3, g.translation, fine.shape))}}
    )
    monkeypatch.setenv("MAX_VOLUME_SIZE_RATIO", "4")
    assert _run(tmp_path, tmp_path / "sub.zarr") == 2
    _one_line_error(capsys, "crop 1 class mito:")
    monkeypatch.delenv("MAX_VOLUME_SIZE_RATIO")
    ev.write_manifest_csv(
        tmp_path / "test_crop_manifest.csv",
        [(1, "ecs", g), (1, "mito", Geometry(g.voxel_size, g.translation, (8, 8, 9)))],
    )
    assert _run(tmp_path, tmp_path / "sub.zarr") == 2
    _one_line_error(
        capsys, "crop 1 class mito: ground-truth shape (8, 8, 8) does not match the test manifest (8, 8, 9)"
    )
    ev.write_manifest_csv(tmp_path / "test_crop_manifest.csv", [(1, "ecs", g)])
    assert _run(tmp_path, tmp_path / "sub.zarr") == 2
    _one_line_error(capsys, "crop 1 class mito: in the ground truth but not in the test manifest")


def test_umbrella_verb_and_table(tmp_path, tiny_case, ev, capsys):
    from csc_common import umbrella

    _, truth = tiny_case
    ev.write_submission(tmp_path / "sub.zarr", truth)
    rc = umbrella.main(
        [
            "evaluate",
            "-s",
            str(tmp_path / "sub.zarr"),
            "-t",
            str(tmp_path / "truth.zarr"),
            "-r",
            str(tmp_path / "out" / "result.json"),
            "--compare-empty",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().err
    assert "ecs          semantic     2    0" in text and "mito         instance     2    0" in text
    assert "all-empty submission: overall_score  0.0000   this submission: overall_score  1.0000" in text


def _dataset_manifest(tmp_path, kinds):
    """A dataset manifest recording ``kinds`` ({class: kind}) for the tiny case's two test crops."""
    from csc_common import views
    from csc_common.manifest import now
    from csc_common.views import ClassEntry, CropEntry, DatasetView, Header

    g = Geometry((4.0, 4.0, 4.0), (0.0, 0.0, 0.0), (8, 8, 8))
    crops = tuple(CropEntry(cid, "ds", tuple(ClassEntry(n, k, g) for n, k in kinds.items()), "test") for cid in (1, 2))
    view = DatasetView(
        header=Header.new("fetcher", now(), args=[]),
        source="synthetic",
        datasets=(),
        crops=crops,
        test_manifest=tmp_path / "test_crop_manifest.csv",
    )
    return views.save(view, tmp_path / "dataset.json").path


@pytest.mark.parametrize(
    ("kinds", "extra", "instance"),
    [
        (None, [], {"mito"}),  # no --dataset: the challenge's list
        ({"ecs": "semantic", "mito": "semantic"}, [], set()),  # the dataset's kinds decide
        ({"ecs": "instance", "mito": "instance"}, [], {"ecs", "mito"}),
        ({"ecs": "instance", "mito": "semantic"}, ["--instance-classes", "mito"], {"mito"}),  # -ic overrides both
    ],
)
def test_scored_as_instance_follows_dataset_kinds_unless_overridden(tmp_path, tiny_case, ev, kinds, extra, instance):
    _, truth = tiny_case
    ev.write_submission(tmp_path / "sub.zarr", truth)
    args = [*extra]
    if kinds is not None:
        args += ["--dataset", str(_dataset_manifest(tmp_path, kinds))]
    assert _run(tmp_path, tmp_path / "sub.zarr", *args) == 0
    pub, _ = _read(tmp_path)
    assert {label for label, s in pub["label_scores"].items() if "f1" in s} == instance
    assert {label for label, s in pub["label_scores"].items() if "iou" in s} == {"ecs", "mito"} - instance
    m = read_manifest(tmp_path / "out" / "scores.json", "scores")
    assert ("dataset" in [i["kind"] for i in m["inputs"]]) == (kinds is not None)


def test_bad_dataset_manifest_is_one_line_exit_2(tmp_path, tiny_case, ev, capsys):
    _, truth = tiny_case
    ev.write_submission(tmp_path / "sub.zarr", truth)
    (tmp_path / "dataset.json").write_text('{"kind": "dataset"')
    assert _run(tmp_path, tmp_path / "sub.zarr", "--dataset", str(tmp_path / "dataset.json")) == 2
    _one_line_error(capsys, "dataset.json")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sub.zarr"], "--truth is required"),
        (["--truth", "truth.zarr"], "no submission given (SUBMISSION or -s PATH)"),
        (["a.zip", "-s", "b.zip", "--truth", "truth.zarr"], "two submissions given"),
        (["sub.zarr", "--truth", "truth.zarr", "--workers", "-1"], "--workers: must be >= 0"),
    ],
)
def test_missing_or_contradictory_inputs_are_one_line_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    _one_line_error(capsys, message)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_work_dir_missing_or_a_file_is_one_line_exit_2(tmp_path, tiny_case, ev, capsys, kind):
    _, truth = tiny_case
    ev.write_submission(tmp_path / "sub.zarr", truth)
    work = tmp_path / "work"
    if kind == "file":
        work.write_text("x")
    assert _run(tmp_path, tmp_path / "sub.zarr", "--work-dir", str(work)) == 2
    _one_line_error(capsys, f"--work-dir {work}: {'not a folder' if kind == 'file' else 'folder not found'}")
    assert not (tmp_path / "out").exists()
    work.unlink(missing_ok=True)
    work.mkdir()  # an existing folder is still accepted (nothing is extracted into it)
    assert _run(tmp_path, tmp_path / "sub.zarr", "--work-dir", str(work)) == 0 and not list(work.iterdir())


def test_truth_without_class_arrays_is_an_error(tmp_path, tiny_case, ev, capsys):
    _, truth = tiny_case
    ev.write_submission(tmp_path / "sub.zarr", truth)
    for crop in ("crop1", "crop2"):
        (tmp_path / "empty.zarr" / crop).mkdir(parents=True)
    rc = main(
        [
            str(tmp_path / "sub.zarr"),
            "--truth",
            str(tmp_path / "empty.zarr"),
            "--output",
            str(tmp_path / "out" / "r.json"),
        ]
        + ["--test-manifest", str(tmp_path / "test_crop_manifest.csv"), "-q"]
    )
    assert rc == 2
    _one_line_error(capsys, "empty.zarr: ground-truth zarr holds no class arrays")
    assert not (tmp_path / "out").exists()


def test_errors_name_the_zip_member(tmp_path, tiny_case, ev, capsys):
    _, truth = tiny_case
    ev.write_submission(tmp_path / "sub.zarr", truth)
    (tmp_path / "sub.zarr" / "crop2" / "mito" / "0" / "0" / "0").write_bytes(b"garbage")
    z = ev.zip_dir(tmp_path / "sub.zarr", tmp_path / "sub.zip")
    assert _run(tmp_path, z) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("csc-evaluate: error: crop 2 class mito: member 'crop2/mito/0/0/0': cannot read array data")
    assert str(tmp_path) not in err and "/dev/shm" not in err


def test_a_killed_run_leaves_nothing_behind(tmp_path, ev):
    """SIGKILL while scoring: no extraction folder (nothing is extracted), no partial outputs."""
    import os
    import signal
    import subprocess
    import sys

    g = Geometry((4.0, 4.0, 4.0), (0.0, 0.0, 0.0), (128, 128, 128))
    ids = np.zeros(g.shape, np.uint16)
    rng = np.random.default_rng(0)
    for i, (z, y, x) in enumerate(rng.integers(0, 120, size=(600, 3)), start=1):
        ids[z : z + 5, y : y + 5, x : x + 5] = i
    ev.write_truth(tmp_path / "truth.zarr", {"crop1": {"mito": (ids, g)}})
    ev.write_manifest_csv(tmp_path / "test_crop_manifest.csv", [(1, "mito", g)])
    fine = np.repeat(np.repeat(np.repeat(ids, 2, 0), 2, 1), 2, 2)  # resampled on the way: a few seconds of work
    ev.write_submission(
        tmp_path / "sub.zarr", {"crop1": {"mito": (fine, Geometry((2.0,) * 3, g.translation, fine.shape))}}
    )
    z = ev.zip_dir(tmp_path / "sub.zarr", tmp_path / "sub.zip")
    temp = tmp_path / "tmp"
    temp.mkdir()
    shm = {p.name for p in Path("/dev/shm").glob("csc-*")}
    code = "import sys; from csc_evaluator.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [str(z), "--truth", str(tmp_path / "truth.zarr"), "--output", str(tmp_path / "out" / "result.json")]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "scoring 1 (crop, class) pairs" in line:
            break
    alive = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)  # the run and any worker it started (its own session)
    proc.wait(timeout=60)
    assert alive, "the run ended before it could be killed"
    assert not list(temp.iterdir()) and {p.name for p in Path("/dev/shm").glob("csc-*")} <= shm
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sub.zarr",
        "sub.zip",
        "test_crop_manifest.csv",
        "tmp",
        "truth.zarr",
    ]
