import json
import stat
import zipfile

import numpy as np
import pytest
from csc_common.crops import CropRow
from csc_common.geometry import Geometry
from csc_common.submission.zipsafety import ZipLimits
from csc_common.volumes import create_array, open_group, write_multiscale
from csc_packer.check import check_zip
from csc_packer.cli import main
from csc_packer.testmanifest import load_test_manifest
from csc_packer.writers import save_volumes, zip_submission

G = Geometry((4.0, 4.0, 4.0), (1001.3, 40.0, 12.0), (6, 8, 10))
ROWS = [CropRow(7, "ds", "mito", G), CropRow(7, "ds", "er", G), CropRow(8, "ds", "ecs", G)]


def _good_zarr(tmp_path, name="sub.zarr"):
    z = tmp_path / name
    ids = np.arange(G.num_voxels, dtype=np.uint32).reshape(G.shape)
    save_volumes([ids, ids % 2 == 0], z, 7, ["mito", "er"], geometry=G)
    save_volumes([ids > 100], z, "crop8", ["ecs"], geometry=G)
    return z


def _zip_dir(src, zip_path, prefix=""):
    with zipfile.ZipFile(zip_path, "w") as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(src).as_posix())
    return zip_path


def _lines(report):
    return [f.line() for f in report.findings]


def test_a_good_zip_passes(tmp_path):
    z = zip_submission(_good_zarr(tmp_path), tmp_path / "s.zip")
    report = check_zip(z, ROWS)
    assert report.passed(strict=True) and report.ok == 3 and not report.findings, _lines(report)


def test_wrong_names_are_reported_as_missing(tmp_path):
    z = _good_zarr(tmp_path)
    (z / "crop7" / "er").rename(z / "crop7" / "ER")
    (z / "crop8").rename(z / "crop_8")
    report = check_zip(_zip_dir(z, tmp_path / "s.zip"), ROWS)
    missing = {f.where: f.message for f in report.missing}
    assert missing.keys() == {"crop7/er", "crop8/ecs"}
    assert "class er absent from crop7" in missing["crop7/er"] and "crop group crop8 absent" in missing["crop8/ecs"]
    assert {f.where for f in report.warnings} == {"crop7/ER", "crop_8/ecs"}  # ignored extras are named
    assert report.passed() and not report.passed(strict=True)


def _edit_attrs(z, path, **changes):
    f = z / path / ".zattrs"
    attrs = json.loads(f.read_text())
    for k, v in changes.items():
        if v is None:
            attrs.pop(k, None)
        else:
            attrs[k] = v
    f.write_text(json.dumps(attrs))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda z: _edit_attrs(z, "crop7/mito", translation=[1001.3, 40.0, 20.0]),
            r"crop7/mito: shape \(6, 8, 10\) at translation \(1001.3, 40, 20\) does not match the test manifest",
        ),
        (
            lambda z: _edit_attrs(z, "crop7/mito", translation=None),
            "crop7/mito: no translation/offset attr: the evaluator assumes 0",
        ),
        (
            lambda z: _edit_attrs(z, "crop7/mito", voxel_size=None, shape=None),
            None,
        ),  # shape still matches: matched by shape only, a warning
        (lambda z: _edit_attrs(z, "crop7/mito", shape=[6, 8, 11]), r"attr shape \[6, 8, 11\] contradicts"),
        (
            lambda z: _edit_attrs(z, "crop7/mito", voxel_size=[0.25, 0.25, 0.25]),
            r"after resampling \(\(0, 0, 1\) voxels at offset \(0, 0, 0\)\) it does not cover the test crop",
        ),
        (lambda z: _edit_attrs(z, "crop7/mito", voxel_size=["a", 1, 1]), "crop7/mito: unreadable: .*bad voxel_size"),
    ],
)
def test_wrong_attrs_are_errors(tmp_path, edit, message):
    z = _good_zarr(tmp_path)
    edit(z)
    report = check_zip(_zip_dir(z, tmp_path / "s.zip"), ROWS)
    if message is None:
        assert report.passed() and any("shape only" in f.message for f in report.warnings)
    else:
        assert not report.passed()
        assert any(__import__("re").search(message, line) for line in _lines(report)), _lines(report)


def test_coarser_declared_voxel_size_that_still_covers_is_a_warning(tmp_path):
    z = _good_zarr(tmp_path)
    _edit_attrs(z, "crop7/mito", voxel_size=[8, 8, 8])
    report = check_zip(_zip_dir(z, tmp_path / "s.zip"), ROWS)
    assert report.passed(strict=True) and "is resampled to the test crop's (4, 4, 4) nm" in " ".join(_lines(report))


def test_resampling_size_guard(tmp_path, monkeypatch):
    monkeypatch.setenv("MAX_VOLUME_SIZE_RATIO", "0.5")
    report = check_zip(zip_submission(_good_zarr(tmp_path), tmp_path / "s.zip"), ROWS)
    assert len(report.errors) == 3 and "MAX_VOLUME_SIZE_RATIO" in report.errors[0].message


def test_wrong_shape_is_an_error(tmp_path):
    z = _good_zarr(tmp_path)
    grp = open_group(z / "crop7", mode="a")
    create_array(
        grp,
        "mito",
        shape=(6, 8, 9),
        dtype=np.uint32,
        attrs={"voxel_size": [4, 4, 4], "translation": list(G.translation), "shape": [6, 8, 9]},
    )
    report = check_zip(_zip_dir(z, tmp_path / "s.zip"), ROWS)
    assert [f.where for f in report.errors] == ["crop7/mito"]
    assert (
        "shape (6, 8, 9) at translation" in report.errors[0].message and "(shape (6, 8, 10)" in report.errors[0].message
    )


def test_accepted_variants_warn_but_pass(tmp_path):
    z = _good_zarr(tmp_path)
    (z / "crop8").rename(z / "8")
    (z / "crop7").rename(z / "7")
    report = check_zip(_zip_dir(z, tmp_path / "nested.zip", prefix="my_submission.zarr/"), ROWS)
    assert report.passed(strict=True), _lines(report)
    text = " ".join(_lines(report))
    assert "hoists it" in text and "without the 'crop' prefix" in text


def test_multiscale_group_is_read_at_the_closest_level(tmp_path):
    z = _good_zarr(tmp_path)
    import shutil

    shutil.rmtree(z / "crop7" / "mito")
    write_multiscale(
        open_group(z / "crop7", mode="a"),
        "mito",
        [
            (np.zeros(G.shape, np.uint32), G),
            (np.zeros((3, 4, 5), np.uint32), Geometry((8, 8, 8), G.translation, (3, 4, 5))),
        ],
    )
    report = check_zip(_zip_dir(z, tmp_path / "s.zip"), ROWS)
    assert report.passed(strict=True), _lines(report)


def test_unsafe_zips_are_rejected(tmp_path, monkeypatch):
    z = _good_zarr(tmp_path)
    bad = _zip_dir(z, tmp_path / "slip.zip")
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("../../evil.txt", "x")
        link = zipfile.ZipInfo("crop7/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    report = check_zip(bad, ROWS)
    assert {f.where for f in report.errors} == {"../../evil.txt", "crop7/link"}  # every problem, not the first
    text = " ".join(_lines(report))
    assert "would extract outside the target directory" in text and "is a symlink" in text and report.ok == 0
    monkeypatch.setenv("MAX_UNCOMPRESSED_SIZE", "100")
    report = check_zip(zip_submission(z, tmp_path / "s.zip"), ROWS)
    assert "exceeds the limit of 100 bytes (MAX_UNCOMPRESSED_SIZE)" in " ".join(_lines(report))
    assert check_zip(zip_submission(z, tmp_path / "s.zip"), ROWS, limits=ZipLimits()).passed(strict=True)


BIG = b"0" * 3_000_000  # > 1 MiB, deflates about 1000:1


@pytest.mark.parametrize(
    ("name", "mode", "env", "expected"),
    [
        ("crop7/link", stat.S_IFLNK | 0o777, {}, "ERROR   crop7/link: member 'crop7/link' is a symlink"),
        ("crop7/fifo", stat.S_IFIFO | 0o644, {}, "ERROR   crop7/fifo: member 'crop7/fifo' is a special file"),
        ("../x", None, {}, "ERROR   ../x: member '../x' would extract outside the target directory ('..')"),
        ("/abs", None, {}, "ERROR   /abs: member '/abs' has an absolute path"),
        ("C:/x", None, {}, "ERROR   C:/x: member 'C:/x' has an absolute path (drive letter)"),
        ("crop7\\x", None, {}, r"ERROR   crop7\x: member 'crop7\\x' has a NUL or backslash in its name"),
        ("./", None, {}, "ERROR   ./: member './' resolves to the extraction folder itself"),
        ("crop7/mito/.zarray", None, {}, "ERROR   crop7/mito/.zarray: member 'crop7/mito/.zarray' appears twice"),
        ("secret", "encrypted", {}, "ERROR   secret: member 'secret' is encrypted"),
        (
            "extra",
            None,
            {"CSC_MAX_ZIP_MEMBERS": "3"},
            "ERROR   zip: {n} members exceed the limit of 3 (CSC_MAX_ZIP_MEMBERS)",
        ),
        (
            "extra",
            None,
            {"MAX_UNCOMPRESSED_SIZE": "100"},
            "ERROR   zip: uncompressed size {size} bytes exceeds the limit of 100 bytes (MAX_UNCOMPRESSED_SIZE)",
        ),
        ("bomb", BIG, {"CSC_MAX_COMPRESSION_RATIO": "50"}, "ERROR   bomb: member 'bomb' compression ratio "),
    ],
)
@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_every_zip_safety_rule_shows_in_check_output(tmp_path, capsys, monkeypatch, name, mode, env, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    zp = _zip_dir(_good_zarr(tmp_path), tmp_path / "s.zip")
    with zipfile.ZipFile(zp, "a", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        if isinstance(mode, int):
            info.external_attr = mode << 16
        zf.writestr(info, mode if isinstance(mode, bytes) else b"{}")
        if mode == "encrypted":
            info.flag_bits |= 0x1  # lands in the central directory on close
    with zipfile.ZipFile(zp) as zf:
        n, size = len(zf.infolist()), sum(i.file_size for i in zf.infolist())
    csv = tmp_path / "t.csv"
    from csc_common.crops import write_crop_manifest

    csv.write_text(write_crop_manifest(ROWS))
    assert main(["--check", str(zp), "--test-manifest", str(csv)]) == 2
    out = capsys.readouterr().out.splitlines()
    errors = [line for line in out if line.startswith("ERROR")]
    assert len(errors) == 1 and errors[0].startswith(expected.format(n=n, size=size)), out
    assert errors[0].endswith("; the evaluator rejects the whole zip")
    assert out[-1].endswith("3 rows: 0 ok, 0 missing, 1 errors, 0 warnings")  # nothing else is judged


def test_bad_limit_variable_is_bad_input(tmp_path, capsys, monkeypatch):
    zp = zip_submission(_good_zarr(tmp_path), tmp_path / "s.zip")
    csv = tmp_path / "t.csv"
    from csc_common.crops import write_crop_manifest

    csv.write_text(write_crop_manifest(ROWS))
    monkeypatch.setenv("CSC_MAX_ZIP_MEMBERS", "many")
    assert main(["--check", str(zp), "--test-manifest", str(csv)]) == 2
    assert "CSC_MAX_ZIP_MEMBERS: not a number: 'many'" in capsys.readouterr().err


def test_two_nested_zarrs_and_not_a_zip(tmp_path):
    z = _good_zarr(tmp_path)
    two = _zip_dir(z, tmp_path / "two.zip", prefix="a.zarr/")
    with zipfile.ZipFile(two, "a") as zf:
        zf.writestr("b.zarr/.zgroup", '{"zarr_format": 2}')
    assert "2 nested .zarr folders" in " ".join(_lines(check_zip(two, ROWS)))
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    assert "not a readable zip" in " ".join(_lines(check_zip(junk, ROWS)))


def test_cli_check_prints_findings_and_exits_2(tmp_path, capsys):
    z = _good_zarr(tmp_path)
    _edit_attrs(z, "crop7/mito", translation=[0, 0, 0])
    zp = _zip_dir(z, tmp_path / "s.zip")
    csv = tmp_path / "t.csv"
    from csc_common.crops import write_crop_manifest

    csv.write_text(write_crop_manifest(ROWS))
    assert main(["--check", str(zp), "--test-manifest", str(csv)]) == 2
    cap = capsys.readouterr()
    assert cap.out.splitlines()[0].startswith("ERROR   crop7/mito: shape (6, 8, 10) at translation (0, 0, 0)")
    assert "3 rows: 2 ok, 0 missing, 1 errors" in cap.out
    assert cap.err.strip().splitlines() == [f"csc-pack: error: {zp}: check failed: 1 errors"]
    assert main(["--check", str(tmp_path / "nope.zip"), "--test-manifest", str(csv)]) == 2


def test_real_test_manifest_counts_every_row_missing_in_an_empty_zip(tmp_path, shared_cellmap):
    test = load_test_manifest(str(shared_cellmap / "test_crop_manifest.csv"))
    assert len(test.rows) == 413
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr(".zgroup", '{"zarr_format": 2}')
        zf.writestr(f"crop{test.rows[0].crop_id}/.zgroup", '{"zarr_format": 2}')  # one crop group, no classes
    report = check_zip(empty, test.rows)
    assert len(report.missing) == 413 and report.ok == 0 and report.passed() and not report.passed(strict=True)
    with zipfile.ZipFile(empty, "w") as zf:  # no crop group at all: the evaluator refuses it (issue 14)
        zf.writestr(".zgroup", '{"zarr_format": 2}')
    report = check_zip(empty, test.rows)
    assert not report.passed() and "no crop of the ground truth found in the submission" in report.errors[0].message
