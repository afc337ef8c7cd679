from pathlib import Path

import pytest
from csc_common.errors import InputError
from csc_common.geometry import Box, Geometry
from csc_common.manifest import read_manifest
from csc_predictor.config import Config
from csc_predictor.engines import ModelSpec
from csc_predictor.io import EmSource
from csc_predictor.plan import (
    Target,
    build_plan,
    make_blocks,
    output_grid,
    parse_roi,
    parse_shape,
    parse_shard,
    shard_blocks,
)


def _target(shape: tuple[int, int, int], key: str = "crop1") -> Target:
    g = Geometry((8.0, 8.0, 8.0), (3.0, 0.0, 0.0), shape)
    return Target(key, 1, "ds", ((0, "mito"),), g, EmSource("ds", Path("."), "s0", g))


def test_parse_shard_flag_and_environment() -> None:
    assert parse_shard("2/5", env={}) == (2, 5)
    assert parse_shard("", env={}) is None
    assert parse_shard("", env={"JOB_COMPLETION_INDEX": "3", "CSC_PREDICT_SHARDS": "4"}) == (3, 4)
    assert parse_shard("1/2", env={"JOB_COMPLETION_INDEX": "3", "CSC_PREDICT_SHARDS": "4"}) == (1, 2)
    for bad in ("2/2", "x", "1/0", "-1/3"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad, env={})
    with pytest.raises(InputError, match="CSC_PREDICT_SHARDS"):
        parse_shard("", env={"JOB_COMPLETION_INDEX": "0"})


def test_blocks_are_chunk_aligned_and_cover_the_target_once() -> None:
    t = _target((70, 33, 10))
    blocks, bs = make_blocks([t], block_shape=(30, 16, 16), chunks=(16, 16, 10))
    assert bs == (32, 16, 20)
    seen = set()
    for b in blocks:
        for s, c in zip(b.slices, (16, 16, 10), strict=True):
            assert s.start % c == 0
        seen.update(
            (z, y, x)
            for z in range(b.slices[0].start, b.slices[0].stop)
            for y in range(b.slices[1].start, b.slices[1].stop)
            for x in range(b.slices[2].start, b.slices[2].stop)
        )
    assert len(seen) == 70 * 33 * 10
    assert sum(b.slices[0].stop - b.slices[0].start for b in blocks if b.index[1:] == (0, 0)) == 70


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover_all_blocks(n: int) -> None:
    blocks, _ = make_blocks(
        [_target((40, 40, 40)), _target((8, 8, 8), "crop2")], block_shape=(16, 16, 16), chunks=(8, 8, 8)
    )
    parts = [shard_blocks(blocks, (i, n)) for i in range(n)]
    ids = [b.id for p in parts for b in p]
    assert sorted(ids) == sorted(b.id for b in blocks) and len(ids) == len(set(ids))
    assert [b.id for b in shard_blocks(blocks, (0, n))] == [b.id for b in parts[0]]  # deterministic


def test_output_grid_anchors_at_the_box_and_covers_it() -> None:
    g = output_grid(Box((150.0, 100.0, 93.0), (230.0, 196.0, 205.0)), (8.0, 8.0, 8.0))
    assert g.translation == (150.0, 100.0, 93.0) and g.shape == (10, 12, 14)


def test_parse_helpers() -> None:
    assert parse_shape("64", "block") == (64, 64, 64)
    assert parse_shape("8,16,32", "block") == (8, 16, 32)
    assert parse_roi("0,0,0:80,96,112") == Box((0.0, 0.0, 0.0), (80.0, 96.0, 112.0))
    with pytest.raises(InputError, match="--roi"):
        parse_roi("0,0,0:0,1,1")
    with pytest.raises(InputError, match="--tile"):
        parse_shape("a,b", "tile")


def _cfg(**kw: object) -> Config:
    return Config(model="m", dataset="d", output="o.json", **kw)  # type: ignore[arg-type]


def test_plan_of_the_fixture(fixture_root) -> None:
    spec = ModelSpec.from_manifest(read_manifest(fixture_root / "models/tiny/onnx-model.json", "onnx-model"))
    ds = read_manifest(fixture_root / "dataset.json", "dataset")
    plan = build_plan(_cfg(), spec, ds)
    assert [t.key for t in plan.targets] == ["crop101", "crop102", "crop104"]  # 103 lists no model class
    t101 = plan.targets[0]
    assert [c for _, c in t101.classes] == ["mito", "er"] and t101.em.level_path == "s1"
    assert t101.geometry == Geometry((8.0, 8.0, 8.0), (150.0, 100.0, 93.0), (10, 12, 14))
    assert [c for _, c in plan.targets[2].classes] == ["er"]
    assert build_plan(_cfg(), spec, ds).hash == plan.hash
    assert build_plan(_cfg(overlap=0.5), spec, ds).hash != plan.hash
    whole = build_plan(_cfg(whole_volume=True), spec, ds)
    assert [t.key for t in whole.targets] == ["fixds"] and whole.targets[0].geometry.shape == (32, 40, 40)
    with pytest.raises(InputError, match="cannot be taken by the model"):
        build_plan(_cfg(tile="15,16,16"), spec, ds)
    with pytest.raises(InputError, match="is in the test manifest"):
        build_plan(_cfg(crops="999"), spec, ds)
    assert [t.key for t in build_plan(_cfg(crops="7,104"), spec, ds).targets] == ["crop104"]
