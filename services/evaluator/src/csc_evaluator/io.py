"""Outputs of the evaluator: result JSONs, the scores manifest, and the per-class table."""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from csc_common.fsutil import atomic_write_text


def extended_path(result: Path) -> Path:
    """``result.json`` -> ``result_extended.json`` (suffix kept, as upstream)."""
    return result.with_name(f"{result.stem}_extended{result.suffix}")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=4, allow_nan=False) + "\n")


def _fmt(v: Any) -> str:
    return "   null" if v is None else f"{v:7.4f}"


def table(extended: Mapping[str, Any], instance_classes: set[str], *, empty: Mapping[str, Any] | None = None) -> str:
    """A readable per-class table plus the overall scores (and the all-empty baseline if given)."""
    per_crop = {k: v for k, v in extended.items() if k.startswith("crop") and isinstance(v, dict)}
    n_crops: dict[str, int] = {}
    missing: dict[str, int] = {}
    for labels in per_crop.values():
        for label, rec in labels.items():
            n_crops[label] = n_crops.get(label, 0) + 1
            missing[label] = missing.get(label, 0) + int(bool(rec.get("is_missing")))
    lines = [
        f"{'class':<12} {'kind':<8} {'crops':>5} {'miss':>4} {'TP':>10} {'FP':>10} {'FN':>10} "
        f"{'IoU/F1':>7} {'NH':>7} {'score':>7}"
    ]
    for label, s in extended.get("label_scores", {}).items():
        inst = label in instance_classes
        main = s.get("f1") if inst else s.get("iou")
        nh = s.get("normalized_hausdorff_distance") if inst else None
        sc = s.get("combined_score") if inst else s.get("iou")
        lines.append(
            f"{label:<12} {'instance' if inst else 'semantic':<8} {n_crops.get(label, 0):>5} {missing.get(label, 0):>4} "
            f"{s.get('tp', 0):>10} {s.get('fp', 0):>10} {s.get('fn', 0):>10} {_fmt(main)} "
            f"{(_fmt(nh) if inst else '      -')} {_fmt(sc)}"
        )
    lines.append(
        f"overall_instance_score {_fmt(extended.get('overall_instance_score'))}   "
        f"overall_semantic_score {_fmt(extended.get('overall_semantic_score'))}   "
        f"overall_score {_fmt(extended.get('overall_score'))}   "
        f"({extended.get('num_evals_done')} of {extended.get('total_evals')} test rows scored)"
    )
    if empty is not None:
        lines.append(
            f"all-empty submission: overall_score {_fmt(empty.get('overall_score'))}   "
            f"this submission: overall_score {_fmt(extended.get('overall_score'))}"
        )
    return "\n".join(lines)
