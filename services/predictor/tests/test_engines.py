import json
from pathlib import Path

import numpy as np
import pytest
from csc_common.errors import InputError
from csc_predictor import engines
from csc_predictor.engines import ModelSpec, OnnxEngine, TorchEngine, cgroup_cpu_quota, cores_given, probe


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


def test_session_options_are_the_tuned_ones(fixture_root: Path) -> None:
    import onnxruntime as ort

    opts = OnnxEngine(_spec(fixture_root), provider="cpu", threads=1).session.get_session_options()
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.enable_cpu_mem_arena and opts.enable_mem_pattern


def test_both_engines_default_to_the_cores_given(fixture_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(engines, "cores_given", lambda: 1)
    before = torch.get_num_threads()
    try:
        onnx, torch_ = OnnxEngine(_spec(fixture_root), threads=0), TorchEngine(_spec(fixture_root), threads=0)
        assert onnx.session.get_session_options().intra_op_num_threads == 1
        assert onnx.threads == torch_.threads == {"intra_op": 1, "inter_op": 1, "requested_intra_op": 0}
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    "files,want",
    [
        ({"cpu.max": "200000 100000\n"}, 2),
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: round up, the second thread still gets half a core
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_cpu_quota(tmp_path: Path, files: dict[str, str], want: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) == want


def test_cores_given_is_capped_by_affinity_and_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr("psutil.cpu_count", lambda logical=True: 64)
    monkeypatch.setattr(engines, "cgroup_cpu_quota", lambda: None)
    assert cores_given() == 4
    monkeypatch.setattr(engines, "cgroup_cpu_quota", lambda: 2)
    assert cores_given() == 2
    monkeypatch.setattr("psutil.cpu_count", lambda logical=True: 1)  # one physical core, hyperthreads aside
    assert cores_given() == 1
