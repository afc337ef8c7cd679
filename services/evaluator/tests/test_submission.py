"""Submission forms, read in place, and the safety checks that run before any chunk is read."""

import stat
import zipfile

import numpy as np
import pytest
from csc_common.errors import SubmissionError
from csc_common.geometry import Geometry
from csc_common.submission.zipsafety import ZipLimits
from csc_evaluator.constants import Constants
from csc_evaluator.submission import open_submission, read_prediction

C = Constants()


def _zip(path, members):
    """members: list of (name, data, unix_mode or None)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([("../evil", b"x", None)], r"'\.\./evil' would extract outside"),
        ([("crop1/../../evil", b"x", None)], r"crop1/\.\./\.\./evil"),
        ([("/etc/evil", b"x", None)], r"'/etc/evil' has an absolute path"),
        ([("link", b"/etc/passwd", stat.S_IFLNK | 0o777)], r"'link' is a symlink"),
        ([("fifo", b"", stat.S_IFIFO | 0o644)], r"'fifo' is a special file"),
        ([("a", b"x", None), ("a", b"y", None)], r"'a' appears twice"),
        ([("c:/evil", b"x", None)], r"absolute path"),
        ([("./", b"", None)], r"'\./' resolves to the extraction folder itself"),
        ([("crop1\\..\\..\\evil", b"x", None)], r"has a NUL or backslash in its name"),
        ([("crop1/mito", b"x", None), ("crop1/mito/.zarray", b"{}", None)], r"'crop1/mito' is a file, but other"),
    ],
)
@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_hostile_members_are_refused_by_name(tmp_path, members, match):
    z = _zip(tmp_path / "bad.zip", members)
    with pytest.raises(SubmissionError, match=match):
        open_submission(z, C)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]  # nothing written anywhere near it
    assert not (tmp_path.parent / "evil").exists()


def test_size_count_and_ratio_limits(tmp_path, monkeypatch):
    z = _zip(tmp_path / "big.zip", [("a", b"0" * 3_000_000, None), ("b", b"1", None)])
    monkeypatch.setenv("MAX_UNCOMPRESSED_SIZE", "1000")
    with pytest.raises(SubmissionError, match="MAX_UNCOMPRESSED_SIZE"):
        open_submission(z, Constants.from_env())
    monkeypatch.delenv("MAX_UNCOMPRESSED_SIZE")
    monkeypatch.setenv("CSC_MAX_ZIP_MEMBERS", "1")
    with pytest.raises(SubmissionError, match="2 members exceed the limit of 1"):
        open_submission(z, Constants.from_env())
    monkeypatch.delenv("CSC_MAX_ZIP_MEMBERS")
    monkeypatch.setenv("CSC_MAX_COMPRESSION_RATIO", "50")
    with pytest.raises(SubmissionError, match=r"member 'a' compression ratio \d+:1 exceeds 50:1"):
        open_submission(z, Constants.from_env())
    monkeypatch.setenv("MAX_UNCOMPRESSED_SIZE", "2e6")  # one parser, shared with csc-pack --check
    assert Constants.from_env().zip_limits == ZipLimits.from_env() == ZipLimits(2_000_000, 2_000_000, 50.0)
    assert Constants().zip_limits == ZipLimits()
    monkeypatch.delenv("MAX_UNCOMPRESSED_SIZE")
    monkeypatch.delenv("CSC_MAX_COMPRESSION_RATIO")
    with pytest.raises(SubmissionError, match=r"member 'a' is 3000000 bytes uncompressed, more than a file that is"):
        open_submission(z, C)  # within every zip limit, but no zarr member can be that large


def test_not_a_zip_and_two_zips(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(SubmissionError, match="not a zip file"):
        open_submission(tmp_path / "x.txt", C)
    d = tmp_path / "two"
    d.mkdir()
    _zip(d / "a.zip", [("a", b"x", None)])
    _zip(d / "b.zip", [("a", b"x", None)])
    with pytest.raises(SubmissionError, match="holds 2 zip files"):
        open_submission(d, C)
    with pytest.raises(SubmissionError, match="not found"):
        open_submission(tmp_path / "nope.zip", C)


def test_read_in_place_every_run(tmp_path, tiny_case, ev):
    _, truth = tiny_case
    ev.write_submission(tmp_path / "s1.zarr", {"crop1": {"ecs": truth["crop1"]["ecs"]}})
    z = ev.zip_dir(tmp_path / "s1.zarr", tmp_path / "sub.zip")
    before = sorted(tmp_path.rglob("*"))
    with open_submission(z, C) as sub:
        assert set(sub.classes("crop1")) == {"ecs"} and sub.source == z and sub.root == ""
    assert sorted(tmp_path.rglob("*")) == before  # nothing extracted, next to the zip or anywhere in tmp
    ev.write_submission(tmp_path / "s2.zarr", {"crop1": {"mito": truth["crop1"]["mito"]}})
    ev.zip_dir(tmp_path / "s2.zarr", z)  # same zip path, new content
    with open_submission(z, C) as sub:
        assert set(sub.classes("crop1")) == {"mito"}  # never a stale cache


def test_nested_zarr_is_used_in_place_and_folder_with_one_zip(tmp_path, tiny_case, ev):
    _, truth = tiny_case
    data, g = truth["crop1"]["ecs"]
    ev.write_submission(tmp_path / "wrap" / "inner" / "my.zarr", {"crop1": {"ecs": (data, g)}})
    (tmp_path / "holder").mkdir()
    z = ev.zip_dir(tmp_path / "wrap", tmp_path / "holder" / "x.zip")
    with open_submission(tmp_path / "holder", C) as sub:
        assert sub.root == "inner/my.zarr/" and sub.source == z
        node = sub.classes(sub.match_crops(["crop1"])["crop1"])["ecs"]
        assert node == "inner/my.zarr/crop1/ecs"
        assert np.array_equal(read_prediction(sub.ref(node), g, kind="semantic"), data)
    with open_submission(tmp_path / "wrap", C) as sub:  # an unzipped folder is read in place
        assert sub.source == tmp_path / "wrap" and sub.root == "inner/my.zarr/"
        assert "ecs" in sub.classes("inner/my.zarr/crop1")
    ev.write_submission(tmp_path / "wrap" / "other.zarr", {})
    with pytest.raises(SubmissionError, match="contains 2 zarr folders"):
        open_submission(tmp_path / "wrap", C)


def test_crop_prefix_fallback(tmp_path):
    for crop in ("1", "2"):
        (tmp_path / "sub" / crop).mkdir(parents=True)
    with open_submission(tmp_path / "sub", C) as sub:
        assert sub.match_crops(["crop1", "crop3"]) == {"crop1": "1"}
    (tmp_path / "sub" / "crop3").mkdir()
    with open_submission(tmp_path / "sub", C) as sub:
        assert sub.match_crops(["crop1", "crop3"]) == {"crop3": "crop3"}
        with pytest.raises(SubmissionError, match="no crop of the ground truth"):
            sub.match_crops(["crop9"])


def test_symlink_in_unzipped_submission_is_refused(tmp_path):
    (tmp_path / "sub" / "crop1").mkdir(parents=True)
    (tmp_path / "sub" / "crop1" / "mito").symlink_to(tmp_path)
    with pytest.raises(SubmissionError, match=r"entry 'crop1/mito' is a symlink"):
        open_submission(tmp_path / "sub", C)


def test_worker_reads_its_pair_from_the_zip(tmp_path, tiny_case, ev):
    """A job carries a picklable reference; the worker reads straight from the zip, with the parent's listing."""
    import pickle

    _, truth = tiny_case
    data, g = truth["crop2"]["mito"]
    ev.write_submission(tmp_path / "s.zarr", {"crop2": {"mito": (data, g)}})
    z = ev.zip_dir(tmp_path / "s.zarr", tmp_path / "s.zip")
    with open_submission(z, C) as sub:
        ref = pickle.loads(pickle.dumps(sub.ref("crop2/mito")))
        assert np.array_equal(read_prediction(ref, g, kind="instance"), data)
    bigger = Geometry(g.voxel_size, g.translation, (7, 6, 6))  # read without the parent: a fresh open
    assert read_prediction(ref, bigger, kind="instance")[:6].tolist() == data.tolist()
