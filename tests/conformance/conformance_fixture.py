"""A small predictor fixture: EM, a test crop manifest, a dataset manifest, a tiny U-Net (checkpoint + ONNX).

Everything a predictor reads, in the pipeline's layout, under one folder
(mounted at ``/data`` when the predictor is a Docker image)::

    dataset.json  test_crop_manifest.csv  fixds/fixds.zarr/recon-1/em/fibsem-uint8/{s0,s1}
    models/tiny/{model.json, checkpoint.pt, model.onnx, onnx-model.json}

The network is ``csc_common.nets``' U-Net with fixed random weights (the head
scaled so probabilities spread over [0, 1]); the same weights back the
checkpoint and the ONNX file, so any engine can be compared with any other.
Deterministic for a given seed. Needs torch (host side only).
"""

import json
import warnings
from pathlib import Path

import numpy as np
from csc_common.crops import CropRow, write_crop_manifest
from csc_common.geometry import Geometry
from csc_common.manifest import artifact, new_manifest, now, write_manifest
from csc_common.volumes import open_group, write_multiscale
from scipy import ndimage

DATASET = "fixds"
MODEL_VOXEL = (8.0, 8.0, 8.0)
PATCH = (16, 16, 16)
CLASSES = ("mito", "er")
ARCH = {
    "name": "unet",
    "dims": 3,
    "in_channels": 1,
    "out_channels": len(CLASSES),
    "depth": 2,
    "base_features": 4,
    "norm": "none",
}
S0 = Geometry((4.0, 4.0, 4.0), (100.0, 52.0, 20.0), (64, 80, 80))
# s1: 2x averaged, so its first voxel sits half a fine voxel further in.
S1 = Geometry((8.0, 8.0, 8.0), (102.0, 54.0, 22.0), (32, 40, 40))

# (crop id, class, voxel size, translation, shape): translations not multiples of the voxel size,
# crop 102 mixes voxel sizes (union box), crop 103 lists no model class (skipped), crop 104 sits at the EM edge.
CROP_ROWS = (
    (101, "mito", (8.0, 8.0, 8.0), (150.0, 100.0, 93.0), (10, 12, 14)),
    (101, "er", (8.0, 8.0, 8.0), (150.0, 100.0, 93.0), (10, 12, 14)),
    (102, "mito", (4.0, 4.0, 4.0), (230.0, 190.0, 170.0), (20, 18, 16)),
    (102, "er", (8.0, 8.0, 8.0), (230.0, 190.0, 170.0), (10, 9, 8)),
    (103, "cell", (8.0, 8.0, 8.0), (150.0, 100.0, 93.0), (4, 4, 4)),
    (104, "er", (8.0, 8.0, 8.0), (300.0, 300.0, 300.0), (6, 8, 8)),
)


def make_em(seed: int = 0) -> np.ndarray:
    """uint8 EM-like s0 volume: smooth blobs (dark rims) on noise."""
    rng = np.random.default_rng(seed)
    blobs = ndimage.gaussian_filter(rng.normal(size=S0.shape), 3.0)
    blobs = (blobs - blobs.mean()) / (blobs.std() + 1e-9)
    em = 128 + 40 * blobs + 10 * rng.normal(size=S0.shape)
    return np.clip(em, 0, 255).astype(np.uint8)


def build_fixture(folder: str | Path, *, seed: int = 0) -> dict[str, Path]:
    """Write the fixture under ``folder``; returns the paths a predictor is called with."""
    import torch
    from csc_common import nets

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    started = now()
    # EM, two levels, bucket layout.
    s0 = make_em(seed)
    s1 = s0.reshape(32, 2, 40, 2, 40, 2).mean(axis=(1, 3, 5)).round().astype(np.uint8)
    zarr_path = root / DATASET / f"{DATASET}.zarr"
    grp = open_group(zarr_path, mode="w")
    write_multiscale(grp, "recon-1/em/fibsem-uint8", [(s0, S0), (s1, S1)], chunks=(16, 16, 16))
    # Test crop manifest and dataset manifest.
    rows = [CropRow(c, DATASET, name, Geometry(vs, tr, sh)) for c, name, vs, tr, sh in CROP_ROWS]
    (root / "test_crop_manifest.csv").write_text(write_crop_manifest(rows))
    ds_path = root / "dataset.json"
    crops: dict[int, dict] = {}
    for r in rows:
        crops.setdefault(r.crop_id, {"id": r.crop_id, "dataset": DATASET, "split": "test", "classes": []})
        crops[r.crop_id]["classes"].append({"name": r.class_label, "geometry": r.geometry.to_json()})
    write_manifest(
        ds_path,
        new_manifest(
            "dataset",
            "fetcher",
            started,
            args=[],
            source="conformance-fixture",
            datasets=[
                {
                    "name": DATASET,
                    "zarr": f"{DATASET}/{DATASET}.zarr",
                    "em": {
                        "path": "recon-1/em/fibsem-uint8",
                        "levels": [{"path": p, **g.to_json()} for p, g in (("s0", S0), ("s1", S1))],
                    },
                }
            ],
            crops=list(crops.values()),
            test_manifest="test_crop_manifest.csv",
        ),
    )
    # The network: fixed weights, head scaled so probabilities spread.
    torch.manual_seed(seed)
    net = nets.build_model(ARCH).eval()
    with torch.no_grad():  # rescale the head: logits centred, std ~2 on this EM, so probabilities spread
        x = torch.from_numpy(s1[None, None, :16, :32, :32].astype(np.float32) * (2.0 / 255.0) - 1.0)
        logits = net(x) - net.head.bias.view(1, -1, 1, 1, 1)
        mean, std = logits.mean(dim=(0, 2, 3, 4)), logits.std(dim=(0, 2, 3, 4))
        k = 2.0 / std.clamp_min(1e-6)
        net.head.weight.mul_(k.view(-1, 1, 1, 1, 1))
        net.head.bias.copy_(-mean * k)
    mdir = root / "models" / "tiny"
    ckpt = nets.save_checkpoint(mdir / "checkpoint.pt", net, ARCH)
    input_spec = {
        "channels": 1,
        "patch_shape": list(PATCH),
        "voxel_size": list(MODEL_VOXEL),
        "normalization": {"scale": 2.0 / 255.0, "offset": -1.0},
    }
    model_json = mdir / "model.json"
    write_manifest(
        model_json,
        new_manifest(
            "model",
            "trainer",
            started,
            args=[],
            name="tiny",
            architecture=nets.normalize_architecture(ARCH),
            input=input_spec,
            classes=list(CLASSES),
            checkpoint=artifact(ckpt, model_json),
        ),
    )
    onnx_path = mdir / "model.onnx"
    x = torch.zeros((1, 1, *PATCH))
    dyn = {0: "n", 2: "z", 3: "y", 4: "x"}
    with warnings.catch_warnings():  # the legacy exporter warns it is legacy; it is the small, dependable one
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x,),
            str(onnx_path),
            input_names=["raw"],
            output_names=["logits"],
            dynamic_axes={"raw": dyn, "logits": dyn},
            opset_version=18,
            dynamo=False,
        )
    onnx_json = mdir / "onnx-model.json"
    model_ref = artifact(model_json, onnx_json)
    write_manifest(
        onnx_json,
        new_manifest(
            "onnx-model",
            "exporter",
            started,
            args=[],
            inputs=[{"kind": "model", "path": model_ref["path"], "sha256": model_ref["sha256"]}],
            onnx=artifact(onnx_path, onnx_json),
            opset=18,
            input_name="raw",
            output_name="logits",
            input=input_spec,
            classes=list(CLASSES),
            valid_shape={"multiple": list(nets.downsampling_multiple(ARCH)), "min": [2, 2, 2]},
            verification={"max_abs_diff": 0.0, "tolerance": 1e-4},
            model={"path": model_ref["path"]},
        ),
    )
    info = {
        "root": root,
        "dataset": ds_path,
        "model": onnx_json,
        "model_manifest": model_json,
        "test_manifest": root / "test_crop_manifest.csv",
    }
    (root / "fixture.json").write_text(
        json.dumps({k: str(v.relative_to(root)) for k, v in info.items() if k != "root"}, indent=1) + "\n"
    )
    return info


if __name__ == "__main__":  # pragma: no cover - manual use: python conformance_fixture.py DIR
    import sys

    print(build_fixture(sys.argv[1])["root"])
