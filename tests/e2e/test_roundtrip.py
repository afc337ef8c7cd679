"""A perfect prediction survives process -> pack -> evaluate with a score of exactly 1.0.

The predictions are the held-apart test truth itself, encoded as the predictor
encodes probabilities (uint8, scale 1/255) and laid out as the predictor lays
them out (OME-NGFF group ``crop<N>/<class>``, level ``s0``), at each row's own
geometry; any misplacement, resampling or dtype slip between the stages would
lower the score.
"""

import json

import numpy as np
from csc_common.classes import class_kind
from csc_common.crops import read_crop_manifest
from csc_common.geometry import Geometry
from csc_common.manifest import new_manifest, now, read_manifest, write_manifest
from csc_common.volumes import Level, open_array, open_group, read_levels, write_multiscale


def _perfect_predictions(dataset_json, out_dir):
    ds = read_manifest(dataset_json, "dataset")
    truth = ds.resolve(ds["truth"])
    rows = read_crop_manifest(ds.resolve(ds["test_manifest"]))
    root = open_group(out_dir / "predictions.zarr", "w")
    crops: dict[int, dict] = {}
    for row in rows:
        labels = open_array(truth / row.crop_name / row.class_label)[...]
        g = row.geometry
        group = write_multiscale(
            root.require_group(row.crop_name), row.class_label, [(np.where(labels > 0, 255, 0).astype(np.uint8), g)]
        )
        group["s0"].attrs.update({"voxel_size": list(g.voxel_size), "translation": list(g.translation)})
        path = f"{row.crop_name}/{row.class_label}/s0"
        crop = crops.setdefault(row.crop_id, {"id": row.crop_id, "dataset": row.dataset, "classes": []})
        crop["classes"].append(
            {"name": row.class_label, "kind": class_kind(row.class_label), "path": path, "geometry": g.to_json()}
        )
    manifest = new_manifest(
        "predictions",
        "predictor",
        now(),
        args=[],
        zarr="predictions.zarr",
        encoding={"dtype": "uint8", "scale": 1 / 255},
        provider="truth",
        crops=list(crops.values()),
    )
    write_manifest(out_dir / "predictions.json", manifest)
    return out_dir / "predictions.json", ds.resolve(ds["test_manifest"]), truth


def test_perfect_prediction_scores_one(synthetic_data, tmp_path):
    from csc_evaluator.cli import main as evaluate
    from csc_packer.cli import main as pack
    from csc_postprocessor.cli import main as process

    preds, test_csv, truth = _perfect_predictions(synthetic_data, tmp_path)
    assert process(["--predictions", str(preds), "--output", str(tmp_path / "processed.json")]) == 0
    processed = read_manifest(tmp_path / "processed.json", "processed")
    for crop in processed["crops"]:
        for c in crop["classes"]:
            group = c["path"].removesuffix("/s0")
            assert group == f"crop{crop['id']}/{c['name']}"
            assert read_levels(processed.resolve(processed["zarr"]) / group) == [
                Level("s0", Geometry.from_json(c["geometry"]))
            ]
    assert (
        pack(
            [
                "--processed",
                str(tmp_path / "processed.json"),
                "--test-manifest",
                str(test_csv),
                "--output",
                str(tmp_path / "submission.json"),
            ]
        )
        == 0
    )
    assert (
        evaluate(
            [
                str(tmp_path / "submission.zip"),
                "--truth",
                str(truth),
                "--test-manifest",
                str(test_csv),
                "--output",
                str(tmp_path / "result.json"),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["num_evals_done"] == result["total_evals"] == len(read_crop_manifest(test_csv))
    assert result["overall_score"] == 1.0
    assert all(s.get("iou", s.get("combined_score")) == 1.0 for s in result["label_scores"].values()), result[
        "label_scores"
    ]
