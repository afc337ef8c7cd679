"""datasplit.csv in the original's format (csc_trainer.datasplit, `csc make-datasplit`)."""

import csv

import numpy as np
from csc_common import views
from csc_common.geometry import Geometry
from csc_common.views import ClassEntry, CropEntry, DatasetView
from csc_trainer.cli import datasplit_main
from csc_trainer.datasplit import SplitRow, datasplit_csv, make_split, read_datasplit


def _crop(cid, classes, vs=8.0):
    g = Geometry([vs] * 3, [0, 0, 0], [4, 4, 4])
    entries = tuple(ClassEntry(c, "semantic", g, f"recon-1/labels/groundtruth/crop{cid}/{c}") for c in classes)
    return CropEntry(cid, "d", entries, "train")


def test_split_keeps_requested_order_and_skips_crops_without_classes():
    crops = [_crop(1, ["er", "nuc"]), _crop(2, ["mito"]), _crop(3, ["nuc"])]
    rows = make_split(crops, ["nuc", "er"], validate_ratio=0.0, rng=np.random.default_rng(0))
    assert rows == [SplitRow("train", 1, "d", ("nuc", "er")), SplitRow("train", 3, "d", ("nuc",))]


def test_force_all_and_scale_filters():
    crops = [_crop(1, ["nuc", "er"]), _crop(2, ["nuc"]), _crop(3, ["nuc", "er"], vs=16.0)]
    rng = np.random.default_rng(0)
    assert [r.crop_id for r in make_split(crops, ["nuc", "er"], validate_ratio=0.0, rng=rng, force_all="true")] == [
        1,
        3,
    ]
    rows = make_split(crops, ["nuc", "er"], validate_ratio=0.0, rng=rng, force_all="train")
    assert {r.crop_id: r.split for r in rows} == {1: "train", 2: "validate", 3: "train"}
    rows = make_split(crops, ["nuc", "er"], validate_ratio=0.0, rng=rng, scale=(8.0, 8.0, 8.0))
    assert [r.crop_id for r in rows] == [1, 2]


def test_at_least_one_training_crop():
    crops = [_crop(1, ["nuc"]), _crop(2, ["nuc"])]
    rows = make_split(crops, ["nuc"], validate_ratio=1.0, rng=np.random.default_rng(0))
    assert [r.split for r in rows] == ["train", "validate"]


def test_csv_format_and_round_trip(fixture_dataset, tmp_path):
    ds = views.load(fixture_dataset, DatasetView)
    rows = [SplitRow("train", 1, "fx-1", ("nuc", "er")), SplitRow("validate", 2, "fx-1", ("nuc",))]
    path = tmp_path / "split" / "datasplit.csv"
    path.parent.mkdir()
    text = datasplit_csv(rows, ds, path)
    first = text.splitlines()[0]
    assert first.startswith('"train","') and first.endswith('","recon-1/labels/groundtruth/crop1/[nuc,er]"')
    fields = next(csv.reader([first]))
    assert len(fields) == 5 and fields[2] == "recon-1/em/fibsem-uint8" and fields[1] == fields[3]
    assert (path.parent / fields[1]).resolve() == (fixture_dataset.parent / "fx-1" / "fx-1.zarr").resolve()
    path.write_text(text)
    assert read_datasplit(path, ds) == rows


def test_make_datasplit_cli(fixture_dataset, tmp_path, capsys):
    out = tmp_path / "ds.csv"
    rc = datasplit_main(
        [
            "--dataset",
            str(fixture_dataset),
            "--classes",
            "nuc,er",
            "--csv-path",
            str(out),
            "--validate-ratio",
            "0.5",
            "--seed",
            "1",
        ]
    )
    assert rc == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and all(ln.split(",")[0] in ('"train"', '"validate"') for ln in lines)
    assert any("crop2/[nuc]" in ln for ln in lines)  # crop 2 lacks er


def test_make_datasplit_no_matching_crops(fixture_dataset, tmp_path, capsys):
    out = tmp_path / "ds.csv"
    rc = datasplit_main(["--dataset", str(fixture_dataset), "--classes", "ribo", "--csv-path", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert len(err) == 1 and "no training crop annotates any of ribo" in err[0]
