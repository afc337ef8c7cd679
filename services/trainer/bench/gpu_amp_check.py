"""GPU check of the trainer's AMP path: speed-up of AMP on vs off, and that AMP still learns.

Prepared for a lent GPU machine (not run by ``make test``). It uses the
trainer's own ``train_step`` (autocast float16 + GradScaler + unscaled
clipping) on random patches, so it needs no dataset:

    python services/trainer/bench/gpu_amp_check.py [--patch 64] [--batch 4] [--iterations 60]

Optionally ``--dataset DATA/dataset.json`` also runs ``csc-train`` end to end on
CUDA with AMP (a short run into a temp folder) and checks the model manifest.
Last line: ``bench train-gpu: amp_off_it_s=<x> amp_on_it_s=<y> speedup=<y/x> ...``.
Exit 0 also when no CUDA device is present (prints "skipped").
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from csc_common import nets
from csc_trainer.train import train_step


def timed_run(*, amp: bool, patch: int, batch: int, iterations: int, features: int, classes: int) -> dict:
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = nets.build_model({"dims": 3, "out_channels": classes, "depth": 4, "base_features": features}).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.rand((batch, 1, patch, patch, patch), generator=g).to(dev)
    # A learnable target: class k is "x above a k-dependent threshold", half of it masked for class 0.
    thr = torch.linspace(0.2, 0.8, classes, device=dev).view(1, -1, 1, 1, 1)
    t = (x > thr).float()
    m = torch.ones_like(t)
    m[:, 0, : patch // 2] = 0
    losses = []
    for _ in range(5):  # warm-up (cudnn autotune, allocator)
        train_step(model, opt, scaler, x, t, m, use_amp=amp, max_grad_norm=1.0)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(iterations):
        loss, _ = train_step(model, opt, scaler, x, t, m, use_amp=amp, max_grad_norm=1.0)
        losses.append(loss)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {
        "it_s": iterations / dt,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20,
        "finite": all(map(lambda v: v == v and abs(v) != float("inf"), losses)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--dataset", help="dataset manifest: also run csc-train on CUDA with AMP")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench train-gpu: skipped (no CUDA device)")
        return 0
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", file=sys.stderr)
    kw = {"patch": a.patch, "batch": a.batch, "iterations": a.iterations, "features": a.features, "classes": a.classes}
    off = timed_run(amp=False, **kw)
    on = timed_run(amp=True, **kw)
    for name, r in (("amp off", off), ("amp on", on)):
        print(
            f"{name}: {r['it_s']:.2f} it/s, loss {r['first_loss']:.4f} -> {r['last_loss']:.4f}, "
            f"peak {r['peak_mib']:.0f} MiB, finite={r['finite']}",
            file=sys.stderr,
        )
    ok = on["finite"] and off["finite"] and on["last_loss"] < on["first_loss"]
    e2e = "n/a"
    if a.dataset:
        from csc_common.manifest import read_manifest
        from csc_trainer.cli import main as train_main

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "gpu" / "model.json"
            t0 = time.perf_counter()
            rc = train_main(
                [
                    "--dataset",
                    a.dataset,
                    "--output",
                    str(out),
                    "--device",
                    "cuda",
                    "--iterations",
                    "100",
                    "--validate-every",
                    "50",
                    "-q",
                ]
            )
            dt = time.perf_counter() - t0
            tr = read_manifest(out, "model")["training"] if rc == 0 else {}
            e2e = f"{dt:.1f}s" if rc == 0 and tr.get("amp") and tr.get("device", "").startswith("cuda") else "FAILED"
            ok = ok and e2e != "FAILED"
            print(
                f"csc-train on cuda: rc={rc}, {tr.get('iterations_per_second')} it/s, amp={tr.get('amp')}, "
                f"best IoU {tr.get('best_validation_mean_iou')}",
                file=sys.stderr,
            )
    print(
        f"bench train-gpu: amp_off_it_s={off['it_s']:.2f} amp_on_it_s={on['it_s']:.2f} "
        f"speedup={on['it_s'] / off['it_s']:.2f} peak_off_mib={off['peak_mib']:.0f} "
        f"peak_on_mib={on['peak_mib']:.0f} amp_learns={ok} e2e={e2e}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
