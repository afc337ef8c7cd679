import json
from pathlib import Path

import numpy as np
import pytest
from csc_common.errors import InputError
from csc_predictor.engines import ModelSpec, OnnxEngine, TorchEngine, probe


def _spec(root: Path) -> ModelSpec:
    return ModelSpec.load(root / "models/tiny/onnx-model.json")


def test_spec_fields_and_tile_rule(fixture_root: Path) -> None:
    spec = _spec(fixture_root)
    assert spec.classes == ("mito", "er") and spec.voxel_size == (8.0, 8.0, 8.0) and spec.patch_shape == (16, 16, 16)
    assert spec.valid_shape.multiple == (2, 2, 2) and spec.class_kinds == {"mito": "instance", "er": "semantic"}
    spec.check_tile((16, 32, 2))
    for bad in ((15, 16, 16), (0, 16, 16), (16, 16, 1)):
        with pytest.raises(InputError, match="valid_shape"):
            spec.check_tile(bad)
    assert spec.manifest.model_manifest == fixture_root / "models/tiny/model.json"


def test_model_reference_through_inputs_only(fixture_copy: Path) -> None:
    p = fixture_copy / "models/tiny/onnx-model.json"
    data = json.loads(p.read_text())
    del data["model"]  # the exporter records the model manifest as an input of kind 'model'
    p.write_text(json.dumps(data))
    assert _spec(fixture_copy).manifest.model_manifest == fixture_copy / "models/tiny/model.json"
    data["inputs"] = []
    p.write_text(json.dumps(data))
    with pytest.raises(InputError, match="--engine torch needs the model manifest"):
        TorchEngine(_spec(fixture_copy))


def test_engines_agree_and_report_what_ran(fixture_root: Path) -> None:
    spec = _spec(fixture_root)
    onnx, torch_ = OnnxEngine(spec, provider="auto", threads=1), TorchEngine(spec, provider="cpu", threads=1)
    assert onnx.provider == "CPUExecutionProvider" and onnx.threads["intra_op"] == 1
    assert torch_.provider == "torch-cpu"
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 1, 16, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(onnx(x), torch_(x), atol=1e-4)
    probe(onnx, spec, (16, 16, 16))
    with pytest.raises(InputError, match="cannot take tile shape"):
        probe(onnx, spec, (15, 16, 16))


def test_cuda_request_without_a_gpu_is_bad_input(fixture_root: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a CUDA provider is present here")
    with pytest.raises(InputError, match="--provider cuda"):
        OnnxEngine(_spec(fixture_root), provider="cuda")


def test_checkpoint_sha_mismatch(fixture_copy: Path) -> None:
    ckpt = fixture_copy / "models/tiny/checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes() + b"x")
    with pytest.raises(InputError, match="sha256 does not match the one recorded in .*model.json"):
        TorchEngine(_spec(fixture_copy))
