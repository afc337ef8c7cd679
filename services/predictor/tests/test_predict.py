"""End to end through ``main``: outputs, sharding + finalize, resume, engines, regions, bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from conformance_kit import ome_ngff_problems
from csc_common.geometry import Geometry
from csc_common.manifest import read_manifest
from csc_common.volumes import Level, read_levels
from csc_predictor import predict as predict_mod
from csc_predictor.cli import main


def predict_args(root: Path, out: str = "out/predictions.json", *extra: str) -> list[str]:
    return [
        "--model",
        str(root / "models/tiny/onnx-model.json"),
        "--dataset",
        str(root / "dataset.json"),
        "--output",
        str(root / out),
        "-q",
        *extra,
    ]


CROPS = {101: ["mito", "er"], 102: ["mito", "er"], 104: ["er"]}


def _arrays(root: Path, out: str) -> dict[str, np.ndarray]:
    m = read_manifest(root / out, "predictions")
    z = m.resolve(m.data["zarr"])
    return {
        c["path"]: zarr.open_array(str(z / c["path"]), mode="r")[:] for crop in m.data["crops"] for c in crop["classes"]
    }


@pytest.fixture(scope="module")
def default_run(fixture_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("default-run")
    for name in ("dataset.json", "test_crop_manifest.csv", "fixds", "models"):
        src = fixture_root / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    assert main(predict_args(root)) == 0
    return root


def test_default_run_writes_manifest_and_arrays(default_run: Path) -> None:
    m = read_manifest(default_run / "out/predictions.json", "predictions")
    assert m.data["encoding"] == {"dtype": "uint8", "scale": 1 / 255}
    assert m.data["provider"] == "CPUExecutionProvider" and m.data["threads"]["intra_op"] >= 1
    assert {c["id"]: [k["name"] for k in c["classes"]] for c in m.data["crops"]} == CROPS
    crop101 = next(c for c in m.data["crops"] if c["id"] == 101)
    geom = crop101["classes"][0]["geometry"]
    assert geom == {"voxel_size": [8.0, 8.0, 8.0], "translation": [150.0, 100.0, 93.0], "shape": [10, 12, 14]}
    assert crop101["classes"][0]["kind"] == "instance" and crop101["classes"][1]["kind"] == "semantic"
    assert crop101["classes"][0]["path"] == "crop101/mito/s0"
    arr = zarr.open_array(str(m.resolve(m.data["zarr"]) / "crop101/mito/s0"), mode="r")
    assert arr.shape == (10, 12, 14) and arr.dtype == np.uint8
    assert dict(arr.attrs) == {"voxel_size": [8.0, 8.0, 8.0], "translation": [150.0, 100.0, 93.0]}
    data = arr[:]
    assert data.std() > 5  # the fixture's net gives spread-out probabilities
    assert not (default_run / "out/predictions.blocks").exists()


def _assert_ome_ngff_groups(manifest_path: Path, section: str = "crops") -> None:
    """Every class path is ``<key>/<class>/s0``; its group is valid OME-NGFF whose levels are the manifest geometry."""
    m = read_manifest(manifest_path, "predictions")
    z = m.resolve(m.data["zarr"])
    n = 0
    for entry in m.data[section]:
        key = f"crop{entry['id']}" if section == "crops" else entry["dataset"]
        for c in entry["classes"]:
            assert c["path"] == f"{key}/{c['name']}/s0"
            group = z / key / c["name"]
            grp = zarr.open_group(str(group), mode="r", zarr_format=2)
            attrs = dict(grp.attrs)
            assert ome_ngff_problems(attrs, {k: a.shape for k, a in grp.arrays()}) == [], attrs
            assert attrs["multiscales"][0]["name"] == c["name"]
            assert read_levels(group) == [Level("s0", Geometry.from_json(c["geometry"]))]
            n += 1
    assert n


def test_outputs_are_ome_ngff_groups_with_the_manifest_geometry(default_run: Path) -> None:
    _assert_ome_ngff_groups(default_run / "out/predictions.json")


def test_torch_engine_matches_onnx(default_run: Path) -> None:
    assert main(predict_args(default_run, "torch/predictions.json", "--engine", "torch")) == 0
    m = read_manifest(default_run / "torch/predictions.json", "predictions")
    assert m.data["provider"] == "torch-cpu" and m.data["engine"] == "torch"
    a, b = _arrays(default_run, "out/predictions.json"), _arrays(default_run, "torch/predictions.json")
    assert a.keys() == b.keys()
    for k in a:
        assert np.abs(a[k].astype(int) - b[k].astype(int)).max() <= 1, k


def test_shards_then_finalize_equal_one_run_with_the_same_blocks(default_run: Path, capsys) -> None:
    small = ["--block", "8", "--chunk", "8"]
    assert main(predict_args(default_run, "one/predictions.json", *small)) == 0
    out = "sh/predictions.json"
    assert main(predict_args(default_run, out, "--shard", "0/3", *small)) == 0
    assert not (default_run / out).exists()
    assert main(["finalize", *predict_args(default_run, out, "--shard", "0/3", *small)]) == 1
    err = capsys.readouterr().err
    assert "block(s) not done" in err and "rerun shard(s) 1/3, 2/3" in err and len(err.strip().splitlines()) == 1
    assert main(predict_args(default_run, out, "--shard", "1/3", *small)) == 0
    assert main(predict_args(default_run, out, "--shard", "2/3", *small)) == 0
    assert main(["finalize", *predict_args(default_run, out, *small)]) == 0
    _assert_ome_ngff_groups(default_run / out)
    a, b = _arrays(default_run, "one/predictions.json"), _arrays(default_run, out)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    m = read_manifest(default_run / out, "predictions")
    assert m.data["counts"]["shards"] == 3 and m.data["counts"]["blocks"] > 3
    assert main(["finalize", *predict_args(default_run, out, *small)]) == 0  # a rerun of finalize is harmless
    assert read_manifest(default_run / out, "predictions").data == m.data


def test_markers_belong_to_one_plan(default_run: Path, capsys) -> None:
    out = "plans/predictions.json"
    assert main(predict_args(default_run, out, "--shard", "0/1", "--crops", "101")) == 0
    assert main(["finalize", *predict_args(default_run, out, "--crops", "101", "--overlap", "0.5")]) == 1
    assert "no block of this plan is done" in capsys.readouterr().err
    # A shard of another plan overwrites blocks, so the first plan's markers no longer vouch for them.
    assert main(predict_args(default_run, out, "--shard", "0/2", "--crops", "101", "--overlap", "0.5")) == 0
    assert main(["finalize", *predict_args(default_run, out, "--crops", "101")]) == 1
    assert "no block of this plan is done" in capsys.readouterr().err
    assert main(["finalize", *predict_args(default_run, out, "--crops", "101", "--overlap", "0.5")]) == 0


def test_a_retried_shard_skips_finished_blocks(default_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = ["--block", "8", "--chunk", "8"]
    out = "retry/predictions.json"
    calls: list[str] = []
    real = predict_mod.predict_block

    def dying(block, *a, **kw):
        calls.append(block.id)
        if len(calls) == 3:
            raise RuntimeError("worker killed")
        return real(block, *a, **kw)

    monkeypatch.setattr(predict_mod, "predict_block", dying)
    assert main(predict_args(default_run, out, "--shard", "0/1", *small)) == 1
    done_before = set(calls[:2])
    calls.clear()
    monkeypatch.setattr(
        predict_mod, "predict_block", lambda block, *a, **kw: (calls.append(block.id), real(block, *a, **kw))[1]
    )
    assert main(predict_args(default_run, out, "--shard", "0/1", *small)) == 0
    assert done_before and not done_before & set(calls)
    assert main(["finalize", *predict_args(default_run, out, *small)]) == 0


def test_overlap_blend_and_tta_options_run(default_run: Path) -> None:
    out = "tta/predictions.json"
    assert (
        main(
            predict_args(
                default_run,
                out,
                "--tta",
                "--blend",
                "linear",
                "--overlap",
                "0.5",
                "--batch-size",
                "2",
                "--crops",
                "101",
                "--dtype",
                "float16",
            )
        )
        == 0
    )
    m = read_manifest(default_run / out, "predictions")
    assert [c["id"] for c in m.data["crops"]] == [101] and m.data["tiling"]["tta"] is True
    arr = _arrays(default_run, out)["crop101/mito/s0"]
    assert arr.dtype == np.float16 and arr.min() >= 0 and arr.max() <= 1
    ref = _arrays(default_run, "out/predictions.json")["crop101/mito/s0"] / 255.0
    assert np.abs(arr - ref).mean() < 0.1  # same model, different averaging: close, not equal


def test_roi_and_whole_volume(default_run: Path) -> None:
    assert (
        main(
            predict_args(
                default_run, "roi/predictions.json", "--roi", "150,100,93:230,196,205", "--block", "8", "--chunk", "8"
            )
        )
        == 0
    )
    m = read_manifest(default_run / "roi/predictions.json", "predictions")
    assert m.data["crops"] == [] and m.data["volumes"][0]["dataset"] == "fixds"
    geom = m.data["volumes"][0]["classes"][0]["geometry"]
    assert geom == {"voxel_size": [8.0, 8.0, 8.0], "translation": [150.0, 100.0, 93.0], "shape": [10, 12, 14]}
    _assert_ome_ngff_groups(default_run / "roi/predictions.json", "volumes")
    roi = zarr.open_array(str(default_run / "roi/predictions.zarr/fixds/mito/s0"), mode="r")[:].astype(int)
    crop = _arrays(default_run, "out/predictions.json")["crop101/mito/s0"].astype(int)
    assert np.abs(roi - crop).mean() < 8  # same box and model; blocks of 8 tile it differently
    assert (
        main(predict_args(default_run, "whole/predictions.json", "--whole-volume", "--block", "16", "--chunk", "16"))
        == 0
    )
    w = read_manifest(default_run / "whole/predictions.json", "predictions")
    assert w.data["volumes"][0]["classes"][0]["geometry"]["shape"] == [32, 40, 40]


def _expect_bad_input(root: Path, capsys, *extra: str, match: str, out: str = "bad/predictions.json") -> None:
    assert main(predict_args(root, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("csc-predict: error:") and match in err, err
    assert not (root / out).exists() and not (root / out).with_suffix(".zarr").exists()
    assert not (root / "bad/predictions.blocks").exists()


def test_bad_tile_and_missing_crop_and_voxel_size(fixture_copy: Path, capsys) -> None:
    _expect_bad_input(fixture_copy, capsys, "--tile", "15,16,16", match="cannot be taken by the model")
    _expect_bad_input(fixture_copy, capsys, "--crops", "999", match="is in the test manifest")
    onnx_json = fixture_copy / "models/tiny/onnx-model.json"
    data = json.loads(onnx_json.read_text())
    data["input"]["voxel_size"] = [32.0, 32.0, 32.0]
    onnx_json.write_text(json.dumps(data))
    _expect_bad_input(fixture_copy, capsys, match="model voxel size [32.0, 32.0, 32.0] nm is not available in the EM")


def test_sha256_mismatch_and_corrupt_onnx(fixture_copy: Path, capsys) -> None:
    onnx = fixture_copy / "models/tiny/model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")
    _expect_bad_input(fixture_copy, capsys, match="does not match the manifest's")
    from csc_common.fsutil import sha256_file

    onnx.write_bytes(b"not an onnx file at all")
    onnx_json = fixture_copy / "models/tiny/onnx-model.json"
    data = json.loads(onnx_json.read_text())
    data["onnx"]["sha256"] = sha256_file(onnx)
    onnx_json.write_text(json.dumps(data))
    _expect_bad_input(fixture_copy, capsys, match="not a loadable ONNX model")


def test_crop_without_any_em_chunk_is_an_error_but_missing_chunks_are_fill(fixture_copy: Path, capsys) -> None:
    s1 = fixture_copy / "fixds/fixds.zarr/recon-1/em/fibsem-uint8/s1"
    # crop 101 covers s1 z 6..15, y 5..17, x 8..22 -> chunks (0, 0..1, 0..1) of 16^3
    for y in (0, 1):
        for x in (0, 1):
            (s1 / "0" / str(y) / str(x)).unlink()
    _expect_bad_input(fixture_copy, capsys, match="crop 101: its EM region is entirely absent")
    # Other crops still predict; a partly missing region reads as fill.
    (s1 / "1" / "2" / "2").unlink(missing_ok=True)
    assert main(predict_args(fixture_copy, "ok/predictions.json", "--crops", "102,104")) == 0


def test_truncated_em_chunk_mid_run_leaves_nothing(fixture_copy: Path, capsys) -> None:
    chunk = fixture_copy / "fixds/fixds.zarr/recon-1/em/fibsem-uint8/s1/1/1/1"  # inside crop 102's region
    chunk.write_bytes(chunk.read_bytes()[:7])
    _expect_bad_input(fixture_copy, capsys, match="cannot read EM region")


def test_wrong_manifest_kind_and_missing_file(fixture_root: Path, tmp_path: Path, capsys) -> None:
    args = [
        "--model",
        str(fixture_root / "dataset.json"),
        "--dataset",
        str(fixture_root / "dataset.json"),
        "--output",
        str(tmp_path / "p.json"),
    ]
    assert main(args) == 2
    assert "/kind: is 'dataset', expected 'onnx-model'" in capsys.readouterr().err
    args[1] = str(tmp_path / "missing.json")
    assert main(args) == 2
    assert "manifest file not found" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_finalize_is_a_subcommand_with_its_own_help(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "finalize" in out and "--model" in out
    assert main(["finalize", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: csc-predict finalize") and "--shard" in out and "--model" in out
    assert main(["finalise", "--model", "m.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "finalise" in err[0], err


@pytest.mark.parametrize("command", [[], ["finalize"]])
def test_a_missing_required_flag_is_one_line(fixture_root: Path, tmp_path: Path, capsys, command) -> None:
    args = [
        *command,
        "--model",
        str(fixture_root / "models/tiny/onnx-model.json"),
        "--output",
        str(tmp_path / "p.json"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["csc-predict: error: --dataset is required (dataset manifest (fetcher output))"]
    assert not (tmp_path / "p.json").exists()


def test_config_file_values_are_checked_like_flags(fixture_root: Path, tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "predict.yaml"
    out = tmp_path / "p.json"
    base = f"model: {fixture_root / 'models/tiny/onnx-model.json'}\ndataset: {fixture_root / 'dataset.json'}\n"
    for text, message in (
        ("overlap: 1.0\n", f"{cfg}: overlap: must be < 1.0, got 1.0"),
        ("batch_size: 0\n", f"{cfg}: batch_size: must be >= 1, got 0"),
        ("engine: tensorrt\n", f"{cfg}: engine: 'tensorrt' is not one of onnx, torch"),
    ):
        cfg.write_text(base + text)
        assert main(["--config", str(cfg), "--output", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"csc-predict: error: {message}"]
    cfg.write_text(base + "overlap: 0.9\n")  # flags override the file
    assert main(["--config", str(cfg), "--output", str(out), "--overlap", "1"]) == 2
    assert capsys.readouterr().err.strip() == "csc-predict: error: --overlap: must be < 1.0, got 1.0"
    assert not out.exists()


def test_no_runtime_is_imported_before_the_manifests_are_read(fixture_root: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from csc_predictor.cli import main; "
        f"rc = main(['--model', {str(fixture_root / 'models/tiny/onnx-model.json')!r}, "
        f"'--dataset', {str(tmp_path / 'missing.json')!r}, '--output', {str(tmp_path / 'p.json')!r}]); "
        "print(rc, 'onnxruntime' in sys.modules, 'torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["2", "False", "False"], run.stderr
    assert "manifest file not found" in run.stderr


def test_config_dtype_float64_is_refused_before_any_block_runs(
    fixture_copy: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks: list[object] = []
    monkeypatch.setattr(predict_mod, "predict_block", lambda block, *a, **k: blocks.append(block))
    cfg = tmp_path / "predict.yaml"
    cfg.write_text("dtype: float64\n")
    _expect_bad_input(
        fixture_copy,
        capsys,
        "--config",
        str(cfg),
        match=f"{cfg}: dtype: 'float64' is not one of uint8, float16, float32",
    )
    assert blocks == []
    cfg.write_text("dtype: float16\n")  # the same run with a dtype the stage stores goes through every block
    assert main(predict_args(fixture_copy, "ok/predictions.json", "--config", str(cfg))) == 0
    assert blocks and read_manifest(fixture_copy / "ok/predictions.json", "predictions").data["encoding"]["dtype"] == (
        "float16"
    )


def test_region_flags_and_crop_flags_do_not_mix(fixture_copy: Path, capsys) -> None:
    roi = "150,100,93:230,196,205"
    _expect_bad_input(
        fixture_copy, capsys, "--roi", roi, "--crops", "901", match="--crops '901' would be ignored with --roi"
    )
    _expect_bad_input(
        fixture_copy, capsys, "--whole-volume", "--crops", "101", match="--crops '101' would be ignored with --roi"
    )
    _expect_bad_input(
        fixture_copy, capsys, "--volume", "fixds", match="--volume 'fixds' would be ignored without --roi or --whole"
    )
    _expect_bad_input(fixture_copy, capsys, "--roi", "0,0,0:1,1", match="--roi stop: expected 1 or 3 numbers")
