"""The whole pipeline end to end on the tiny synthetic dataset, through each stage's CLI.

This is `make demo` in miniature: every stage reads the previous stage's
manifest, writes its own, and the evaluator's score of the trained model must
beat the score of an all-empty submission on the same data.
"""

import json
import shutil
from pathlib import Path

import pytest
from csc_common.manifest import read_manifest

TINY_TRAIN = Path(__file__).with_name("tiny_train.yaml")


@pytest.fixture(scope="module")
def pipeline(synthetic_data, tmp_path_factory):
    from csc_evaluator.cli import main as evaluate
    from csc_exporter.cli import main as export
    from csc_packer.cli import main as pack
    from csc_postprocessor.cli import main as process
    from csc_predictor.cli import main as predict
    from csc_trainer.cli import main as train

    data = tmp_path_factory.mktemp("pipeline")
    shutil.copytree(synthetic_data.parent, data, dirs_exist_ok=True)
    d = str(data)
    steps = [
        (
            train,
            ["--dataset", f"{d}/dataset.json", "--output", f"{d}/models/tiny/model.json", "--config", str(TINY_TRAIN)],
        ),
        (export, ["--model", f"{d}/models/tiny/model.json", "--output", f"{d}/models/tiny/onnx-model.json"]),
        (
            predict,
            [
                "--model",
                f"{d}/models/tiny/onnx-model.json",
                "--dataset",
                f"{d}/dataset.json",
                "--output",
                f"{d}/predictions.json",
            ],
        ),
        (process, ["--predictions", f"{d}/predictions.json", "--output", f"{d}/processed.json"]),
        (
            pack,
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
            evaluate,
            [
                f"{d}/submission.zip",
                "--truth",
                f"{d}/ground_truth.zarr",
                "--test-manifest",
                f"{d}/test_crop_manifest.csv",
                "--output",
                f"{d}/result.json",
                "--compare-empty",
            ],
        ),
    ]
    for main, argv in steps:
        assert main(argv) == 0, f"{main.__module__} failed: {argv}"
    return data


KINDS = {
    "dataset.json": "dataset",
    "models/tiny/model.json": "model",
    "models/tiny/onnx-model.json": "onnx-model",
    "predictions.json": "predictions",
    "processed.json": "processed",
    "submission.json": "submission",
    "scores.json": "scores",
}


def test_every_stage_left_a_valid_manifest(pipeline):
    for rel, kind in KINDS.items():
        assert read_manifest(pipeline / rel, kind).kind == kind


@pytest.mark.parametrize("rel", list(KINDS))
def test_typed_views_round_trip_every_manifest_kind(pipeline, rel, tmp_path):
    """load -> to_json gives back exactly the file a stage wrote, here and from another folder."""
    from csc_common import views

    path = pipeline / rel
    view = views.load(path, views.VIEWS[KINDS[rel]])
    assert view.to_json(path) == json.loads(path.read_text())
    moved = views.save(view, tmp_path / "elsewhere" / path.name)  # paths re-relativised, same files
    again = views.load(moved.path, type(view))
    assert again.to_json(path) == view.to_json(path)


def test_result_has_the_official_keys(pipeline):
    result = json.loads((pipeline / "result.json").read_text())
    for key in (
        "overall_score",
        "overall_instance_score",
        "overall_semantic_score",
        "label_scores",
        "total_evals",
        "num_evals_done",
    ):
        assert key in result
    assert (pipeline / "result_extended.json").is_file()


def test_trained_model_beats_an_empty_submission(pipeline):
    scores = read_manifest(pipeline / "scores.json", "scores").data
    assert scores["overall_score"] is not None
    assert scores["overall_score"] > scores["empty_overall_score"]
