"""ONNX export, verification, stored test tensors and bad input (csc_exporter)."""

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from csc_common import views
from csc_common.manifest import read_manifest
from csc_common.views import OnnxModelView
from csc_exporter.cli import main


def _export(model_json, *extra):
    out = model_json.parent / "onnx-model.json"
    rc = main(["--model", str(model_json), "--output", str(out), "-q", "--latency-runs", "2", *extra])
    return rc, out


@pytest.mark.parametrize("dims", [3, 2])
def test_export_verifies_describes_itself_and_reproduces(model_manifest, dims):
    rc, out = _export(model_manifest(dims=dims))
    assert rc == 0
    m = read_manifest(out, "onnx-model")
    assert m["opset"] >= 17 and m["output"] == "logits"
    assert m["verification"]["max_abs_diff"] <= m["verification"]["tolerance"] == 1e-4
    assert set(m["verification"]["checks"]) == {"random", "real", "dynamic_shape"}
    assert m["valid_shape"]["multiple"] == ([4, 4, 4] if dims == 3 else [1, 4, 4])
    assert m["latency_ms"]["torch"]["median"] > 0 and m["latency_ms"]["onnxruntime"]["median"] > 0
    assert m["classes"] == ["mito", "nuc", "er"] and m["input"]["patch_shape"][0] == (16 if dims == 3 else 1)
    proto = onnx.load(str(m.resolve(m["onnx"]["path"])))
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)
    sess = ort.InferenceSession(str(m.resolve(m["onnx"]["path"])), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == m["input_name"] and outp.name == m["output_name"]
    assert isinstance(inp.shape[0], str) and all(isinstance(d, str) for d in inp.shape[3:])
    # Another valid shape (batch 3, larger, Z = 3 slices for 2D) runs through the same file.
    z = 8 if dims == 3 else 3
    y = sess.run(None, {inp.name: np.zeros((3, 1, z, 20, 12), np.float32)})[0]
    assert y.shape == (3, 3, z, 20, 12)
    # The stored test tensors (the trainer's real sample patch and torch's logits) reproduce.
    x = np.load(m.resolve(m["test_tensors"]["input"]["path"]))
    want = np.load(m.resolve(m["test_tensors"]["expected"]["path"]))
    np.testing.assert_array_equal(x, np.load(m.resolve("sample_input.npy")))
    got = sess.run([m["output_name"]], {m["input_name"]: x})[0]
    assert got.shape == want.shape == (1, 3, *m["input"]["patch_shape"])
    assert np.max(np.abs(got - want)) <= 1e-4


def test_torchscript_exporter_also_verifies(model_manifest):
    rc, out = _export(model_manifest(dims=3, norm="instance"), "--exporter", "torchscript")
    assert rc == 0
    m = read_manifest(out, "onnx-model")
    assert m["exporter"] == "torchscript" and m["verification"]["max_abs_diff"] <= 1e-4


def _corrupt(model_json):
    ck = model_json.parent / "checkpoints" / "best.pt"
    ck.write_bytes(ck.read_bytes()[:500])


def _corrupt_consistently(model_json):
    """Truncate the checkpoint and record the new digest: only loading can tell."""
    from csc_common.fsutil import sha256_file

    _corrupt(model_json)
    data = json.loads(model_json.read_text())
    ck = model_json.parent / "checkpoints" / "best.pt"
    data["checkpoint"]["sha256"] = sha256_file(ck)
    data["checkpoint"]["bytes"] = ck.stat().st_size
    model_json.write_text(json.dumps(data))


def _wrong_arch(model_json):
    data = json.loads(model_json.read_text())
    data["architecture"]["base_features"] = 8
    model_json.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("break_it", "expect"),
    [
        (_corrupt, "sha256 does not match the one recorded in"),
        (_corrupt_consistently, "corrupt or unreadable checkpoint"),
        (_wrong_arch, "does not match the manifest's"),
        (lambda p: (p.parent / "checkpoints" / "best.pt").unlink(), "not found"),
        (lambda p: p.write_text('{"kind": "dataset", "schema_version": 1}'), "/kind: is 'dataset', expected 'model'"),
    ],
)
def test_bad_input_one_line_exit_2(model_manifest, capsys, break_it, expect):
    model_json = model_manifest(dims=3)
    break_it(model_json)
    rc, out = _export(model_json)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("csc-export: error: ") and expect in err[0], err
    assert not out.exists() and not (model_json.parent / "model.onnx").exists()


def test_onnx_manifest_carries_the_model_class_kinds(model_manifest):
    """Kinds are copied from the model manifest (here: er recorded as an instance class), not re-derived."""
    kinds = {"mito": "instance", "nuc": "semantic", "er": "instance"}
    rc, out = _export(model_manifest(dims=2, class_kinds=kinds))
    assert rc == 0
    view = views.load(out, OnnxModelView)
    assert dict(view.class_kinds) == kinds and view.classes == ("mito", "nuc", "er")
    assert view.test_source == "trainer sample patch" and view.test_input is not None
    assert view.test_input.verify(view.where).name == "test_input.npy"
    assert view.model_manifest == (out.parent / "model.json").resolve()
    assert view.to_json(out) == json.loads(out.read_text())  # the view gives back exactly the written file


def test_required_field_and_config_file_range_are_one_line(model_manifest, tmp_path, capsys):
    model_json = model_manifest(dims=3)
    out = tmp_path / "onnx" / "onnx-model.json"
    assert main(["--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("csc-export: error: --model is required (model manifest"), err
    cfg = tmp_path / "export.yaml"
    cfg.write_text(f"model: {model_json}\noutput: {out}\nopset: 16\n")
    assert main(["--config", str(cfg)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"csc-export: error: {cfg}: opset: must be >= 17, got 16"]
    cfg.write_text(f"model: {model_json}\noutput: {out}\ntolerance: -1\n")
    assert main(["--config", str(cfg)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"csc-export: error: {cfg}: tolerance: must be > 0, got -1.0"
    ]
    assert not out.exists()


def test_bad_checkpoint_fails_before_torch_is_imported(model_manifest):
    model_json = model_manifest(dims=3)
    _corrupt(model_json)
    argv = ["--model", str(model_json), "--output", str(model_json.parent / "onnx-model.json")]
    code = (
        f"import sys; from csc_exporter.cli import main; rc = main({argv!r}); "
        "print(rc, 'torch' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.stdout.split() == ["2", "False", "False"], res.stderr
    assert "sha256 does not match" in res.stderr
