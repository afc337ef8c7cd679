"""`csc --help` lists the original verbs, and every stage's console script answers --help."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SCRIPTS = [
    "csc-fetch", "csc-train", "csc-export", "csc-predict", "csc-process", "csc-pack", "csc-evaluate", "csc-batch-eval",
    "csc-view",
]  # fmt: skip
VERBS = [
    "fetch-data",
    "train",
    "make-datasplit",
    "export",
    "predict",
    "process",
    "pack-results",
    "evaluate",
    "visualize",
    "get-counts",
    "batch-eval",
    "speedtest",
]
# the original's 11 verbs (UPSTREAM.md §1); `export` is ours
ORIGINAL = {
    "fetch-data", "train", "predict", "process", "evaluate", "make-datasplit", "get-counts", "visualize",
    "pack-results", "speedtest", "batch-eval",
}  # fmt: skip


def test_umbrella_lists_the_original_verbs():
    out = subprocess.run([BIN / "csc", "--help"], capture_output=True, text=True, check=True).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    assert set(VERBS) <= listed and listed >= ORIGINAL


@pytest.mark.parametrize("verb", ["get-counts", "batch-eval", "speedtest"])
def test_new_verbs_help_and_bad_input(verb):
    run = subprocess.run([BIN / "csc", verb, "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith(f"usage: csc {verb}"), run.stderr
    bad = subprocess.run([BIN / "csc", verb, "--no-such-flag"], capture_output=True, text=True)
    err = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(err) == 1 and "--no-such-flag" in err[0], bad.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_stage_help(script):
    run = subprocess.run([BIN / script, "--help"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage:") and "--help" in run.stdout


@pytest.mark.parametrize("verb", ["train", "evaluate"])
def test_umbrella_dispatches(verb):
    run = subprocess.run([BIN / "csc", verb, "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "usage:" in run.stdout
