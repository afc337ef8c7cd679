"""`csc --help` lists the original verbs, and every stage's console script answers --help."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SCRIPTS = ["csc-fetch", "csc-train", "csc-export", "csc-predict", "csc-process", "csc-pack", "csc-evaluate", "csc-view"]
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
]


def test_umbrella_lists_the_original_verbs():
    out = subprocess.run([BIN / "csc", "--help"], capture_output=True, text=True, check=True).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    assert set(VERBS) <= listed


@pytest.mark.parametrize("script", SCRIPTS)
def test_stage_help(script):
    run = subprocess.run([BIN / script, "--help"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage:") and "--help" in run.stdout


@pytest.mark.parametrize("verb", ["train", "evaluate"])
def test_umbrella_dispatches(verb):
    run = subprocess.run([BIN / "csc", verb, "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "usage:" in run.stdout
