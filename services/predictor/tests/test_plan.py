import json
from pathlib import Path

import pytest
from csc_common import views
from csc_common.errors import InputError
from csc_common.geometry import Box, Geometry
from csc_common.views import DatasetView
from csc_predictor.config import Config, parse_roi, parse_shard
from csc_predictor.engines import ModelSpec
from csc_predictor.io import EmSource
from csc_predictor.plan import (
    Target,
    TargetBlock,
    build_plan,
    class_kinds,
    shard_blocks,
    target_blocks,
)


def _target(shape: tuple[int, int, int], key: str = "crop1", chunks: tuple[int, int, int] = (8, 8, 8)) -> Target:
    g = Geometry((8.0, 8.0, 8.0), (3.0, 0.0, 0.0), shape)
    return Target(key, 1, "ds", ((0, "mito"),), g, EmSource("ds", Path("."), "s0", g), chunks)


def _blocks(targets: list[Target], block_shape: tuple[int, int, int]) -> list[TargetBlock]:
    return [b for t in targets for b in target_blocks(t, block_shape, (0, 0, 0))]


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
    t = _target((70, 33, 10), chunks=(16, 16, 10))
    blocks = target_blocks(t, (30, 16, 16), (2, 3, 4))
    assert blocks[0].block.write_shape == (32, 16, 10)  # (30, 16, 16) rounded up to chunks (32, 16, 20), clipped
    seen = set()
    for b in blocks:
        for s, r, c, h, n in zip(b.write, b.block.read, (16, 16, 10), (2, 3, 4), t.geometry.shape, strict=True):
            assert s.start % c == 0
            assert (r.start, r.stop) == (s.start - h, s.stop + h)  # the context, not clipped: the reader pads
            assert 0 <= s.start < s.stop <= n
        seen.update(
            (z, y, x)
            for z in range(b.write[0].start, b.write[0].stop)
            for y in range(b.write[1].start, b.write[1].stop)
            for x in range(b.write[2].start, b.write[2].stop)
        )
    assert len(seen) == 70 * 33 * 10
    assert sum(b.write[0].stop - b.write[0].start for b in blocks if b.block.index[1:] == (0, 0)) == 70
    # ids and order name the done markers: C order of the block index, '<key>-z_y_x'
    assert [b.id for b in blocks[:4]] == ["crop1-0_0_0", "crop1-0_1_0", "crop1-0_2_0", "crop1-1_0_0"]
    assert len(blocks) == 3 * 3 * 1


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover_all_blocks(n: int) -> None:
    blocks = _blocks([_target((40, 40, 40)), _target((8, 8, 8), "crop2")], (16, 16, 16))
    parts = [shard_blocks(blocks, (i, n)) for i in range(n)]
    ids = [b.id for p in parts for b in p]
    assert sorted(ids) == sorted(b.id for b in blocks) and len(ids) == len(set(ids))
    assert [b.id for b in shard_blocks(blocks, (0, n))] == [b.id for b in parts[0]]  # deterministic


def test_parse_roi() -> None:
    assert parse_roi("0,0,0:80,96,112") == Box((0.0, 0.0, 0.0), (80.0, 96.0, 112.0))
    assert parse_roi("-8,0,0:80,96,112").start == (-8.0, 0.0, 0.0)
    for bad in ("0,0,0:0,1,1", "0,0,0", "a,b,c:1,2,3", "0,0:1,1"):
        with pytest.raises(InputError, match="--roi"):
            parse_roi(bad)


def _cfg(**kw: object) -> Config:
    return Config(model="m", dataset="d", output="o.json", **kw)  # type: ignore[arg-type]


def test_config_cross_field_rules() -> None:
    with pytest.raises(InputError, match="^--roi and --whole-volume exclude each other$"):
        _cfg(roi="0,0,0:8,8,8", whole_volume=True)
    with pytest.raises(InputError, match="^--output o.zarr: expected a .json manifest path"):
        Config(model="m", dataset="d", output="o.zarr")


def test_plan_of_the_fixture(fixture_root) -> None:
    spec = ModelSpec.load(fixture_root / "models/tiny/onnx-model.json")
    ds = views.load(fixture_root / "dataset.json", DatasetView)
    plan = build_plan(_cfg(), spec, ds)
    assert [t.key for t in plan.targets] == ["crop101", "crop102", "crop104"]  # 103 lists no model class
    t101 = plan.targets[0]
    assert [c for _, c in t101.classes] == ["mito", "er"] and t101.em.level_path == "s1"
    assert t101.geometry == Geometry((8.0, 8.0, 8.0), (150.0, 100.0, 93.0), (10, 12, 14))
    assert [c for _, c in plan.targets[2].classes] == ["er"]
    assert plan.kinds == {"mito": "instance", "er": "semantic"}
    assert plan.blocks[0].id == "crop101-0_0_0" and len(plan.blocks) == 3  # one block of 128 per small crop
    assert build_plan(_cfg(), spec, ds).hash == plan.hash
    assert build_plan(_cfg(overlap=0.5), spec, ds).hash != plan.hash
    whole = build_plan(_cfg(whole_volume=True), spec, ds)
    assert [t.key for t in whole.targets] == ["fixds"] and whole.targets[0].geometry.shape == (32, 40, 40)
    with pytest.raises(InputError, match="cannot be taken by the model"):
        build_plan(_cfg(tile="15,16,16"), spec, ds)
    with pytest.raises(InputError, match="is in the test manifest"):
        build_plan(_cfg(crops="999"), spec, ds)
    assert [t.key for t in build_plan(_cfg(crops="7,104"), spec, ds).targets] == ["crop104"]


def test_class_kinds_come_from_the_dataset_then_the_model(fixture_copy: Path) -> None:
    ds_json, onnx_json = fixture_copy / "dataset.json", fixture_copy / "models/tiny/onnx-model.json"
    ds_data, onnx_data = json.loads(ds_json.read_text()), json.loads(onnx_json.read_text())
    for crop in ds_data["crops"]:  # the dataset records mito as semantic (an override at fetch) and lists no er
        crop["classes"] = [dict(c, kind="semantic") for c in crop["classes"] if c["name"] != "er"]
    onnx_data["class_kinds"] = {"mito": "instance", "er": "instance"}
    ds_json.write_text(json.dumps(ds_data))
    onnx_json.write_text(json.dumps(onnx_data))
    kinds = class_kinds(views.load(ds_json, DatasetView), ModelSpec.load(onnx_json))
    assert kinds == {"mito": "semantic", "er": "instance"}
