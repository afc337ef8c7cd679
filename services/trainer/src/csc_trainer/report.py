"""PNG reports written next to the checkpoint: loss/IoU curves and sample slices.

matplotlib with the Agg backend (no display needed); imported lazily so the
training loop never pays for it.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from csc_common.fsutil import atomic_write_bytes  # noqa: E402

_COLORS = np.array(
    [
        (0.90, 0.10, 0.10),
        (0.10, 0.70, 0.10),
        (0.20, 0.40, 1.00),
        (1.00, 0.80, 0.00),
        (0.80, 0.20, 0.90),
        (0.00, 0.80, 0.80),
        (1.00, 0.50, 0.00),
        (0.50, 0.30, 0.10),
    ]
)


def _save(fig: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(records: Sequence[dict[str, Any]], classes: Sequence[str], path: Path) -> None:
    """Training loss (raw and smoothed) and validation loss / IoU per class against iterations."""
    train = [(r["iteration"], r["loss"]) for r in records if "loss" in r]
    val = [r for r in records if "val_iou" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        it, loss = np.array(train).T
        ax1.plot(it, loss, color="0.7", lw=0.8, label="train loss")
        w = max(1, len(loss) // 20)
        if len(loss) >= w:
            smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
            ax1.plot(it[w - 1 :], smooth, color="C0", label=f"train loss (mean of {w})")
    if val:
        ax1.plot([r["iteration"] for r in val], [r["val_loss"] for r in val], "o-", color="C3", label="validation loss")
        for k, name in enumerate(classes):
            pts = [(r["iteration"], r["val_iou"].get(name)) for r in val if r["val_iou"].get(name) is not None]
            if pts:
                x, y = np.array(pts).T
                ax2.plot(x, y, "o-", color=_COLORS[k % len(_COLORS)], label=name)
    ax1.set(xlabel="iteration", ylabel="masked BCE", title="loss")
    ax1.set_yscale("log")
    ax1.legend(fontsize=8)
    ax2.set(xlabel="iteration", ylabel="IoU", title="validation IoU per class", ylim=(0, 1))
    if val:
        ax2.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    _save(fig, path)


def _composite(labels: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(K,Y,X) binary -> RGB; unannotated voxels (mask 0 for all classes) grey."""
    rgb = np.zeros((*labels.shape[1:], 3))
    for k in range(labels.shape[0]):
        rgb = np.where(labels[k][..., None] > 0, 0.5 * rgb + 0.5 * _COLORS[k % len(_COLORS)] * 2, rgb)
    rgb = np.clip(rgb, 0, 1)
    if mask is not None:
        unknown = mask.max(0) == 0
        rgb[unknown] = 0.35
    return rgb


def plot_samples(
    batches: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    logits: Sequence[np.ndarray],
    classes: Sequence[str],
    path: Path,
) -> None:
    """Rows of EM | truth | prediction (middle z slice) for a few validation patches."""
    n = len(batches)
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n), squeeze=False)
    for i, ((raw, target, mask), out) in enumerate(zip(batches, logits, strict=True)):
        z = raw.shape[0] // 2
        axes[i, 0].imshow(raw[z], cmap="gray", vmin=0, vmax=1)
        axes[i, 1].imshow(_composite(target[:, z], mask[:, z]))
        axes[i, 2].imshow(_composite((out[:, z] > 0).astype(np.uint8), None))
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, title in zip(axes[0], ("EM", "truth (grey: unannotated)", "prediction"), strict=True):
        ax.set_title(title)
    handles = [plt.Line2D([], [], color=_COLORS[k % len(_COLORS)], lw=6, label=c) for k, c in enumerate(classes)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(classes), 8), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, path)
