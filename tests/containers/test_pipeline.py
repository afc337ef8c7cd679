"""Every stage image alone, one after another, on the tiny synthetic dataset.

Each container sees only the shared folder at /data, runs as the image's
non-root user, and has no network except the fetcher's; each stage must leave
a manifest that validates on the host. Then the same stages run locally (the
host's installed packages) on the same fetched data with the same flags: the
scores must be the same, so the containers change where a stage runs, not
what it computes.
"""

import json
import shutil
from pathlib import Path

import pytest
from csc_common.manifest import read_manifest

# Small enough for 2 CPU cores; single-threaded so host and container compute the same numbers.
TINY_TRAIN = [
    "--classes",
    "mito,er",
    "--iterations",
    "4",
    "--batch-size",
    "2",
    "--depth",
    "2",
    "--base-features",
    "4",
    "--patch-shape",
    "16,16,16",
    "--validate-every",
    "4",
    "--validation-patches",
    "2",
    "--threads",
    "1",
    "--seed",
    "7",
]


def steps(d: str) -> list[tuple[str, str | None, str | None, list[str]]]:
    """(stage, output manifest, manifest kind, argv) with DATA at ``d``."""
    return [
        (
            "fetcher",
            "dataset.json",
            "dataset",
            ["--source", "synthetic", "--size", "tiny", "--seed", "3", "--dest", d, "--output", f"{d}/dataset.json"],
        ),
        (
            "trainer",
            "models/tiny/model.json",
            "model",
            ["--dataset", f"{d}/dataset.json", "--output", f"{d}/models/tiny/model.json", *TINY_TRAIN],
        ),
        (
            "exporter",
            "models/tiny/onnx-model.json",
            "onnx-model",
            ["--model", f"{d}/models/tiny/model.json", "--output", f"{d}/models/tiny/onnx-model.json"],
        ),
        (
            "predictor",
            "predictions.json",
            "predictions",
            [
                "--model",
                f"{d}/models/tiny/onnx-model.json",
                "--dataset",
                f"{d}/dataset.json",
                "--output",
                f"{d}/predictions.json",
                "--threads",
                "1",
            ],
        ),
        (
            "postprocessor",
            "processed.json",
            "processed",
            ["--predictions", f"{d}/predictions.json", "--output", f"{d}/processed.json"],
        ),
        (
            "packer",
            "submission.json",
            "submission",
            [
                "--processed",
                f"{d}/processed.json",
                "--test-manifest",
                f"{d}/test_crop_manifest.csv",
                "--output",
                f"{d}/submission.json",
            ],
        ),
        (
            "evaluator",
            "scores.json",
            "scores",
            [
                f"{d}/submission.zip",
                "--truth",
                f"{d}/ground_truth.zarr",
                "--test-manifest",
                f"{d}/test_crop_manifest.csv",
                "--output",
                f"{d}/result.json",
                "--scores-manifest",
                f"{d}/scores.json",
            ],
        ),
        (
            "viewer",
            None,
            None,
            [
                "--manifest",
                f"{d}/dataset.json",
                f"{d}/predictions.json",
                f"{d}/processed.json",
                "--montage",
                f"{d}/montage.png",
            ],
        ),
    ]


@pytest.fixture(scope="module")
def container_pipeline(run_image, tmp_path_factory):
    """Run every stage image in order on one folder; {stage: Run or the reason it did not run}."""
    data = tmp_path_factory.mktemp("containers")
    data.chmod(0o777)  # the images' own non-root user writes here
    fetched = tmp_path_factory.mktemp("fetched")
    runs: dict[str, object] = {}
    failed = None
    for stage, _, _, argv in steps("/data"):
        if failed:
            runs[stage] = f"not run: the {failed} stage failed before it"
            continue
        runs[stage] = run = run_image(stage, argv, data=data, network="bridge" if stage == "fetcher" else "none")
        if run.returncode != 0:
            failed = stage
        elif stage == "fetcher":
            shutil.copytree(data, fetched, dirs_exist_ok=True)
    return {"data": data, "fetched": fetched, "runs": runs}


def test_stage_image_alone_writes_a_valid_manifest(stage, container_pipeline, stage_images):
    run = container_pipeline["runs"][stage]
    assert not isinstance(run, str), run
    assert run.returncode == 0, run.explain()
    _, rel, kind, _ = next(s for s in steps("/data") if s[0] == stage)
    data: Path = container_pipeline["data"]
    if rel is None:  # the viewer's montage: PNG files, no manifest
        pngs = sorted(data.glob("montage*.png"))
        assert pngs, f"no montage PNG in {data}"
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
        return
    manifest = read_manifest(data / rel, kind)
    producer = manifest.data["producer"]
    assert producer["image"] == stage_images[stage][0], "producer.image must name the image that ran"
    for ref in manifest.data.get("inputs", []):
        assert not Path(ref["path"]).is_absolute(), f"{rel}: input paths must be relative ({ref['path']})"


@pytest.fixture(scope="module")
def local_pipeline(container_pipeline, tmp_path_factory):
    """The same stages in this process (installed packages) on a copy of the container-fetched data."""
    from csc_evaluator.cli import main as evaluate
    from csc_exporter.cli import main as export
    from csc_packer.cli import main as pack
    from csc_postprocessor.cli import main as process
    from csc_predictor.cli import main as predict
    from csc_trainer.cli import main as train

    if container_pipeline["runs"]["fetcher"].returncode != 0:
        pytest.fail("the fetcher image failed: nothing to compare with", pytrace=False)
    data = tmp_path_factory.mktemp("local")
    shutil.copytree(container_pipeline["fetched"], data, dirs_exist_ok=True)
    mains = {
        "trainer": train,
        "exporter": export,
        "predictor": predict,
        "postprocessor": process,
        "packer": pack,
        "evaluator": evaluate,
    }
    for stage, _, _, argv in steps(str(data)):
        if stage in mains:
            assert mains[stage](argv) == 0, f"local {stage} failed: {argv}"
    return data


def test_containers_score_like_the_local_pipeline(container_pipeline, local_pipeline):
    run = container_pipeline["runs"]["evaluator"]
    assert not isinstance(run, str) and run.returncode == 0, "the evaluator image did not run"
    ours = json.loads((container_pipeline["data"] / "result.json").read_text())
    local = json.loads((local_pipeline / "result.json").read_text())
    for key in ("overall_score", "overall_instance_score", "overall_semantic_score"):
        assert ours[key] == pytest.approx(local[key], rel=1e-6, abs=1e-9), key
    assert ours["label_scores"].keys() == local["label_scores"].keys()
    for label, scores in local["label_scores"].items():
        for metric, value in scores.items():
            if isinstance(value, float):
                assert ours["label_scores"][label][metric] == pytest.approx(value, rel=1e-6, abs=1e-9), (
                    f"{label}.{metric}"
                )
