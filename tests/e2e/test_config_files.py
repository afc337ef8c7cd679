"""Values from a ``--config`` file are typed and checked like flags, in every stage, before any work.

Each case goes through the stage's real ``main([...])``. Where a value must
come out as a typed field (``tta: "false"`` is False), the stage's ``run`` is
replaced by a recorder, so the test sees the config exactly as the stage would.
Where a value must be refused, the other inputs do not even exist: the
message is about the config file, so nothing was read or written first.
"""

import importlib
from pathlib import Path
from typing import Any

import pytest

# stage cli module, the arguments every run needs (files that need not exist)
STAGES = {
    "fetcher": ("csc_fetcher.cli", ["--dest", "{t}/data"]),
    "trainer": ("csc_trainer.cli", ["--dataset", "{t}/dataset.json", "--output", "{t}/m/model.json"]),
    "exporter": ("csc_exporter.cli", ["--model", "{t}/model.json", "--output", "{t}/m/onnx-model.json"]),
    "predictor": (
        "csc_predictor.cli",
        ["--model", "{t}/onnx.json", "--dataset", "{t}/dataset.json", "--output", "{t}/p/predictions.json"],
    ),
    "postprocessor": ("csc_postprocessor.cli", ["--predictions", "{t}/predictions.json", "--output", "{t}/o.json"]),
    "packer": ("csc_packer.cli", ["--processed", "{t}/processed.json", "--output", "{t}/s/submission.json"]),
    "evaluator": ("csc_evaluator.cli", ["{t}/submission.zip", "--truth", "{t}/truth.zarr"]),
    "viewer": ("csc_viewer.cli", ["--data", "{t}/data", "--no-wait"]),
}


def _main(stage: str, tmp_path: Path, config: str, *extra: str) -> int:
    module, args = STAGES[stage]
    cfg = tmp_path / "conf" / "c.yaml"
    cfg.parent.mkdir(exist_ok=True)
    cfg.write_text(config)
    argv = [a.format(t=tmp_path) for a in args]
    return int(importlib.import_module(module).main([*argv, *extra, "--config", str(cfg)]))


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _untouched(tmp_path: Path) -> None:
    assert [p.name for p in tmp_path.iterdir()] == ["conf"], "the stage wrote something before refusing its config"


@pytest.mark.parametrize(
    ("stage", "config", "expected"),
    [
        ("trainer", 'iterations: "many"\n', "c.yaml: iterations: 'many' is not an integer"),
        ("evaluator", "rules: bogus\n", "c.yaml: rules: 'bogus' is not one of challenge, documented, official"),
        ("viewer", "layout: bogus\n", "c.yaml: layout: 'bogus' is not one of 4panel, 4panel-alt, xy, xz, yz, 3d"),
        ("predictor", "dtype: float64\n", "c.yaml: dtype: 'float64' is not one of uint8, float16, float32"),
        ("predictor", "tta: perhaps\n", "c.yaml: tta: 'perhaps' is not a boolean (true/false, yes/no, 1/0)"),
        ("packer", "strict: 2\n", "c.yaml: strict: 2 is not a boolean"),
        ("fetcher", "retries: 0\n", "c.yaml: retries: must be >= 1, got 0"),
        ("exporter", "opset: 16\n", "c.yaml: opset: must be >= 17, got 16"),
        ("postprocessor", "blockwise: sometimes\n", "c.yaml: blockwise: 'sometimes' is not one of auto, always, never"),
        ("trainer", "learning_rate: fast\n", "c.yaml: learning_rate: 'fast' is not a number"),
    ],
)
def test_bad_file_value_is_one_line_naming_file_field_value_and_expectation_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stage: str, config: str, expected: str
) -> None:
    assert _main(stage, tmp_path, config) == 2
    line = _one_line(capsys)
    assert expected in line and str(tmp_path / "conf" / "c.yaml") in line, line
    _untouched(tmp_path)


def _record(monkeypatch: pytest.MonkeyPatch, module: str, name: str = "run") -> list[Any]:
    """Replace ``module.name`` (the stage's run, as its cli calls it) by a recorder of the config."""
    seen: list[Any] = []
    monkeypatch.setattr(importlib.import_module(module), name, lambda cfg, **_: seen.append(cfg))
    return seen


@pytest.mark.parametrize(
    ("stage", "field", "text", "value"),
    [
        ("predictor", "tta", '"false"', False),
        ("predictor", "tta", '"yes"', True),
        ("packer", "strict", '"no"', False),
        ("packer", "strict", "no", False),  # YAML 1.1 reads a bare no as False already
        ("packer", "strict", '"on"', True),
        ("evaluator", "compare_empty", '"no"', False),
        ("evaluator", "compare_empty", '"true"', True),
        ("trainer", "augment", '"0"', False),
        ("fetcher", "zip", '"false"', False),
    ],
)
def test_boolean_file_values_mean_what_they_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str, field: str, text: str, value: bool
) -> None:
    module = STAGES[stage][0]
    if stage == "trainer":  # csc-train imports its run lazily, from the stage module
        module = "csc_trainer.stage"
    elif stage == "fetcher":
        module = "csc_fetcher.fetch"
    seen = _record(monkeypatch, module)
    assert _main(stage, tmp_path, f"{field}: {text}\n") == 0
    assert len(seen) == 1 and getattr(seen[0], field) is value


def test_flags_override_file_values_and_are_checked_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = _record(monkeypatch, "csc_predictor.cli")
    assert _main("predictor", tmp_path, 'tta: "false"\nbatch_size: 2\n', "--tta", "--batch-size", "3") == 0
    assert (seen[0].tta, seen[0].batch_size) == (True, 3)
    assert _main("predictor", tmp_path, "batch_size: 2\n", "--batch-size", "0") == 2
    assert _one_line(capsys) == "csc-predict: error: --batch-size: must be >= 1, got 0"


@pytest.mark.parametrize(
    ("stage", "config", "expected"),
    [
        ("predictor", "tile: 16,x,16\n", "--tile: expected 1 or 3 integers >= 1 (z,y,x), got '16,x,16'"),
        ("predictor", "context: [4, -1, 4]\n", "--context: expected 1 or 3 integers >= 0"),
        ("predictor", "block: 0\n", "--block: expected 1 or 3 integers >= 1"),
        ("predictor", "roi: 0,0,0:8,8\n", "--roi stop: expected 1 or 3 numbers (z,y,x)"),
        ("predictor", "shard: 3/3\n", "--shard: need 0 <= I < N, got '3/3'"),
        ("trainer", "device: gpu\n", "--device 'gpu': expected auto, cpu, cuda or cuda:N"),
        ("viewer", "kinds: gt,raw\n", "--kinds: unknown kind(s) raw"),
        ("viewer", "timeout: 0\n", "c.yaml: timeout: must be > 0, got 0.0"),
    ],
)
def test_value_syntax_once_checked_late_is_checked_with_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stage: str, config: str, expected: str
) -> None:
    assert _main(stage, tmp_path, config) == 2
    assert expected in _one_line(capsys)
    _untouched(tmp_path)
