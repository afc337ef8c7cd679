"""The evaluator on the challenge's real test manifest and on the fetcher's synthetic dataset."""

import json

from csc_common.classes import INSTANCE_CLASSES
from csc_common.crops import read_crop_manifest
from csc_common.manifest import read_manifest
from csc_evaluator.cli import main


def test_real_test_manifest_total_evals(shared_cellmap):
    rows = read_crop_manifest(shared_cellmap / "test_crop_manifest.csv")
    keys = {(r.crop_id, r.class_label) for r in rows}
    assert len(keys) == 413 and len({r.crop_id for r in rows}) == 16  # UPSTREAM.md §9.3 / §13
    assert {label for _, label in keys if label in INSTANCE_CLASSES} == {
        "nuc",
        "ves",
        "endo",
        "lyso",
        "ld",
        "perox",
        "mito",
        "np",
        "mt",
        "cell",
    }


def test_truth_scored_against_itself_is_perfect(synthetic_data, tmp_path):
    ds = read_manifest(synthetic_data, "dataset")
    truth = ds.resolve(ds["truth"])
    csv = ds.resolve(ds["test_manifest"])
    # the truth zarr is itself a valid (perfect) unzipped submission
    rc = main(
        [
            str(truth),
            "--truth",
            str(truth),
            "--test-manifest",
            str(csv),
            "--output",
            str(tmp_path / "result.json"),
            "--compare-empty",
            "-q",
        ]
    )
    assert rc == 0
    pub = json.loads((tmp_path / "result.json").read_text())
    assert pub["overall_score"] == 1.0 and pub["num_evals_done"] >= 2
    assert read_manifest(tmp_path / "scores.json", "scores")["empty_overall_score"] < 1.0
