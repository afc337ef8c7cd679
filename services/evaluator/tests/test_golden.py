"""Committed golden case: pins the on-disk formats we read (zip, zarr v2, OME-NGFF, CSV) and write (JSON)."""

import json
import math
from pathlib import Path

import pytest
from csc_evaluator.cli import main

CASE = Path(__file__).resolve().parent / "golden" / "case1"


def _same(got, want, where="$"):
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{where}: keys {list(got)} != {list(want)}"
        for k in want:
            if k != "git_version":
                _same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert math.isclose(got, want, rel_tol=0, abs_tol=1e-9), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


# "challenge" = documented class discovery (the truth has class groups and *_mask arrays) with
# the official Hausdorff remap.
@pytest.mark.parametrize(
    ("rules", "expected"), [("documented", "documented"), ("official", "official"), ("challenge", "challenge")]
)
def test_golden_case(tmp_path, rules, expected):
    out = tmp_path / "result.json"
    rc = main(
        [
            str(CASE / "submission.zip"),
            "--truth",
            str(CASE / "truth.zarr"),
            "--output",
            str(out),
            "--rules",
            rules,
            "-q",
        ]
    )
    assert rc == 0
    for name in ("result.json", "result_extended.json"):
        _same(json.loads((tmp_path / name).read_text()), json.loads((CASE / f"expected_{expected}" / name).read_text()))
    assert not (CASE / "submission.zarr").exists()  # nothing extracted next to the committed zip
