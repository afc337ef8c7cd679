from pathlib import Path

import pytest
from csc_common.crops import read_crop_manifest
from csc_common.errors import InputError
from csc_common.geometry import Box, Geometry
from csc_common.volumes import Level
from csc_fetcher.plan import (
    ArrayMeta,
    chunk_key,
    chunk_ranges,
    default_workers,
    effective_batch,
    parse_fetch_manifest,
    row_prefix,
    select,
    select_levels,
)

META = ArrayMeta((100, 100, 100), (10, 10, 10), "/", 0)
GEOM = Geometry((8, 8, 8), (3, 3, 3), (100, 100, 100))


def test_chunk_ranges_box_padding_and_clipping() -> None:
    box = Geometry((8, 8, 8), (3 + 8 * 25, 3 + 8 * 25, 3 + 8 * 25), (10, 10, 10)).box  # voxels 25..35
    assert chunk_ranges(GEOM, META, box) == (range(2, 4), range(2, 4), range(2, 4))
    assert chunk_ranges(GEOM, META, box, padding=5) == (range(2, 4),) * 3  # voxels 20..40
    edge = Geometry((8, 8, 8), (3, 3, 3 + 8 * 95), (5, 5, 5)).box  # voxels 0..5 / 95..100
    assert chunk_ranges(GEOM, META, edge, padding=20) == (range(0, 3), range(0, 3), range(7, 10))
    outside = Box((1e6, 1e6, 1e6), (2e6, 2e6, 2e6))
    assert chunk_ranges(GEOM, META, outside) is None


def test_chunk_ranges_off_grid_box_rounds_outward() -> None:
    box = Box((3 + 8 * 9.5, 3, 3), (3 + 8 * 10.2, 3 + 8, 3 + 8))
    assert chunk_ranges(GEOM, META, box)[0] == range(0, 2)


def test_chunk_keys_and_row_prefixes() -> None:
    assert chunk_key("a/s0", (1, 2, 3), META) == "a/s0/1/2/3"
    dot = ArrayMeta((1, 100, 100, 100), (1, 10, 10, 10), ".", 0)
    assert chunk_key("a/s0", (1, 2, 3), dot) == "a/s0/0.1.2.3"
    assert row_prefix("a/s0", (1, 2), META) == "a/s0/1/2/"
    assert row_prefix("a/s0", (1, 2), dot) == "a/s0/0.1.2."


def _levels() -> list[Level]:
    return [Level(f"s{i}", Geometry((2.0 * 2**i,) * 3, (0, 0, 0), (max(1, 64 >> i),) * 3)) for i in range(8)]


def test_select_levels_rule_of_the_original() -> None:
    lv = _levels()  # 2, 4, 8, ... 256 nm; s6/s7 have shape 1 -> never
    assert [x.path for x in select_levels(lv, (8, 8, 8))] == ["s2", "s3", "s4", "s5"]
    assert [x.path for x in select_levels(lv, (8, 8, 8), all_resolutions=True)] == [f"s{i}" for i in range(6)]
    assert [x.path for x in select_levels(lv, (8, 8, 8), resolutions=[8])] == ["s2"]
    assert [x.path for x in select_levels(lv, (2, 2, 2), resolutions=[9, 30])] == ["s2", "s4"]


def test_selection_rules(tiny_bucket: Path) -> None:
    train = parse_fetch_manifest((tiny_bucket / "manifest.csv").read_text(), "m")
    test = read_crop_manifest(tiny_bucket / "test_crop_manifest.csv")
    s = select(train, test, crops="all")
    assert len(s.train) == 8 and set(s.test) == {901, 902}
    s = select(train, test, crops="test")
    assert not s.train and set(s.test) == {901, 902}
    s = select(train, test, crops="101, crop902")
    assert [t.crop_id for t in s.train] == [101] and set(s.test) == {902}
    s = select(train, test, crops="all", datasets=["syn_aniso-1"], classes=["nuc"])
    assert {t.dataset for t in s.train} == {"syn_aniso-1"} and set(s.test) == {902}
    assert [r.class_label for r in s.test[902]] == ["nuc"]
    with pytest.raises(InputError, match="unknown crop id.*999"):
        select(train, test, crops="101,999")
    with pytest.raises(InputError, match="unknown class.*mitoo"):
        select(train, test, classes=["mitoo"])
    with pytest.raises(InputError, match="unknown dataset"):
        select(train, test, datasets=["jrc_nope"])
    with pytest.raises(InputError, match="--crops"):
        select(train, test, crops="abc")


def test_real_manifests_parse_and_select(shared_cellmap: Path) -> None:
    train = parse_fetch_manifest((shared_cellmap / "manifest.csv").read_text(), "manifest.csv")
    test = read_crop_manifest(shared_cellmap / "test_crop_manifest.csv")
    assert len(train) == 289 and len({t.dataset for t in train}) == 22
    s = select(train, test, crops="test")
    assert len(s.test) == 16 and not s.train
    assert {rows[0].dataset for rows in s.test.values()} == {
        "jrc_ctl-id8-1",
        "jrc_fly-vnc-1",
        "jrc_mus-kidney",
        "jrc_mus-liver-zon-2",
        "jrc_mus-nacc-1",
        "jrc_zf-cardiac-1",
    }
    s = select(train, test, crops="234,557", classes=["mito"])
    assert [t.crop_id for t in s.train] == [234] and [r.class_label for r in s.test[557]] == ["mito"]


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "header"),
        ("crop_number,collection\n1,a", "header"),
        ("crop_number,collection,alignment,crop_url,em_url\nx,a,recon-1,s3://b/k,s3://b/e", "line 2.*integer"),
        ("crop_number,collection,alignment,crop_url,em_url\n1,a,recon-1,s3://b/k", "line 2.*5 comma"),
        ("crop_number,collection,alignment,crop_url,em_url\n1,a,recon-1,s3://b/crop1,s3://b/e", "line 2: crop_url"),
        ("crop_number,collection,alignment,crop_url,em_url\n1,a,recon-1,s3://b/a/a.zarr/,s3://b/e", "line 2: crop_url"),
        (
            "crop_number,collection,alignment,crop_url,em_url\n1,a,recon-1,s3://b/b/b.zarr/c1,s3://b/e",
            "line 2: crop_url",
        ),
    ],
)
def test_malformed_fetch_manifest(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_fetch_manifest(text, "m.csv")


def test_workers_and_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CSC_FETCH_DATA_NUM_WORKERS", raising=False)
    assert default_workers(None) == 32
    monkeypatch.setenv("CSC_FETCH_DATA_NUM_WORKERS", "7")
    assert default_workers(None) == 7 and default_workers(3) == 3
    monkeypatch.setenv("CSC_FETCH_DATA_NUM_WORKERS", "x")
    with pytest.raises(InputError):
        default_workers(None)
    assert effective_batch(256, 100, 32) == 1
    assert effective_batch(256, 100_000, 32) == 256
    assert effective_batch(4, 100_000, 32) == 4
