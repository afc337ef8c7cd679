"""The submission reader: judged from the member list before any chunk is read, then read in place, guarded."""

import json
import zipfile

import numpy as np
import pytest
from csc_common import volumes
from csc_common.crops import CropRow
from csc_common.errors import GeometryError, SubmissionError
from csc_common.geometry import Geometry
from csc_common.submission import reader
from csc_common.submission.chunks import ArrayMeta
from csc_common.submission.reader import index_submission, open_submission
from csc_common.submission.zipsafety import ZIP, ZipLimits

G = Geometry((4.0, 4.0, 4.0), (0.0, 0.0, 0.0), (16, 16, 16))
ROWS = [CropRow(1, "ds", "ecs", G)]
L = ZipLimits()


def _meta(**changes):
    meta = {
        "zarr_format": 2,
        "shape": [16, 16, 16],
        "chunks": [8, 8, 8],
        "dtype": "<f4",
        "compressor": None,
        "fill_value": 0,
        "order": "C",
        "filters": None,
        "dimension_separator": "/",
    }
    return json.dumps({**meta, **changes}).encode()


def _submission(tmp_path, data=None, dtype=np.float32):
    root = tmp_path / "sub.zarr"
    grp = volumes.open_group(root, "w")
    arr = volumes.create_array(
        grp.require_group("crop1"), "ecs", shape=G.shape, dtype=dtype, chunks=(8, 8, 8), attrs={"voxel_size": [4] * 3}
    )
    arr[...] = np.ones(G.shape, dtype) if data is None else data
    return root


def _zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _members(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _problems(path, rows=ROWS, limits=L):
    with index_submission(path) as sub:
        return list(sub.problems(limits, rows))


def test_array_meta_bounds_its_chunks():
    a = ArrayMeta.parse(_meta(), "crop1/ecs")
    assert (a.grid, a.chunk_bytes, a.chunk_limit) == ((2, 2, 2), 2048, 2048)  # no codec: exactly the chunk
    assert ArrayMeta.parse(_meta(compressor={"id": "zlib"}), "x").chunk_limit == 2048 + 32 + 4096
    assert ArrayMeta.parse(_meta(dtype="|u1", filters=[{"id": "delta", "dtype": "u1"}]), "x").chunk_limit == 4096
    assert a.is_chunk("1/0/1") and not a.is_chunk("2/0/0") and not a.is_chunk("1.0.1") and not a.is_chunk("0/0")
    dotted = ArrayMeta.parse(_meta(dimension_separator="."), "a")
    assert dotted.is_chunk("1.1.0") and dotted.chunk_key((1, 1, 0)) == "a/1.1.0"
    assert ArrayMeta.parse(_meta(dimension_separator=None), "a").separator == "."  # the Zarr-2 default
    assert a.chunk_problem(10) is None and "more than a zip may hold members (7" in ArrayMeta.parse(
        _meta(chunks=[1, 1, 1]), "a"
    ).chunk_problem(7)
    assert "hold 4000000000000 bytes" in ArrayMeta.parse(_meta(chunks=[10000] * 3), "a").chunk_problem(10)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"zarr_format": 3}, "zarr_format is 3, expected 2"),
        ({"shape": [16, -1, 16]}, "shape must be integers >= 0"),
        ({"chunks": [8, 0, 8]}, "chunks must be integers >= 1"),
        ({"chunks": [8, 8.5, 8]}, "chunks must be a list of integers"),
        ({"chunks": [8, 8]}, "do not match the 3 dimensions"),
        ({"dtype": "nonsense"}, "dtype 'nonsense' is not a dtype"),
        ({"dimension_separator": "-"}, "dimension_separator '-'"),
    ],
)
def test_bad_array_metadata_is_refused_naming_the_member(tmp_path, changes, message):
    members = _members(_submission(tmp_path))
    z = _zip(tmp_path / "s.zip", {**members, "crop1/ecs/.zarray": _meta(**changes)})
    [problem] = _problems(z)
    assert problem.where == "crop1/ecs/.zarray" and message in problem.message
    assert problem.message.startswith("member 'crop1/ecs/.zarray' is not Zarr-2 array metadata: ")
    with pytest.raises(SubmissionError, match="not Zarr-2 array metadata"):
        open_submission(z, L, ROWS)


def test_problems_in_order_from_declared_sizes(tmp_path):
    members = _members(_submission(tmp_path))
    z = _zip(
        tmp_path / "s.zip",
        {
            **members,
            "crop1/ecs/0/0/0": b"\0" * 20_000,  # a chunk of 8^3 floats: at most 2048 + 32 + 4096 bytes
            "crop1/ecs/.zattrs": b" " * (2 << 20),  # metadata: 1 MiB at most
            "notes.txt": b"n" * (2 << 20),  # a stray file: 1 MiB at most
            "crop1/ecs/9/9/9": b"x",  # outside the grid: a (small) stray, never read
        },
    )
    problems = _problems(z)
    assert [p.where for p in problems] == ["crop1/ecs/.zattrs", "crop1/ecs/0/0/0", "notes.txt"]
    assert "more than zarr metadata may hold (1048576 bytes)" in problems[0].message
    assert (
        "more than a chunk [8, 8, 8] of float32 of array 'crop1/ecs' (plus codec overhead) may hold (6176 bytes)"
        in (problems[1].message)
    )
    assert "neither zarr metadata nor an array chunk" in problems[2].message


def test_small_files_and_the_rows_bound_the_total(tmp_path, monkeypatch):
    members = _members(_submission(tmp_path))
    strays = {f"pad/{i}": b"\0" * (1 << 20) for i in range(65)}  # 65 MiB of 1 MiB strays: each allowed, not all
    [problem] = _problems(_zip(tmp_path / "s.zip", {**members, **strays}))
    assert problem.where == ZIP and "more than the 64 MiB allowed in all" in problem.message
    monkeypatch.setenv("MAX_VOLUME_SIZE_RATIO", "1")  # one row of 16^3 voxels may need 16^3 * 8 bytes + 64 MiB
    extra = {"crop1/big/.zarray": _meta(shape=[64, 512, 512], chunks=[1, 512, 512], dtype="|u1")}
    extra |= {f"crop1/big/{i}/0/0": b"\0" * (1 << 18) for i in range(260)}  # 65 MiB of legal chunks
    [problem] = _problems(_zip(tmp_path / "t.zip", {**members, **extra}))
    assert problem.where == ZIP and "is more than the 1 test rows can need (67141632 bytes" in problem.message
    assert _problems(_zip(tmp_path / "t.zip", {**members, **extra}), rows=()) == []  # no rows: no row bound


def test_a_member_that_grows_after_judging_is_refused_before_it_is_inflated(tmp_path):
    z = _zip(tmp_path / "s.zip", _members(_submission(tmp_path)))
    with open_submission(z, L, ROWS) as sub:
        arr, _ = sub.array_for("crop1/ecs", G)
        sub.sizes["crop1/ecs/1/1/1"] = 10**9  # as if the listing said so: the store checks every read again
        with pytest.raises(SubmissionError, match=r"member 'crop1/ecs/1/1/1' is 1000000000 bytes \(0.93 GiB\)"):
            sub.read(arr)
        with pytest.raises(SubmissionError, match=r"member 'crop1/ecs/1/1/1' is 1000000000 bytes"):
            sub.verify(arr)


def test_read_and_verify_name_the_first_bad_chunk(tmp_path):
    data = np.ones(G.shape, np.float32)
    data[12, 3, 9] = np.inf
    data[13, 13, 13] = np.nan
    members = _members(_submission(tmp_path, data))
    z = _zip(tmp_path / "s.zip", {**members, "crop1/ecs/0/1/1": b"junk"})
    with open_submission(z, L, ROWS) as sub:
        arr, grid = sub.array_for("crop1/ecs", G)
        assert grid.voxel_size == (4.0, 4.0, 4.0)
        for read in (sub.read, sub.verify):
            with pytest.raises(SubmissionError, match=r"^member 'crop1/ecs/0/1/1': cannot read array data \("):
                read(arr)
    z = _zip(tmp_path / "s.zip", members)
    with open_submission(z, L, ROWS) as sub:
        arr, _ = sub.array_for("crop1/ecs", G)
        for read in (sub.read, sub.verify):
            with pytest.raises(SubmissionError, match=r"^member 'crop1/ecs/1/0/1': NaN or infinite values"):
                read(arr)


def test_absent_chunks_filled_with_nan_are_refused_too(tmp_path):
    members = _members(_submission(tmp_path))
    meta = json.loads(members["crop1/ecs/.zarray"])
    members["crop1/ecs/.zarray"] = json.dumps({**meta, "fill_value": "NaN"}).encode()
    del members["crop1/ecs/1/1/1"]
    with open_submission(_zip(tmp_path / "s.zip", members), L, ROWS) as sub:
        arr, _ = sub.array_for("crop1/ecs", G)
        with pytest.raises(SubmissionError, match=r"chunk 'crop1/ecs/1/1/1' \(absent: the array's fill_value\): NaN"):
            sub.verify(arr)


def test_integer_and_finite_arrays_read_unchanged_zip_or_folder(tmp_path):
    data = np.arange(G.num_voxels, dtype=np.uint16).reshape(G.shape)
    root = _submission(tmp_path, data, np.uint16)
    for path in (root, _zip(tmp_path / "s.zip", _members(root))):
        with open_submission(path, L, ROWS) as sub:
            arr, _ = sub.array_for(sub.classes("crop1")["ecs"], G)
            assert np.array_equal(sub.read(arr), data)
            sub.verify(arr)


def test_names_spelled_oddly_and_folder_entries(tmp_path):
    members = {f"./{k}": v for k, v in _members(_submission(tmp_path)).items()}
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("crop2/", b"")  # a crop folder with nothing in it is still a crop folder
    with open_submission(tmp_path / "s.zip", L, ROWS) as sub:
        assert sub.entries("") == ["crop1", "crop2"] and sub.match_crops(["crop2"]) == {"crop2": "crop2"}
        arr, _ = sub.array_for("crop1/ecs", G)
        assert float(sub.read(arr).sum()) == G.num_voxels


def test_groups_levels_and_guards(tmp_path):
    root = tmp_path / "sub.zarr"
    grp = volumes.open_group(root, "w")
    fine = Geometry((2.0,) * 3, (0.0,) * 3, (32, 32, 32))
    volumes.write_multiscale(
        grp.require_group("crop1"), "ecs", [(np.ones(fine.shape, np.uint8), fine), (np.ones(G.shape, np.uint8), G)]
    )
    flat = volumes.create_array(grp.require_group("crop1"), "mito", shape=(4, 4), dtype=np.uint8)
    flat[...] = 1
    with open_submission(_zip(tmp_path / "s.zip", _members(root)), L) as sub:
        arr, grid = sub.array_for("crop1/ecs", G)
        assert arr.path == "crop1/ecs/s1" and grid.voxel_size == (4.0, 4.0, 4.0)
        with pytest.raises(
            GeometryError, match=r"array 'crop1/mito': expected a 3D array \(z, y, x\), got shape \(4, 4\)"
        ):
            sub.array_for("crop1/mito", G)
        with pytest.raises(GeometryError, match="MAX_VOLUME_SIZE_RATIO"):
            sub.array_for("crop1/ecs", Geometry((2.0,) * 3, (0.0,) * 3, (1, 1, 1)))


def test_attach_reuses_the_open_submission_and_reopens_elsewhere(tmp_path):
    z = _zip(tmp_path / "s.zip", _members(_submission(tmp_path)))
    with open_submission(z, L, ROWS) as sub:
        assert reader.attach(sub.ref("crop1/ecs")) is sub
    fresh = reader.attach(sub.ref("crop1/ecs"))  # e.g. a spawned worker: opened (and judged) anew
    try:
        assert fresh is not sub and float(fresh.read(fresh.array_for("crop1/ecs", G)[0]).sum()) == G.num_voxels
    finally:
        fresh.close()


@pytest.mark.parametrize("codec_id", ["blosc", "lz4", "zstd", "zlib", "gzip", "bz2", "lzma"])
def test_a_chunk_that_would_inflate_beyond_its_chunk_is_refused_before_decoding(tmp_path, codec_id):
    """A small member (within the chunk limit) whose codec would make 1 MB of a 512-byte chunk: a codec bomb."""
    import numcodecs

    codec = numcodecs.get_codec({"id": codec_id})
    bomb = bytes(codec.encode(np.zeros(1_000_000, np.uint8)))
    members = {
        ".zgroup": b'{"zarr_format": 2}',
        "crop1/.zgroup": b'{"zarr_format": 2}',
        "crop1/ecs/.zarray": _meta(dtype="|u1", compressor=codec.get_config()),
        "crop1/ecs/.zattrs": b'{"voxel_size": [4, 4, 4]}',
        "crop1/ecs/0/0/0": bomb,
    }
    assert len(bomb) <= ArrayMeta.parse(members["crop1/ecs/.zarray"], "crop1/ecs").chunk_limit  # passes judging
    with open_submission(_zip(tmp_path / "s.zip", members), L, ROWS) as sub:
        arr, _ = sub.array_for("crop1/ecs", G)
        for read in (sub.read, sub.verify):
            with pytest.raises(SubmissionError, match=rf"^member 'crop1/ecs/0/0/0': its {codec_id} data inflate to"):
                read(arr)
        members["crop1/ecs/0/0/0"] = bytes(codec.encode(np.ones(512, np.uint8)))  # a real chunk reads fine
    with open_submission(_zip(tmp_path / "s.zip", members), L, ROWS) as sub:
        assert int(sub.read(sub.array_for("crop1/ecs", G)[0]).sum()) == 512
