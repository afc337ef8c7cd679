"""``csc get-counts``: crops and voxel counts per dataset and class, from the dataset manifest alone."""

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from csc_common import views, volumes
from csc_common.views import DatasetView, VoxelCounts
from csc_trainer.cli import counts_main
from csc_trainer.counts import count_classes

BIN = Path(sys.executable).parent


def _json(capsys, *argv: str) -> dict:
    assert counts_main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_counts_of_a_fetched_dataset_match_its_arrays(synthetic_data, capsys):
    ds = views.load(synthetic_data, DatasetView)
    doc = _json(capsys, "--dataset", str(synthetic_data), "-c", "all")
    lines = {(x["dataset"], x["name"]): x for x in doc["counts"]}
    assert doc["datasets"] == len(ds.datasets) >= 2
    for (dataset, name), line in lines.items():  # recount from the volumes the manifest points at
        crops = [c for c in ds.crops_of("train") if c.dataset == dataset and c.get(name)]
        arrays = [
            np.asarray(volumes.open_array(ds.dataset(dataset).zarr / str(c.get(name).path) / "s0")[...]) for c in crops
        ]
        assert line["crops"] == len(crops)
        assert line["annotated_voxels"] == sum(a.size for a in arrays)
        assert line["present_voxels"] == sum(int(np.count_nonzero(a)) for a in arrays)
        vox = [math.prod(c.get(name).geometry.voxel_size) for c in crops]
        um3 = sum(int(np.count_nonzero(a)) * v for a, v in zip(arrays, vox, strict=True)) / 1e9
        assert line["present_um3"] == pytest.approx(um3, abs=1e-6) and line["uncounted_crops"] == 0
    assert any(x["present_voxels"] for x in doc["counts"])


def test_table_like_the_original_and_default_classes(synthetic_data, capsys):
    assert counts_main(["--dataset", str(synthetic_data)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Found 2 datasets."
    rows = [ln.split() for ln in out if ln.startswith("\t") and not ln.startswith("\tclass")]
    assert [r[0] for r in rows] == ["nuc", "er"] * 2  # the original's default -c nuc,er, in that order
    assert all(r[1].isdigit() and r[2].isdigit() for r in rows)


def test_a_manifest_without_counts_says_so(fixture_dataset, capsys):
    doc = _json(capsys, "--dataset", str(fixture_dataset), "--classes", "er,mito")
    er = next(x for x in doc["counts"] if x["name"] == "er")
    assert er["crops"] == 2 and er["annotated_voxels"] is None and er["uncounted_crops"] == 2
    assert counts_main(["--dataset", str(fixture_dataset), "-c", "er"]) == 0
    assert "no recorded voxel counts" in capsys.readouterr().out


def test_partial_counts_are_not_summed(fixture_dataset, tmp_path):
    ds = views.load(fixture_dataset, DatasetView)
    first = ds.crops_of("train")[0]
    counted = replace(first, classes=tuple(replace(c, counts=VoxelCounts(10, 3)) for c in first.classes))
    ds2 = replace(ds, crops=tuple(counted if c is first else c for c in ds.crops))
    (line,) = count_classes(ds2, ["mito"])
    assert line.crops == 3 and line.uncounted_crops == 2 and line.present_voxels is None
    only = replace(ds2, crops=(counted,))
    (line,) = count_classes(only, ["mito"])
    assert (line.crops, line.annotated_voxels, line.present_voxels) == (1, 10, 3)
    saved = views.save(only, tmp_path / "dataset.json")  # the typed field survives the schema and a reload
    assert views.load(saved.path, DatasetView).crops[0].classes[0].counts == VoxelCounts(10, 3)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-c", "nux"], "--classes: unknown class(es) nux"),
        (["-c", "nuc,nuc"], "--classes lists a class twice"),
        (["--dataset", "/nonexistent/dataset.json"], "manifest file not found"),
    ],
)
def test_bad_input_is_one_line_exit_2(fixture_dataset, capsys, argv, expected):
    full = argv if "--dataset" in argv else ["--dataset", str(fixture_dataset), *argv]
    assert counts_main(full) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def test_umbrella_runs_get_counts(fixture_dataset):
    run = subprocess.run([BIN / "csc", "get-counts", "--dataset", str(fixture_dataset), "-c", "nuc"], text=True,
                         capture_output=True)  # fmt: skip
    assert run.returncode == 0 and run.stdout.startswith("Found 1 datasets.") and "\tnuc" in run.stdout
    code = f"import sys; from csc_trainer.cli import counts_main; counts_main(['--dataset', {str(fixture_dataset)!r}])"
    code += "; assert 'torch' not in sys.modules, 'get-counts imported torch'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
