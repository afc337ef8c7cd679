"""Pooling and overall scores (UPSTREAM.md §9.3), and the two JSON views."""

import json
import math

import pytest
from csc_evaluator import aggregate

INST = ("mito", "nuc")


def sem(tp, fp, fn, missing=False):
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "status": "missing" if missing else "scored",
        "num_voxels": 1000,
        "voxel_size": [4.0, 4.0, 4.0],
        "is_missing": missing,
    }


def inst(tp, fp, fn, hsum, hn, missing=False, status="scored"):
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "hausdorff_norm_sum": hsum,
        "n_hausdorff": hn,
        "status": "missing" if missing else status,
        "num_voxels": 1000,
        "voxel_size": [4.0, 4.0, 4.0],
        "is_missing": missing,
    }


def test_pooling_across_crops_then_plain_means():
    per_crop = {
        "crop1": {"ecs": sem(10, 5, 5), "mito": inst(2, 1, 0, 2.5, 3)},
        "crop2": {"ecs": sem(0, 0, 80), "mito": inst(1, 0, 1, 0.5, 2), "er": sem(30, 10, 0)},
    }
    out = aggregate.combine_scores(per_crop, instance_classes=INST)
    ls = out["label_scores"]
    assert ls["ecs"]["iou"] == pytest.approx(10 / 100)  # pooled, not a mean of per-crop IoUs
    assert ls["er"]["iou"] == pytest.approx(0.75)
    f1 = 2 * 3 / (2 * 3 + 1 + 1)
    nh = 3.0 / 5
    assert ls["mito"]["f1"] == pytest.approx(f1)
    assert ls["mito"]["normalized_hausdorff_distance"] == pytest.approx(nh)
    assert ls["mito"]["combined_score"] == pytest.approx(math.sqrt(f1 * nh))
    assert (ls["mito"]["tp"], ls["mito"]["fp"], ls["mito"]["fn"]) == (3, 1, 1)
    assert out["overall_semantic_score"] == pytest.approx((0.1 + 0.75) / 2)
    assert out["overall_instance_score"] == pytest.approx(math.sqrt(f1 * nh))
    assert out["overall_score"] == pytest.approx(math.sqrt(math.sqrt(f1 * nh) * 0.425))


def test_nothing_anywhere_scores_one():
    per_crop = {"crop1": {"mito": inst(0, 0, 0, 0.0, 0), "ecs": sem(0, 0, 0)}}
    ls = aggregate.combine_scores(per_crop, instance_classes=INST)["label_scores"]
    assert ls["mito"]["f1"] == ls["mito"]["normalized_hausdorff_distance"] == ls["mito"]["combined_score"] == 1.0
    assert ls["ecs"]["iou"] == 1.0


def test_skipped_crop_contributes_nothing():
    per_crop = {
        "crop1": {"mito": inst(1, 0, 0, 1.0, 1)},
        "crop2": {"mito": inst(0, 0, 0, 0.0, 0, status="skipped_too_many_instances")},
    }
    ls = aggregate.combine_scores(per_crop, instance_classes=INST)["label_scores"]
    assert ls["mito"]["combined_score"] == 1.0


def test_entries_without_counts_give_f1_zero():
    ls = aggregate.combine_scores({"c": {"mito": inst(0, 0, 0, 0.7, 1)}}, instance_classes=INST)["label_scores"]
    assert ls["mito"]["f1"] == 0.0 and ls["mito"]["normalized_hausdorff_distance"] == pytest.approx(0.7)
    assert ls["mito"]["combined_score"] == 0.0


def test_missing_class_penalty_pools_in():
    per_crop = {"crop1": {"ecs": sem(50, 0, 0)}, "crop2": {"ecs": sem(0, 0, 1000, missing=True)}}
    out = aggregate.combine_scores(per_crop, instance_classes=INST)
    assert out["label_scores"]["ecs"]["iou"] == pytest.approx(50 / 1050)
    found = aggregate.combine_scores(per_crop, instance_classes=INST, include_missing=False)
    assert found["label_scores"]["ecs"]["iou"] == 1.0


def test_no_instance_classes_gives_zero_overall():
    out = aggregate.combine_scores({"c": {"ecs": sem(1, 0, 0)}}, instance_classes=INST)
    assert out["overall_instance_score"] == 0.0 and out["overall_score"] == 0.0


def test_views_and_sanitising():
    per_crop = {"crop1": {"ecs": sem(1, 1, 0), "mito": inst(0, 0, 3, 0.0, 3, missing=True)}}
    combined = aggregate.combine_scores(per_crop, instance_classes=INST)
    combined["overall_score"] = float("nan")
    ext = aggregate.extended_view(per_crop, combined, total_evals=7, git_version="x")
    assert ext["overall_score"] is None and ext["total_evals"] == 7 and ext["num_evals_done"] == 2
    assert list(ext)[:1] == ["crop1"] and ext["crop1"]["mito"]["status"] == "missing"
    pub = aggregate.public_view(ext, aggregate.submitted_labels(per_crop))
    assert list(pub) == list(aggregate.AGGREGATE_KEYS)
    assert pub["label_scores"] == {"ecs": {"iou": 0.5}}  # mito was not submitted; counts dropped
    json.dumps(pub, allow_nan=False)
    assert aggregate.sanitize({"a": [float("inf"), 1.0], "b": -float("inf")}) == {"a": [None, 1.0], "b": None}
