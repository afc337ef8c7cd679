import json
import zipfile

import numpy as np
import pytest
import zarr
from csc_common.fsutil import sha256_file
from csc_common.geometry import Geometry
from csc_common.manifest import read_manifest
from csc_packer.cli import main
from skimage.transform import rescale

ROW_MITO = Geometry((4.0, 4.0, 4.0), (1001.3, 40.0, 12.0), (12, 16, 20))
ROW_ER = Geometry((8.0, 8.0, 8.0), (1000.0, 36.0, 8.0), (6, 8, 10))


def _truth():
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 400, size=(6, 8, 10)).astype(np.uint32)  # ids > 255 included
    coarse[coarse < 60] = 0
    mito = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)  # constant on 2x2x2 blocks: exact under resampling
    er = (rng.random((6, 8, 10)) > 0.5).astype(np.uint8)
    return coarse, mito, er


def _pack(processed, csv, tmp_path, *extra):
    out = processed.parent / "submission.json"
    rc = main(["--processed", str(processed), "--test-manifest", str(csv), "--output", str(out), "-q", *extra])
    return rc, out


def _zip_array(zip_path, name):
    store = zarr.storage.ZipStore(zip_path, mode="r")
    arr = zarr.open_array(store, path=name, mode="r", zarr_format=2)
    return arr[...], dict(arr.attrs)


def test_perfect_prediction_round_trips_in_the_challenge_format(make_processed, make_test_manifest, tmp_path):
    _, mito, er = _truth()
    processed = make_processed([(7, "mito", mito, ROW_MITO), (7, "er", er, ROW_ER)])
    csv = make_test_manifest([(7, "mito", ROW_MITO), (7, "er", ROW_ER)])
    rc, out = _pack(processed, csv, tmp_path)
    assert rc == 0
    m = read_manifest(out, "submission")
    zip_path = m.resolve(m["zip"]["path"])
    assert zip_path == out.with_suffix(".zip")
    assert m["zip"]["sha256"] == sha256_file(zip_path)
    assert (m["rows"], m["packed"], m["missing"]) == (2, 2, [])
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        assert {".zgroup", "crop7/.zgroup", "crop7/mito/.zarray", "crop7/er/.zarray"} <= names
        assert not any(n.startswith(("submission.zarr", "/")) for n in names)
        assert json.loads(zf.read(".zgroup")) == {"zarr_format": 2}
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    got, attrs = _zip_array(zip_path, "crop7/mito")
    assert got.dtype == np.uint32 and np.array_equal(got, mito)
    assert attrs == {"voxel_size": [4.0, 4.0, 4.0], "translation": [1001.3, 40.0, 12.0], "shape": [12, 16, 20]}
    got, attrs = _zip_array(zip_path, "crop7/er")
    assert got.dtype == np.uint8 and np.array_equal(got, er)


@pytest.mark.parametrize("layout", ["group", "flat"])
def test_a_path_naming_the_group_or_a_plain_array_packs_the_same(make_processed, make_test_manifest, tmp_path, layout):
    """The processed layout (``crop<N>/<class>/s0`` in an OME-NGFF group) is the default; other readable forms too."""
    _, mito, er = _truth()
    vols = [(7, "mito", mito, ROW_MITO), (7, "er", er, ROW_ER)]
    csv = make_test_manifest([(7, "mito", ROW_MITO), (7, "er", ROW_ER)])
    zip_path = tmp_path / "data/submission.zip"
    assert _pack(make_processed(vols), csv, tmp_path)[0] == 0
    want = {n: _zip_array(zip_path, n)[0] for n in ("crop7/mito", "crop7/er")}
    assert _pack(make_processed(vols, layout=layout), csv, tmp_path)[0] == 0
    for n, arr in want.items():
        np.testing.assert_array_equal(_zip_array(zip_path, n)[0], arr)
    np.testing.assert_array_equal(want["crop7/mito"], mito)


def test_ids_above_255_stay_distinct(make_processed, make_test_manifest, tmp_path):
    ids = np.arange(1, 12 * 16 * 20 + 1, dtype=np.uint32).reshape(ROW_MITO.shape)  # 3840 distinct ids
    rc, out = _pack(make_processed([(7, "mito", ids, ROW_MITO)]), make_test_manifest([(7, "mito", ROW_MITO)]), tmp_path)
    assert rc == 0
    got, _ = _zip_array(out.with_suffix(".zip"), "crop7/mito")
    assert got.dtype == np.uint32 and len(np.unique(got)) == ids.size and np.array_equal(got, ids)


def test_coarser_prediction_lands_on_the_finer_test_grid(make_processed, make_test_manifest, tmp_path):
    coarse, mito, _ = _truth()
    coarse_geom = Geometry((8.0, 8.0, 8.0), ROW_MITO.translation, coarse.shape)
    semantic = np.zeros(coarse.shape, np.uint8)
    semantic[:3, 2:] = 1  # smooth shapes: linear interpolation then > 0.5 reproduces them
    sem_truth = semantic.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    processed = make_processed([(7, "mito", coarse, coarse_geom), (7, "er", semantic, coarse_geom)])
    csv = make_test_manifest([(7, "mito", ROW_MITO), (7, "er", ROW_MITO)])
    rc, out = _pack(processed, csv, tmp_path)
    assert rc == 0
    got, _ = _zip_array(out.with_suffix(".zip"), "crop7/mito")
    np.testing.assert_array_equal(got, mito)
    got, _ = _zip_array(out.with_suffix(".zip"), "crop7/er")
    # exactly the challenge's rule (skimage rescale, linear, constant mode, > 0.5), which loses a few voxels
    # where three faces/interfaces meet (0.75**3 < 0.5) and nothing else
    expected = rescale(semantic.astype(np.float32), 2, order=1, mode="constant", preserve_range=True) > 0.5
    np.testing.assert_array_equal(got, expected)
    assert np.count_nonzero(got != sem_truth) <= 8


def test_finer_prediction_lands_on_the_coarser_test_grid(make_processed, make_test_manifest, tmp_path):
    coarse, mito, _ = _truth()
    fine = Geometry((2.0, 2.0, 2.0), ROW_ER.translation, tuple(2 * n for n in mito.shape))
    row = Geometry((4.0, 4.0, 4.0), ROW_ER.translation, mito.shape)
    rc, out = _pack(
        make_processed([(7, "mito", mito.repeat(2, 0).repeat(2, 1).repeat(2, 2), fine)]),
        make_test_manifest([(7, "mito", row)]),
        tmp_path,
    )
    assert rc == 0
    got, _ = _zip_array(out.with_suffix(".zip"), "crop7/mito")
    np.testing.assert_array_equal(got, mito)


def test_offset_prediction_is_snapped_and_cropped_onto_the_test_box(make_processed, make_test_manifest, tmp_path):
    _, mito, _ = _truth()
    big = np.zeros((20, 24, 30), np.uint32)
    big[3:15, 5:21, 2:22] = mito  # the test box sits 3, 5, 2 voxels inside a larger prediction
    vs = np.asarray(ROW_MITO.voxel_size)
    # translation off-grid by less than a voxel: snapping floors it onto the test grid
    tr = tuple(np.asarray(ROW_MITO.translation) - vs * (3, 5, 2) + 0.4)
    rc, out = _pack(
        make_processed([(7, "mito", big, Geometry(ROW_MITO.voxel_size, tr, big.shape))]),
        make_test_manifest([(7, "mito", ROW_MITO)]),
        tmp_path,
    )
    assert rc == 0
    got, _ = _zip_array(out.with_suffix(".zip"), "crop7/mito")
    np.testing.assert_array_equal(got, mito)


def test_missing_rows_warn_or_fail_with_strict(make_processed, make_test_manifest, tmp_path, capsys):
    _, mito, _ = _truth()
    processed = make_processed([(7, "mito", mito, ROW_MITO)])
    csv = make_test_manifest([(7, "mito", ROW_MITO), (7, "er", ROW_ER), (9, "nuc", ROW_ER)])
    rc, out = _pack(processed, csv, tmp_path, "--strict")
    assert rc == 2 and not out.exists() and not out.with_suffix(".zip").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 of 3 test rows" in err[0] and "crop7/er, crop9/nuc" in err[0]
    rc, out = _pack(processed, csv, tmp_path)
    assert rc == 0
    m = read_manifest(out, "submission")
    assert m["missing"] == [{"crop": 7, "class": "er"}, {"crop": 9, "class": "nuc"}] and m["packed"] == 1
    with zipfile.ZipFile(out.with_suffix(".zip")) as zf:
        assert "crop9/.zgroup" in zf.namelist()  # every test crop gets its group, like the original


@pytest.mark.parametrize(
    ("breakit", "message"),
    [
        (lambda p: p.write_text("{"), "not valid JSON"),
        (lambda p: p.write_text(p.read_text().replace('"processed"', '"predictions"', 1)), "/kind"),
        (lambda p: (p.parent / "processed.zarr" / ".zgroup").unlink(), "processed.zarr"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(
    make_processed, make_test_manifest, tmp_path, capsys, breakit, message
):
    _, mito, _ = _truth()
    processed = make_processed([(7, "mito", mito, ROW_MITO)])
    csv = make_test_manifest([(7, "mito", ROW_MITO)])
    breakit(processed)
    rc, out = _pack(processed, csv, tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists() and not out.with_suffix(".zip").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".submission")]


def test_default_test_manifest_comes_from_the_env_url(make_processed, make_test_manifest, tmp_path, monkeypatch):
    _, mito, _ = _truth()
    processed = make_processed([(7, "mito", mito, ROW_MITO)])
    csv = make_test_manifest([(7, "mito", ROW_MITO)])
    monkeypatch.setenv("CSC_TEST_CROP_MANIFEST_URL", csv.resolve().as_uri())
    out = processed.parent / "submission.json"
    assert main(["--processed", str(processed), "--output", str(out), "-q"]) == 0
    assert read_manifest(out, "submission")["test_manifest"].startswith("file://")


def test_unreachable_default_manifest_is_one_line_exit_2(make_processed, tmp_path, monkeypatch, capsys):
    _, mito, _ = _truth()
    processed = make_processed([(7, "mito", mito, ROW_MITO)])
    monkeypatch.setenv("CSC_TEST_CROP_MANIFEST_URL", "http://127.0.0.1:9/test_crop_manifest.csv")
    out = processed.parent / "submission.json"
    assert main(["--processed", str(processed), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot fetch the test crop manifest" in err[0] and "--test-manifest" in err[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--check", "Z.zip", "--processed", "P.json", "--output", "O.json"], "takes no --processed or --output"),
        (["--check", "Z.zip", "--output", "O.json"], "takes no --output"),
        (["--output", "O.json"], "--processed is required"),
        (["--processed", "P.json"], "--output is required"),
        (["--processed", "P.json", "--output", "O.zip"], "must be a .json file"),
    ],
)
def test_contradictory_or_missing_flags_are_one_line_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("csc-pack: error:") and message in err[0], err
    assert not list(tmp_path.iterdir())  # refused before anything was read or written


def test_config_file_feeds_the_same_checks(tmp_path, capsys):
    cfg = tmp_path / "pack.yaml"
    cfg.write_text("check: Z.zip\nprocessed: P.json\n")
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "takes no --processed" in err[0], err


def test_submission_manifest_reads_back_as_a_typed_view(make_processed, make_test_manifest, tmp_path):
    from csc_common import views

    _, mito, _ = _truth()
    csv = make_test_manifest([(7, "mito", ROW_MITO), (7, "er", ROW_ER)])
    rc, out = _pack(make_processed([(7, "mito", mito, ROW_MITO)]), csv, tmp_path)
    assert rc == 0
    view = views.load(out, views.SubmissionView)
    assert view.zip.path == out.with_suffix(".zip").resolve() and view.zip.sha256 == sha256_file(view.zip.path)
    assert (view.rows, view.packed, view.missing) == (2, 1, ((7, "er"),))
    assert view.details["test_manifest_sha256"] == sha256_file(csv)
    assert [i["kind"] for i in view.header.inputs] == ["processed"]
