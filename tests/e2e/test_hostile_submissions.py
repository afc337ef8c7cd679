"""Hostile submissions (issue 14): the evaluator and ``csc-pack --check`` refuse the same ones with the same message.

Every zip is crafted here, in ``tmp_path``: zip bombs (one 2 GiB member that
deflates to 2.1 MB; 2048 members of 1 MiB zeros), broken chunks, absurd
``.zarray`` chunks, a central directory that lies, a file/folder clash, a zip
holding only a zip, a wrong root, NaN/Inf in a float prediction, oversized
metadata. For each one: the evaluator exits 2 with one line, ``--check``
exits 2 with an ERROR line holding the very same message, and the message
names the zip member (never a temporary path). For the bombs, the bytes
written and inflated while refusing are watched: nothing lands anywhere.
"""

import io
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import psutil
import pytest
from csc_common import volumes
from csc_common.crops import CropRow, write_crop_manifest
from csc_common.geometry import Geometry
from csc_evaluator.cli import main as evaluate
from csc_packer.cli import main as pack

G = Geometry((4.0, 4.0, 4.0), (0.0, 0.0, 0.0), (16, 16, 16))
MiB = 1 << 20
ZEROS = bytes(MiB)


def _write_zarr(root: Path, arrays: dict[str, np.ndarray], *, truth: bool) -> None:
    grp = volumes.open_group(root, "w")
    for path, data in arrays.items():
        crop, label = path.split("/")
        attrs = {"voxel_size": list(G.voxel_size), "translation": list(G.translation)}
        if not truth:
            attrs["shape"] = list(G.shape)
        arr = volumes.create_array(
            grp.require_group(crop), label, shape=data.shape, dtype=data.dtype, chunks=(8, 8, 8), attrs=attrs
        )
        arr[...] = data


def _members(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def case(tmp_path):
    """Truth, test manifest and a good submission (ecs as float32, mito as uint8 ids; 8^3 chunks)."""
    ecs = np.zeros(G.shape, np.uint8)
    ecs[:8] = 1
    mito = np.zeros(G.shape, np.uint8)
    mito[2:6, 2:6, 2:6] = 1
    mito[10:14, 10:14, 10:14] = 2
    _write_zarr(tmp_path / "truth.zarr", {"crop1/ecs": ecs, "crop1/mito": mito}, truth=True)
    (tmp_path / "test.csv").write_text(write_crop_manifest([CropRow(1, "ds", "ecs", G), CropRow(1, "ds", "mito", G)]))
    _write_zarr(tmp_path / "sub.zarr", {"crop1/ecs": ecs.astype(np.float32), "crop1/mito": mito}, truth=False)
    return tmp_path, _members(tmp_path / "sub.zarr")


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


# A zip written byte by byte: members whose compressed bytes, CRC and declared size we choose.
Entry = tuple[str, bytes, int, int, int]  # name, stored bytes, method (0 stored, 8 deflate), crc32, declared size


def _stored(members: dict[str, bytes]) -> list[Entry]:
    return [(n, d, 0, zlib.crc32(d), len(d)) for n, d in members.items()]


def _raw_zip(path: Path, entries: list[Entry]) -> Path:
    out, central = io.BytesIO(), bytearray()
    for name, data, method, crc, size in entries:
        n = name.encode()
        offset = out.tell()
        out.write(struct.pack("<I5H3I2H", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(n), 0) + n)
        out.write(data)
        central += struct.pack(
            "<I6H3I5H2I",
            0x02014B50,
            20,
            20,
            0,
            method,
            0,
            0x21,
            crc,
            len(data),
            size,
            len(n),
            0,
            0,
            0,
            0,
            0o644 << 16,
            offset,
        )
        central += n
    start = out.tell()
    out.write(bytes(central))
    out.write(struct.pack("<I4H2IH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), start, 0))
    path.write_bytes(out.getvalue())
    return path


def _zeros_deflated(mib: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``mib`` MiB of zeros and its CRC, without compressing more than 1 MiB.

    After a full flush deflate starts afresh, so every further MiB of zeros compresses to the same bytes.
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(ZEROS) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(ZEROS, crc)
    return block * mib + c.flush(), crc


def _one_mib_member() -> tuple[bytes, int]:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(ZEROS) + c.flush(), zlib.crc32(ZEROS)


def _bomb_chunk(path, m):
    data, crc = _zeros_deflated(2048)
    entries = [e for e in _stored(m) if e[0] != "crop1/ecs/0/0/0"] + [("crop1/ecs/0/0/0", data, 8, crc, 2048 * MiB)]
    return _raw_zip(path, entries)


def _bomb_stray(path, m):
    data, crc = _zeros_deflated(2048)
    return _raw_zip(path, [*_stored(m), ("bomb.bin", data, 8, crc, 2048 * MiB)])


def _many_strays(path, m):
    data, crc = _one_mib_member()
    return _raw_zip(path, [*_stored(m), *((f"pad/{i:04d}", data, 8, crc, MiB) for i in range(2048))])


def _many_chunks(path, m):
    """2048 chunks of 1 MiB, each a legal chunk of an extra array: only the total is too much for 2 rows."""
    meta = (
        b'{"zarr_format": 2, "shape": [131072, 128, 128], "chunks": [64, 128, 128], "dtype": "|u1", '
        b'"compressor": null, "fill_value": 0, "order": "C", "filters": null, "dimension_separator": "/"}'
    )
    data, crc = _one_mib_member()
    extra = [(f"crop1/extra/{i}/0/0", data, 8, crc, MiB) for i in range(2048)]
    return _raw_zip(path, [*_stored({**m, "crop1/extra/.zarray": meta}), *extra])


def _lying_crc(path, m):
    return _raw_zip(path, [(n, d, 0, c ^ (n == "crop1/ecs/0/1/0"), s) for n, d, _, c, s in _stored(m)])


def _lying_size(path, m):
    return _raw_zip(path, [(n, d, 0, c, s - 7 * (n == "crop1/ecs/0/1/0")) for n, d, _, c, s in _stored(m)])


def _edit(**changes):
    def build(path, m):
        return _zip(path, {**m, **changes})

    return build


def _float_with(value):
    def build(path, m):
        data = np.zeros(G.shape, np.float32)
        data[:8] = 1
        data[9, 1, 2] = value  # in chunk (1, 0, 0)
        root = path.parent / "float.zarr"
        _write_zarr(root, {"crop1/ecs": data}, truth=False)
        return _zip(path, {**m, **{k: v for k, v in _members(root).items() if k.startswith("crop1/ecs/")}})

    return build


def _absurd(path, m):
    meta = json.loads(m["crop1/ecs/.zarray"])
    return _zip(path, {**m, "crop1/ecs/.zarray": json.dumps({**meta, "chunks": [100000] * 3}).encode()})


def _nested_zip(path, m):
    inner = _zip(path.parent / "inner.zip", m).read_bytes()
    return _zip(path, {"inner.zip": inner})


CASES = {
    "2GiB-member-as-chunk": (
        _bomb_chunk,
        "member 'crop1/ecs/0/0/0' is 2147483648 bytes (2.00 GiB) uncompressed, more than a chunk [8, 8, 8] of "
        "float32 of array 'crop1/ecs' (plus codec overhead) may hold",
    ),
    "2GiB-member-as-stray": (
        _bomb_stray,
        "member 'bomb.bin' is 2147483648 bytes (2.00 GiB) uncompressed, more than a file that is neither zarr "
        "metadata nor an array chunk may hold (1048576 bytes)",
    ),
    "2048x1MiB-strays": (_many_strays, "metadata and stray files (neither zarr metadata nor array chunks) hold"),
    "2048x1MiB-chunks": (_many_chunks, "is more than the 2 test rows can need"),
    "truncated-chunk": (
        lambda p, m: _zip(p, {**m, "crop1/mito/1/1/1": m["crop1/mito/1/1/1"][:20]}),
        "member 'crop1/mito/1/1/1': cannot read array data",
    ),
    "garbage-chunk": (
        _edit(**{"crop1/ecs/1/0/1": b"garbage!" * 8}),
        "member 'crop1/ecs/1/0/1': cannot read array data",
    ),
    "absurd-chunks": (
        _absurd,
        "member 'crop1/ecs/.zarray': chunks [100000, 100000, 100000] of float32 hold",
    ),
    "central-directory-bad-crc": (_lying_crc, "member 'crop1/ecs/0/1/0' cannot be read (Bad CRC-32"),
    "central-directory-short-size": (_lying_size, "member 'crop1/ecs/0/1/0' cannot be read (Bad CRC-32"),
    "file-folder-clash": (
        _edit(**{"crop1/mito/0": b"x"}),
        "member 'crop1/mito/0' is a file, but other members lie inside a folder of that name",
    ),
    "only-a-nested-zip": (_nested_zip, "no crop of the ground truth found in the submission (submitted: nothing"),
    "wrong-root": (
        lambda p, m: _zip(p, {f"submission/{k}": v for k, v in m.items()}),
        "no crop of the ground truth found in the submission (submitted: submission;",
    ),
    "nan-in-float": (_float_with(np.nan), "member 'crop1/ecs/1/0/0': NaN or infinite values in a float prediction"),
    "inf-in-float": (_float_with(-np.inf), "member 'crop1/ecs/1/0/0': NaN or infinite values in a float prediction"),
    "huge-metadata": (
        _edit(**{"crop1/ecs/.zattrs": b'{"pad": "' + b"x" * (2 * MiB) + b'"}'}),
        "member 'crop1/ecs/.zattrs' is 2097163 bytes uncompressed, more than zarr metadata may hold",
    ),
}
BOMBS = [name for name in CASES if name.startswith("2")]


def _core(line: str, zip_path: Path) -> str:
    """The evaluator's message without its frame (``csc-evaluate: error:``, then the zip or ``crop N class C:``)."""
    body = line.removeprefix("csc-evaluate: error: ").removeprefix(f"{zip_path}: ")
    return re.sub(r"^crop \d+ class \w+: ", "", body)


def _run_both(tmp_path, zip_path, capsys):
    rc_eval = evaluate(
        [str(zip_path), "--truth", str(tmp_path / "truth.zarr"), "--test-manifest", str(tmp_path / "test.csv")]
        + ["--output", str(tmp_path / "out" / "result.json"), "-q"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    rc_check = pack(["--check", str(zip_path), "--test-manifest", str(tmp_path / "test.csv")])
    out = capsys.readouterr().out.splitlines()
    return rc_eval, err, rc_check, out


def test_the_base_submission_is_good(case, capsys):
    tmp_path, members = case
    z = _zip(tmp_path / "good.zip", members)
    rc_eval, err, rc_check, out = _run_both(tmp_path, z, capsys)
    assert rc_eval == 0 and rc_check == 0, (err, out)
    assert out[-1].endswith("2 rows: 2 ok, 0 missing, 0 errors, 0 warnings")


@pytest.mark.parametrize("name", sorted(CASES))
def test_both_tools_refuse_with_the_same_message(case, capsys, monkeypatch, name):
    tmp_path, members = case
    build, expected = CASES[name]
    z = build(tmp_path / f"{name}.zip", members)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    rc_eval, err, rc_check, out = _run_both(tmp_path, z, capsys)
    assert rc_eval == 2 and len(err) == 1, err
    core = _core(err[0], z)
    assert expected in core, err
    assert str(tmp_path) not in core and "/dev/shm" not in core  # the member, never a temp path
    assert rc_check == 2, out
    assert any(line.startswith("ERROR") and core in line for line in out), (core, out)
    assert not (tmp_path / "out").exists() and not list(temp.iterdir())


@pytest.mark.parametrize("name", BOMBS)
def test_refusing_a_bomb_writes_and_inflates_nothing(case, capsys, monkeypatch, name):
    tmp_path, members = case
    build, _ = CASES[name]
    z = build(tmp_path / f"{name}.zip", members)
    declared = sum(i.file_size for i in zipfile.ZipFile(z).infolist())
    assert declared >= 2 * 1024**3 and z.stat().st_size < 2.5e6  # a bomb: 2 GiB inflated from a 2.1 MB zip
    inflated = [0]
    read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        data = read(self, n)
        inflated[0] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    shm = Path("/dev/shm")
    before = set(shm.iterdir()) if shm.is_dir() else set()
    io0 = psutil.Process().io_counters()
    rc_eval, err, rc_check, out = _run_both(tmp_path, z, capsys)
    written = psutil.Process().io_counters().write_chars - io0.write_chars
    assert rc_eval == 2 and rc_check == 2, (err, out)
    print(f"bomb {name}: declared={declared} zip={z.stat().st_size} inflated={inflated[0]} written={written}")
    assert inflated[0] < 64 * 1024 and written < 1 * MiB  # metadata only; no member data lands anywhere
    new = (set(shm.iterdir()) if shm.is_dir() else set()) - before
    assert not [p for p in new if p.name.startswith("csc-")]
