"""Training: masked multi-class loss, the optimisation loop, validation IoU, checkpoints.

Reads the training crops of a ``dataset`` manifest (lazily, see ``io.py``),
trains a 2D or 3D U-Net from ``csc_common.nets`` and writes beside the model
manifest: ``checkpoints/latest.pt`` + ``checkpoints/best.pt`` (with optimizer,
scheduler and AMP-scaler state), ``metrics.jsonl``, ``tensorboard/``,
``curves.png``, ``samples.png``, ``datasplit.csv``, ``sample_input.npy`` (a
real normalised patch, for the exporter's check) and finally ``model.json``.

Determinism: the batch of iteration ``i`` comes from a generator seeded with
``(seed, i)`` and the model from ``torch.manual_seed(seed)``, so ``--resume``
from ``latest.pt`` continues exactly where an uninterrupted run would be.
"""

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from csc_common import nets, views
from csc_common.errors import InputError
from csc_common.fsutil import atomic_write_text
from csc_common.log import progress_bar
from csc_common.manifest import now, relpath
from csc_common.views import Artifact, CropEntry, DatasetView, Header, InputSpec, ModelView, ValidShape
from torch import nn

from csc_trainer import data
from csc_trainer.config import TrainConfig
from csc_trainer.datasplit import SplitRow, datasplit_csv, make_split, read_datasplit
from csc_trainer.io import CropSource, class_kinds, open_crop

log = logging.getLogger("csc.train")


# -- pure pieces -------------------------------------------------------------
def masked_bce(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-voxel, per-class BCE-with-logits averaged over annotated voxels only.

    ``mask`` is 0 where a class is unannotated in the crop or the voxel lies
    outside the label (UPSTREAM.md §5.4: the original's NaN targets); those
    elements contribute nothing, so their logits get exactly zero gradient.
    Unlike the original (mean over all elements, masked ones counted as 0),
    the mean is over annotated elements, so the loss scale does not depend on
    how much of a batch is unannotated.
    """
    pw = None if pos_weight is None else pos_weight.view(1, -1, *([1] * (logits.dim() - 2)))
    loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), target, reduction="none", pos_weight=pw)
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def iou_counts(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """(K, 3) true-positive, false-positive, false-negative voxel counts over annotated voxels."""
    pred = (logits > 0).float() * mask
    tgt = target * mask
    dims = [0, *range(2, logits.dim())]
    tp = (pred * tgt).sum(dims)
    fp = (pred * (1 - tgt)).sum(dims)
    fn = ((1 - pred) * tgt).sum(dims)
    return torch.stack([tp, fp, fn], 1).double().cpu().numpy()


def iou_from_counts(counts: np.ndarray) -> list[float | None]:
    """IoU per class; None where a class has neither truth nor prediction in the validation set."""
    out: list[float | None] = []
    for tp, fp, fn in counts:
        denom = tp + fp + fn
        out.append(float(tp / denom) if denom > 0 else None)
    return out


def lr_factor(schedule: str, warmup: int, total: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at step ``i`` (LambdaLR): linear warm-up then the schedule."""

    def f(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        progress = (i - warmup) / max(1, total - warmup)
        if schedule == "cosine":
            return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if schedule == "step":
            return 0.1 if progress >= 2 / 3 else 1.0
        return 1.0

    return f


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    x: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    *,
    use_amp: bool,
    max_grad_norm: float,
    pos_weight: torch.Tensor | None = None,
) -> tuple[float, float]:
    """One optimizer step (AMP float16 autocast on CUDA when ``use_amp``); returns (loss, grad norm).

    The loss is computed in float32 outside autocast; gradients are unscaled
    before clipping so ``max_grad_norm`` means the same with and without AMP.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=use_amp):
        logits = model(x)
    loss = masked_bce(logits.float(), target, mask, pos_weight)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm) if max_grad_norm > 0 else None
    scaler.step(optimizer)
    scaler.update()
    return loss.item(), float(grad_norm) if grad_norm is not None else 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)  # the config allows only cpu, cuda and cuda:N
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    return dev


# -- setup ---------------------------------------------------------------------
@dataclasses.dataclass
class Paths:
    """Where a training run writes, all beside the model manifest."""

    manifest: Path

    @property
    def dir(self) -> Path:
        return self.manifest.parent

    latest = property(lambda self: self.dir / "checkpoints" / "latest.pt")
    best = property(lambda self: self.dir / "checkpoints" / "best.pt")
    metrics = property(lambda self: self.dir / "metrics.jsonl")
    tensorboard = property(lambda self: self.dir / "tensorboard")
    curves = property(lambda self: self.dir / "curves.png")
    samples = property(lambda self: self.dir / "samples.png")
    sample_input = property(lambda self: self.dir / "sample_input.npy")


def load_split(
    cfg: TrainConfig, ds: DatasetView, entries: Sequence[CropEntry], out: Paths
) -> tuple[list[SplitRow], Path, str | None]:
    """The train/validate split: an existing --datasplit CSV, else a new one (seeded) to write beside the model.

    Returns the rows, the CSV's path and, for a new split, the CSV text: the caller
    writes it once the crops it names were opened, so bad input leaves no CSV behind.
    """
    classes = cfg.class_list
    text = None
    if cfg.datasplit and Path(cfg.datasplit).is_file():
        path = Path(cfg.datasplit)
        rows = read_datasplit(path, ds)
        allowed = {e.id for e in entries}
        rows = [r for r in rows if r.crop_id in allowed]
        log.info("datasplit: using %s (%d rows)", path, len(rows))
    else:
        path = Path(cfg.datasplit) if cfg.datasplit else out.dir / "datasplit.csv"
        rng = np.random.default_rng([cfg.seed, 7])
        rows = make_split(
            entries,
            classes,
            validate_ratio=cfg.validate_ratio,
            rng=rng,
            force_all=cfg.force_all_classes,
            scale=cfg.voxel if cfg.filter_by_scale else None,
        )
        text = datasplit_csv(rows, ds, path)
    if not any(r.split == "train" for r in rows):
        raise InputError(f"{path}: no training crops annotate any of {', '.join(classes)}")
    return rows, path, text


@dataclasses.dataclass
class RunState:
    iteration: int = 0
    best_score: float = -math.inf
    best_iteration: int = 0
    best_iou: dict[str, float | None] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


# -- the run -------------------------------------------------------------------
def train(
    cfg: TrainConfig, ds: DatasetView, entries: Sequence[CropEntry], *, args: list[str] | None = None
) -> ModelView | None:
    """Train on the checked training crops ``entries`` of ``ds`` (see `stage.run`)."""
    started = now()
    out = Paths(Path(cfg.output).resolve())
    classes, patch = cfg.class_list, cfg.patch
    checkpoint = _load_resume(out) if cfg.resume else None
    rows, split_path, split_text = load_split(cfg, ds, entries, out)
    by_id = {e.id: e for e in entries}
    train_crops = [open_crop(ds, by_id[r.crop_id], classes, cfg.voxel) for r in rows if r.split == "train"]
    val_crops = [open_crop(ds, by_id[r.crop_id], classes, cfg.voxel) for r in rows if r.split == "validate"]
    if not val_crops:
        log.warning("no validation crops in the split; validating on the training crops")
        val_crops = train_crops
    index = data.index_classes(train_crops, classes, patch)
    iso = len(set(cfg.voxel)) == 1 and len(set(patch)) == 1
    log.info(
        "training crops %s, validation crops %s; positive fraction %s",
        [c.crop_id for c in train_crops],
        [c.crop_id for c in val_crops],
        {c.name: round(c.fraction, 4) for c in index},
    )

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    use_amp = cfg.amp and device.type == "cuda"
    torch.manual_seed(cfg.seed)
    arch = nets.normalize_architecture(cfg.architecture)
    model = nets.build_model(arch).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(cfg.schedule, cfg.warmup_iterations, cfg.iterations)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    pos_weight = None
    if cfg.pos_weight:
        pw = [min(100.0, (1 - c.fraction) / c.fraction) if c.fraction > 0 else 1.0 for c in index]
        pos_weight = torch.tensor(pw, dtype=torch.float32, device=device)

    state = RunState()
    if checkpoint is not None:
        state = _resume(out, checkpoint, arch, model, optimizer, scheduler, scaler)
    else:
        out.metrics.unlink(missing_ok=True)

    val_tiles = data.validation_tiles(val_crops, patch, cfg.validation_patches)
    val_batches = [val_crops[ci].read_patch(start, patch, classes) for ci, start in val_tiles]
    if split_text is not None:  # the crops it names were opened and read: now it is worth writing
        atomic_write_text(split_path, split_text)
    tb = _tensorboard(out, cfg, state.iteration)
    metrics = out.metrics.open("a")
    bar = progress_bar(desc="train", total=cfg.iterations, unit="it", initial=state.iteration)
    t0 = time.perf_counter()
    stop_at = state.iteration + cfg.stop_after if cfg.stop_after > 0 else cfg.iterations
    try:
        for it in range(state.iteration, min(cfg.iterations, stop_at)):
            rng = np.random.default_rng([cfg.seed, it])
            raw, target, mask = data.make_batch(
                rng,
                train_crops,
                index,
                classes,
                patch,
                cfg.batch_size,
                class_balance=cfg.class_balance,
                augment_on=cfg.augment,
                dims=cfg.dims,
                transpose_z=iso,
                jitter=cfg.intensity_jitter,
            )
            x, t, m = (torch.from_numpy(a).to(device, non_blocking=True) for a in (raw, target, mask))
            loss, grad_norm = train_step(
                model,
                optimizer,
                scaler,
                x,
                t,
                m,
                use_amp=use_amp,
                max_grad_norm=cfg.max_grad_norm,
                pos_weight=pos_weight,
            )
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            step = it + 1
            rec = {"iteration": step, "loss": loss, "lr": lr, "grad_norm": grad_norm}
            metrics.write(json.dumps(rec) + "\n")
            if tb:
                tb.add_scalar("loss", rec["loss"], step)
                tb.add_scalar("lr", lr, step)
            bar.update(1)
            if step % cfg.validate_every == 0 or step == cfg.iterations:
                vrec = _validate(model, val_batches, classes, device, use_amp, pos_weight)
                vrec["iteration"] = step
                metrics.write(json.dumps(vrec) + "\n")
                metrics.flush()
                if tb:
                    tb.add_scalar("validation/loss", vrec["val_loss"], step)
                    for name, v in vrec["val_iou"].items():
                        if v is not None:
                            tb.add_scalar(f"validation/iou/{name}", v, step)
                score = vrec["val_mean_iou"] if vrec["val_mean_iou"] is not None else -vrec["val_loss"]
                log.info(
                    "iteration %d: loss %.4f, validation loss %.4f, mean IoU %s",
                    step,
                    rec["loss"],
                    vrec["val_loss"],
                    "n/a" if vrec["val_mean_iou"] is None else f"{vrec['val_mean_iou']:.3f}",
                )
                state.iteration = step
                if score > state.best_score:
                    state.best_score, state.best_iteration, state.best_iou = score, step, vrec["val_iou"]
                    _save(out.best, model, arch, optimizer, scheduler, scaler, state, t0)
                _save(out.latest, model, arch, optimizer, scheduler, scaler, state, t0)
        state.iteration = min(cfg.iterations, stop_at)
    except BaseException:
        if split_text is not None:  # a failed run keeps no split of its own; a rerun makes the same one
            split_path.unlink(missing_ok=True)
        raise
    finally:
        metrics.close()
        bar.close()
        if tb:
            tb.close()
    elapsed = time.perf_counter() - t0
    _save(out.latest, model, arch, optimizer, scheduler, scaler, state, t0)
    state.seconds += elapsed
    if state.iteration < cfg.iterations:
        log.info(
            "stopped after iteration %d of %d (--stop-after); continue with --resume", state.iteration, cfg.iterations
        )
        return None
    return _finish(
        cfg,
        ds,
        entries,
        out,
        started,
        arch,
        model,
        state,
        elapsed,
        val_batches,
        train_crops,
        val_crops,
        index,
        split_path,
        device,
        use_amp,
        args,
    )


def _load_resume(out: Paths) -> dict[str, Any]:
    """The checkpoint --resume continues from, checked before any work starts."""
    if not out.latest.is_file():
        raise InputError(f"--resume: no checkpoint at {out.latest}")
    ck = nets.load_checkpoint(out.latest)
    missing = [k for k in ("optimizer", "scheduler", "iteration") if k not in ck]
    if missing:
        raise InputError(f"{out.latest}: cannot resume, the checkpoint lacks {', '.join(missing)}")
    return ck


def _resume(
    out: Paths, ck: dict[str, Any], arch: dict[str, Any], model: nn.Module, optimizer: Any, scheduler: Any, scaler: Any
) -> RunState:
    if nets.normalize_architecture(ck["architecture"]) != arch:
        raise InputError(
            f"{out.latest}: checkpoint architecture {ck['architecture']} differs from the "
            f"configured {arch}; resume with the same settings"
        )
    try:
        model.load_state_dict(ck["state_dict"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        if "scaler" in ck:
            scaler.load_state_dict(ck["scaler"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise InputError(f"{out.latest}: cannot resume from this checkpoint ({str(exc).splitlines()[0]})") from None
    extra = ck.get("extra", {})
    st = RunState(
        iteration=int(ck["iteration"]),
        best_score=float(extra.get("best_score", -math.inf)),
        best_iteration=int(extra.get("best_iteration", 0)),
        best_iou=extra.get("best_iou", {}),
        seconds=float(extra.get("seconds", 0.0)),
    )
    # Metrics past the checkpoint belong to the interrupted run's lost tail.
    if out.metrics.is_file():
        keep = [
            ln
            for ln in out.metrics.read_text().splitlines()
            if ln.strip() and json.loads(ln).get("iteration", 0) <= st.iteration
        ]
        atomic_write_text(out.metrics, "".join(ln + "\n" for ln in keep))
    log.info("resuming from %s at iteration %d", out.latest, st.iteration)
    return st


def _save(
    path: Path,
    model: nn.Module,
    arch: dict[str, Any],
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    state: RunState,
    t0: float,
) -> None:
    extra = {
        "best_score": state.best_score,
        "best_iteration": state.best_iteration,
        "best_iou": state.best_iou,
        "seconds": state.seconds + time.perf_counter() - t0,
    }
    nets.save_checkpoint(
        path,
        model,
        arch,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        iteration=state.iteration,
        extra=extra,
    )


def _tensorboard(out: Paths, cfg: TrainConfig, start: int) -> Any:
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        log.warning("tensorboard is not installed; no TensorBoard events written")
        return None
    return SummaryWriter(str(out.tensorboard), purge_step=start if start else None)


@torch.no_grad()
def predict_batches(
    model: nn.Module,
    batches: Sequence[tuple[np.ndarray, ...]],
    device: torch.device,
    use_amp: bool,
    batch_size: int = 4,
) -> list[torch.Tensor]:
    """Logits (CPU, float32) of each (raw, target, mask) patch, in eval mode."""
    model.eval()
    outs = []
    for i in range(0, len(batches), batch_size):
        x = torch.from_numpy(np.stack([b[0][None] for b in batches[i : i + batch_size]])).to(device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            outs.extend(model(x).float().cpu())
    return outs


def _validate(
    model: nn.Module,
    batches: Sequence[tuple[np.ndarray, ...]],
    classes: Sequence[str],
    device: torch.device,
    use_amp: bool,
    pos_weight: torch.Tensor | None,
) -> dict[str, Any]:
    counts = np.zeros((len(classes), 3))
    losses = []
    pw = None if pos_weight is None else pos_weight.cpu()
    for (_, target, mask), logits in zip(batches, predict_batches(model, batches, device, use_amp), strict=True):
        t, m = torch.from_numpy(target)[None], torch.from_numpy(mask)[None]
        counts += iou_counts(logits[None], t, m)
        losses.append(float(masked_bce(logits[None], t, m, pw)))
    ious = iou_from_counts(counts)
    finite = [v for v in ious if v is not None]
    return {
        "val_loss": float(np.mean(losses)) if losses else 0.0,
        "val_iou": dict(zip(classes, ious, strict=True)),
        "val_mean_iou": float(np.mean(finite)) if finite else None,
    }


def _finish(
    cfg: TrainConfig,
    ds: DatasetView,
    entries: Sequence[CropEntry],
    out: Paths,
    started: str,
    arch: dict[str, Any],
    model: nn.Module,
    state: RunState,
    elapsed: float,
    val_batches: list,
    train_crops: Sequence[CropSource],
    val_crops: Sequence[CropSource],
    index: Sequence[data.ClassIndex],
    split_path: Path,
    device: torch.device,
    use_amp: bool,
    args: list[str] | None,
) -> ModelView:
    from csc_trainer import report

    classes = cfg.class_list
    best = out.best if out.best.is_file() else out.latest
    best_model, _ = nets.load_model(best)
    np.save(out.sample_input, val_batches[0][0][None, None].astype(np.float32))
    records = [json.loads(ln) for ln in out.metrics.read_text().splitlines() if ln.strip()]
    plots: dict[str, Any] = {}
    if cfg.plots:
        report.plot_curves(records, classes, out.curves)
        preds = predict_batches(best_model.to(device), val_batches[:4], device, use_amp)
        report.plot_samples(val_batches[:4], [p.numpy() for p in preds], classes, out.samples)
        plots = {
            name: Artifact.of(p).to_json(out.manifest) for name, p in (("curves", out.curves), ("samples", out.samples))
        }
    losses = [r["loss"] for r in records if "loss" in r]
    done_iters = cfg.iterations
    params = sum(p.numel() for p in model.parameters())
    m = 2 ** (arch["depth"] - 1)
    multiple = (1 if arch["dims"] == 2 else m, m, m)
    training = {
        "iterations": done_iters,
        "seconds": round(state.seconds, 2),
        "iterations_per_second": round(done_iters / max(state.seconds, 1e-9), 3),
        "final_loss": float(np.mean(losses[-10:])) if losses else None,
        "best_iteration": state.best_iteration,
        "best_validation_iou": state.best_iou,
        "best_validation_mean_iou": state.best_score if state.best_score > -math.inf else None,
        "device": str(device),
        "amp": use_amp,
        "train_crops": [c.crop_id for c in train_crops],
        "validate_crops": [c.crop_id for c in val_crops],
        "positive_fraction": {c.name: c.fraction for c in index},
        "datasplit": relpath(split_path, out.manifest),
        "metrics": relpath(out.metrics, out.manifest),
        "tensorboard": relpath(out.tensorboard, out.manifest) if cfg.tensorboard else None,
        **({"plots": plots} if plots else {}),
        "config": dataclasses.asdict(cfg),
        "torch": torch.__version__,
    }
    view = ModelView(
        header=Header.new("trainer", started, inputs=[ds.ref(out.manifest)], args=args),
        details={"output": "logits", "training": training},
        name=cfg.name or out.dir.name,
        architecture={**arch, "parameters": int(params)},
        input=InputSpec(1, cfg.patch, cfg.voxel, train_crops[0].em_scale, 0.0),
        classes=tuple(classes),
        class_kinds=class_kinds(classes, entries),
        checkpoint=Artifact.of(best),
        valid_shape=ValidShape(multiple, multiple),
        latest_checkpoint=Artifact.of(out.latest),
        sample_input=Artifact.of(out.sample_input),
    )
    written = views.save(view, out.manifest)
    ious = ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in state.best_iou.items())
    log.info(
        "trained %s: %d iterations in %.1f s (%.2f it/s) on %s; best iteration %d, validation IoU: %s",
        view.name,
        done_iters,
        state.seconds,
        training["iterations_per_second"],
        device,
        state.best_iteration,
        ious,
    )
    log.info("wrote %s (checkpoint %s)", out.manifest, best.name)
    return written
