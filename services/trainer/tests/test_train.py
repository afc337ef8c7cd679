"""Training: masked loss, overfitting, resume, outputs, config files and bad input (csc_trainer.train / cli)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from csc_common import nets, views
from csc_common.manifest import read_manifest
from csc_common.views import ModelView
from csc_trainer.cli import main
from csc_trainer.train import iou_from_counts, lr_factor, masked_bce

QUIET = ["-q", "--no-tensorboard", "--no-plots"]
TINY = ["--patch-shape", "8,8,8", "--depth", "2", "--base-features", "4", "--batch-size", "1"]  # fastest net


def test_unannotated_class_gets_zero_gradient():
    torch.manual_seed(0)
    model = nets.build_model({"dims": 3, "out_channels": 3, "depth": 2, "base_features": 4})
    x = torch.rand(2, 1, 8, 8, 8)
    target = (torch.rand(2, 3, 8, 8, 8) > 0.5).float()
    mask = torch.ones_like(target)
    mask[:, 1] = 0  # class 1 unannotated in every crop of the batch
    logits = model(x)
    logits.retain_grad()
    masked_bce(logits, target, mask).backward()
    assert logits.grad[:, 1].abs().max() == 0
    assert logits.grad[:, 0].abs().max() > 0
    head = model.head
    assert head.weight.grad[1].abs().max() == 0 and head.bias.grad[1] == 0
    assert head.weight.grad[0].abs().max() > 0


def test_masked_values_do_not_change_the_loss():
    logits = torch.randn(1, 2, 4, 4, 4)
    target = (torch.rand(1, 2, 4, 4, 4) > 0.5).float()
    mask = torch.ones_like(target)
    mask[:, :, :2] = 0
    flipped = target.clone()
    flipped[:, :, :2] = 1 - flipped[:, :, :2]
    assert masked_bce(logits, target, mask) == masked_bce(logits, flipped, mask)
    assert masked_bce(logits, target, torch.zeros_like(mask)) == 0


def test_iou_and_schedule_helpers():
    assert iou_from_counts(np.array([[3, 1, 0], [0, 0, 0]])) == [0.75, None]
    f = lr_factor("cosine", 10, 110)
    assert f(0) == pytest.approx(0.1) and f(9) == 1.0 and f(10) == pytest.approx(1.0) and f(109) < 0.05


def _train(tmp_path, dataset, name, *extra):
    out = tmp_path / "models" / name / "model.json"
    rc = main(["--dataset", str(dataset), "--output", str(out), *QUIET, *extra])
    return rc, out


@pytest.mark.parametrize(
    ("dims", "args"),
    [
        (3, ["--patch-shape", "16,16,16", "--batch-size", "4", "--iterations", "400"]),
        (2, ["--patch-shape", "1,32,32", "--batch-size", "8", "--iterations", "400"]),
    ],
)
def test_overfits_one_crop(tmp_path, fixture_dataset, dims, args):
    """A small U-Net fits one crop: mean validation IoU (validated on that crop) > 0.9."""
    rc, out = _train(
        tmp_path,
        fixture_dataset,
        f"overfit{dims}d",
        "--dims",
        str(dims),
        "--crops",
        "1",
        "--classes",
        "mito,nuc,ecs,cyto",
        "--learning-rate",
        "5e-3",
        "--class-balance",
        "1.0",
        "--no-pos-weight",
        "--no-augment",
        "--validate-every",
        "100",
        "--threads",
        "1",
        *args,
    )
    assert rc == 0
    m = read_manifest(out, "model")
    tr = m["training"]
    assert tr["train_crops"] == [1] and tr["validate_crops"] == [1]
    ious = tr["best_validation_iou"]
    assert tr["best_validation_mean_iou"] > 0.9, ious
    assert min(ious.values()) > 0.7, ious
    assert m["architecture"]["dims"] == dims


def test_resume_matches_uninterrupted_run(tmp_path, fixture_dataset):
    common = [
        "--patch-shape",
        "8,16,16",
        "--batch-size",
        "2",
        "--iterations",
        "12",
        "--validate-every",
        "5",
        "--depth",
        "2",
        "--base-features",
        "4",
        "--threads",
        "1",
        "--classes",
        "nuc,ecs,er",
        "--seed",
        "3",
    ]
    rc, full = _train(tmp_path, fixture_dataset, "full", *common)
    assert rc == 0
    rc, part = _train(tmp_path, fixture_dataset, "part", *common, "--stop-after", "7")
    assert rc == 0 and not part.exists()
    assert nets.load_checkpoint(part.parent / "checkpoints" / "latest.pt")["iteration"] == 7
    rc, part = _train(tmp_path, fixture_dataset, "part", *common, "--resume")
    assert rc == 0 and part.exists()
    a = nets.load_checkpoint(full.parent / "checkpoints" / "latest.pt")
    b = nets.load_checkpoint(part.parent / "checkpoints" / "latest.pt")
    assert a["iteration"] == b["iteration"] == 12
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)
    losses = [json.loads(ln) for ln in (part.parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in losses if "loss" in r] == list(range(1, 13))


def test_outputs_and_config_file(tmp_path, fixture_dataset):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        "iterations: 6\nclasses: [nuc, er, ecs]\npatch_shape: [8, 16, 16]\nbase_features: 4\n"
        "depth: 2\nvalidate_every: 3\nbatch_size: 2\n"
    )
    out = tmp_path / "models" / "cfg" / "model.json"
    rc = main(
        ["--config", str(cfg), "--dataset", str(fixture_dataset), "--output", str(out), "-q", "--iterations", "4"]
    )
    assert rc == 0
    m = read_manifest(out, "model")
    assert m["training"]["iterations"] == 4 and m["classes"] == ["nuc", "er", "ecs"]
    assert m["input"]["patch_shape"] == [8, 16, 16] and m["input"]["voxel_size"] == [8.0, 8.0, 8.0]
    assert m["input"]["normalization"] == {"scale": pytest.approx(1 / 255), "offset": 0.0}
    assert m["output"] == "logits" and m["valid_shape"]["multiple"] == [2, 2, 2]
    d = out.parent
    for name in (
        "curves.png",
        "samples.png",
        "metrics.jsonl",
        "datasplit.csv",
        "sample_input.npy",
        "checkpoints/best.pt",
        "checkpoints/latest.pt",
    ):
        assert (d / name).is_file(), name
    assert list((d / "tensorboard").glob("events.out.tfevents.*"))
    assert (d / "curves.png").read_bytes()[:4] == b"\x89PNG"
    ck = nets.load_checkpoint(m.resolve(m["checkpoint"]["path"]))
    assert "optimizer" in ck and "scheduler" in ck
    assert np.load(d / "sample_input.npy").shape == (1, 1, 8, 16, 16)
    val = [json.loads(ln) for ln in (d / "metrics.jsonl").read_text().splitlines() if "val_iou" in ln]
    assert [v["iteration"] for v in val] == [3, 4] and set(val[0]["val_iou"]) == {"nuc", "er", "ecs"}


def _corrupt_checkpoint(tmp_path, fixture_dataset):
    rc, out = _train(
        tmp_path,
        fixture_dataset,
        "bad",
        "--iterations",
        "2",
        "--stop-after",
        "1",
        *TINY,
    )
    assert rc == 0
    ck = out.parent / "checkpoints" / "latest.pt"
    ck.write_bytes(ck.read_bytes()[:1000])
    return ["--resume", "--iterations", "2", "--patch-shape", "8,8,8", "--depth", "2", "--base-features", "4"]


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("unknown_class", "unknown class(es) mitochondria"),
        ("never_annotated", "pm annotated in no training crop"),
        ("not_divisible", "is not divisible by the network's downsampling multiple [4, 4, 4]"),
        ("2d_patch", "a 2D model takes patches of one z slice"),
        ("no_training_crops", "no training crops"),
        ("unknown_crop", "no training crop(s) 9"),
        ("corrupt_checkpoint", "corrupt or unreadable checkpoint"),
        ("wrong_kind", "/kind: is 'model', expected 'dataset'"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, fixture_dataset, make_fixture_dataset, capsys, case, expect):
    dataset = fixture_dataset
    args = ["--iterations", "2"]
    if case == "unknown_class":
        args += ["--classes", "mito,mitochondria"]
    elif case == "never_annotated":
        args += ["--classes", "nuc,pm"]
    elif case == "not_divisible":
        args += ["--patch-shape", "30,32,32"]
    elif case == "2d_patch":
        args += ["--dims", "2", "--patch-shape", "4,32,32"]
    elif case == "no_training_crops":
        dataset = make_fixture_dataset(
            tmp_path / "only-test",
            crops=[
                {
                    "id": 9,
                    "start": (180.0, 180.0, 180.0),
                    "shape": (16, 16, 16),
                    "vs": (8.0, 8.0, 8.0),
                    "classes": ("nuc",),
                    "split": "test",
                }
            ],
        )
    elif case == "unknown_crop":
        args += ["--crops", "1,9"]
    elif case == "corrupt_checkpoint":
        args = _corrupt_checkpoint(tmp_path, fixture_dataset)
        capsys.readouterr()
    elif case == "wrong_kind":
        dataset = tmp_path / "model.json"
        dataset.write_text(json.dumps({"kind": "model", "schema_version": 1}))
    name = "bad" if case == "corrupt_checkpoint" else case
    rc, out = _train(tmp_path, dataset, name, *args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("csc-train: error: ") and expect in err[0], err
    assert not out.exists()


def test_trains_on_fetched_synthetic_data(tmp_path, synthetic_data):
    """The fetcher's own dataset (anisotropic EM, multiscale labels) trains end to end."""
    rc, out = _train(
        tmp_path,
        synthetic_data,
        "fetched",
        "--iterations",
        "6",
        "--validate-every",
        "3",
        "--patch-shape",
        "16,16,16",
        "--base-features",
        "4",
        "--batch-size",
        "2",
        "--threads",
        "1",
    )
    assert rc == 0
    m = read_manifest(out, "model")
    assert len(m["training"]["train_crops"]) + len(m["training"]["validate_crops"]) >= 2
    assert m["training"]["best_iteration"] in (3, 6)


def test_model_manifest_copies_the_dataset_class_kinds(tmp_path, make_fixture_dataset):
    """The kinds come from the dataset manifest (here: er recorded as an instance class), not from the name."""
    dataset = make_fixture_dataset(tmp_path / "kinds", instance=("er", "mito"))
    rc, out = _train(
        tmp_path,
        dataset,
        "kinds",
        "--classes",
        "er,nuc,mito",
        "--iterations",
        "2",
        "--validate-every",
        "2",
        *TINY,
    )
    assert rc == 0
    m = views.load(out, ModelView)
    assert m.classes == ("er", "nuc", "mito")
    assert dict(m.class_kinds) == {"er": "instance", "nuc": "semantic", "mito": "instance"}
    assert m.to_json(out) == json.loads(out.read_text())


def test_required_field_missing_from_flags_and_file_is_one_line(tmp_path, fixture_dataset, capsys):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("iterations: 2\n")
    out = tmp_path / "m" / "model.json"
    assert main(["--config", str(cfg), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("csc-train: error: --dataset is required (dataset manifest"), err
    assert main(["--dataset", str(fixture_dataset)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("csc-train: error: --output is required (model manifest"), err
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("iterations: 0\n", "iterations: must be >= 1, got 0"),
        ("class_balance: 1.5\n", "class_balance: must be <= 1, got 1.5"),
        ("validate_ratio: 1\n", "validate_ratio: must be < 1, got 1.0"),
        ("learning_rate: 0\n", "learning_rate: must be > 0, got 0.0"),
        ("dims: 4\n", "dims: 4 is not one of 2, 3"),
    ],
)
def test_range_violation_in_a_config_file_names_file_and_field(tmp_path, fixture_dataset, capsys, text, message):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(text)
    out = tmp_path / "m" / "model.json"
    assert main(["--config", str(cfg), "--dataset", str(fixture_dataset), "--output", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"csc-train: error: {cfg}: {message}"]
    assert not out.exists()


def test_bad_input_fails_before_torch_is_imported(tmp_path, fixture_dataset):
    """The dataset manifest is loaded and the classes checked first: a bad class never pays torch's import."""
    argv = ["--dataset", str(fixture_dataset), "--output", str(tmp_path / "m" / "model.json"), "--classes", "mito,pm"]
    code = f"import sys; from csc_trainer.cli import main; rc = main({argv!r}); print(rc, 'torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.stdout.split() == ["2", "False"], res.stderr
    assert "pm annotated in no training crop" in res.stderr


@pytest.mark.parametrize("case", ["label_array_missing", "em_chunk_garbage", "every_class_filtered_out"])
def test_a_bad_dataset_leaves_no_datasplit_behind(tmp_path, make_fixture_dataset, capsys, case):
    """The new datasplit.csv is written only once the crops it lists were opened and read."""
    dataset = make_fixture_dataset(tmp_path / "data")
    zroot = tmp_path / "data" / "fx-1" / "fx-1.zarr"
    args = ["--iterations", "2", *TINY]
    if case == "label_array_missing":
        shutil.rmtree(zroot / "recon-1/labels/groundtruth/crop2/nuc/s0")
    elif case == "em_chunk_garbage":
        for chunk in (zroot / "recon-1/em/fibsem-uint8/s0").rglob("[0-9]*"):
            if chunk.is_file():
                chunk.write_bytes(b"not a compressed chunk")
    else:  # no class is annotated at 2 nm or finer: the split is empty
        args += ["--filter-by-scale", "--voxel-size", "2"]
    rc, out = _train(tmp_path, dataset, case, *args)
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("csc-train:")]
    assert rc in (1, 2) and len(err) == 1, err  # 1: an undecodable EM chunk reads as a failure, not as input
    assert not (out.parent / "datasplit.csv").exists() and not out.exists()
