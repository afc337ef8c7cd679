"""Pool per-crop counts into per-class and overall scores (UPSTREAM.md §9.3), and the two JSON views.

Per class, TP/FP/FN (and for instance classes the normalised-Hausdorff sum
and count) are summed over crops; instance F1 = 2TP/(2TP+FP+FN), NH = mean of
the pooled entries, combined = sqrt(F1 * NH), all three 1 when a class has no
counts and no entries anywhere; semantic IoU = TP/(TP+FP+FN), 1 when the
denominator is 0. Overall instance / semantic scores are plain means over
classes; overall = their geometric mean.
"""

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

AGGREGATE_KEYS = (
    "label_scores",
    "overall_instance_score",
    "overall_semantic_score",
    "overall_score",
    "total_evals",
    "num_evals_done",
    "git_version",
)


def combine_scores(
    per_crop: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    instance_classes: Iterable[str],
    include_missing: bool = True,
) -> dict[str, Any]:
    """Per-class and overall scores from ``{crop: {label: record}}`` (records as `scoring` returns them)."""
    inst = set(instance_classes)
    counts: dict[str, list[int]] = {}
    haus: dict[str, list[float]] = {}
    for crop_scores in per_crop.values():
        for label, rec in crop_scores.items():
            if rec["is_missing"] and not include_missing:
                continue
            c = counts.setdefault(label, [0, 0, 0])
            c[0] += int(rec["tp"])
            c[1] += int(rec["fp"])
            c[2] += int(rec["fn"])
            if label in inst:
                h = haus.setdefault(label, [0.0, 0])
                h[0] += float(rec.get("hausdorff_norm_sum", 0.0))
                h[1] += int(rec.get("n_hausdorff", 0))
    label_scores: dict[str, dict[str, Any]] = {}
    inst_sum = sem_sum = 0.0
    n_inst = n_sem = 0
    for label, (tp, fp, fn) in counts.items():
        if label in inst:
            denom = 2 * tp + fp + fn
            h_sum, h_count = haus[label]
            if denom == 0 and h_count == 0:
                f1 = nh = combined = 1.0
            else:
                f1 = (2 * tp / denom) if denom > 0 else 0.0
                nh = h_sum / h_count if h_count > 0 else 0.0
                combined = (f1 * nh) ** 0.5
            entry: dict[str, Any] = {"f1": f1, "normalized_hausdorff_distance": nh, "combined_score": combined}
            inst_sum += combined
            n_inst += 1
        else:
            denom = tp + fp + fn
            iou = (tp / denom) if denom > 0 else 1.0
            entry = {"iou": iou}
            sem_sum += iou
            n_sem += 1
        entry.update(tp=tp, fp=fp, fn=fn)
        label_scores[label] = entry
    overall_inst = inst_sum / n_inst if n_inst else 0.0
    overall_sem = sem_sum / n_sem if n_sem else 0.0
    return {
        "label_scores": label_scores,
        "overall_instance_score": overall_inst,
        "overall_semantic_score": overall_sem,
        "overall_score": (overall_inst * overall_sem) ** 0.5,
    }


def sanitize(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars/arrays -> Python types."""
    if isinstance(value, Mapping):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [sanitize(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def extended_view(
    per_crop: Mapping[str, Mapping[str, Mapping[str, Any]]],
    combined: Mapping[str, Any],
    *,
    total_evals: int,
    git_version: str,
) -> dict[str, Any]:
    """Everything: per-crop records first, then the aggregate keys (the official `_extended` file)."""
    out: dict[str, Any] = {crop: dict(labels) for crop, labels in per_crop.items()}
    out.update(combined)
    out["total_evals"] = total_evals
    out["num_evals_done"] = sum(len(v) for k, v in per_crop.items() if "crop" in k)
    out["git_version"] = git_version
    return sanitize(out)


def public_view(extended: Mapping[str, Any], submitted_labels: Iterable[str]) -> dict[str, Any]:
    """The participant-facing result.json: aggregate keys only, label scores of submitted classes, no counts."""
    keep = set(submitted_labels)
    out = {k: extended[k] for k in AGGREGATE_KEYS if k in extended}
    out["label_scores"] = {
        label: {k: v for k, v in s.items() if k not in ("tp", "fp", "fn")}
        for label, s in extended.get("label_scores", {}).items()
        if label in keep
    }
    return sanitize(out)


def submitted_labels(per_crop: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """Classes with at least one submitted (not missing) crop, in first-seen order."""
    seen: dict[str, None] = {}
    for labels in per_crop.values():
        for label, rec in labels.items():
            if not rec["is_missing"]:
                seen.setdefault(label, None)
    return list(seen)
