from dataclasses import dataclass, field
from typing import Literal

import pytest
from csc_common.cli import parse_config, run_main
from csc_common.errors import InputError
from csc_common.umbrella import main as csc_main


@dataclass(frozen=True)
class Cfg:
    """A test config."""

    name: str = field(default="a", metadata={"help": "a name"})
    rate: float = 1e-3
    mode: Literal["fast", "slow"] = "fast"
    sizes: list[int] = field(default_factory=lambda: [1, 2], metadata={"nargs": "+"})
    flag: bool = False


def test_defaults_file_and_flags_override(tmp_path):
    assert parse_config(Cfg, [], "t") == Cfg()
    f = tmp_path / "c.yaml"
    f.write_text("name: b\nrate: 0.5\nsizes: [3, 4, 5]\n")
    cfg = parse_config(Cfg, ["--config", str(f), "--rate", "0.25", "--flag"], "t")
    assert cfg == Cfg(name="b", rate=0.25, sizes=[3, 4, 5], flag=True)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("nme: b\n")
    with pytest.raises(InputError, match="unknown config field\\(s\\) nme"):
        parse_config(Cfg, ["--config", str(bad)], "t")
    with pytest.raises(InputError, match="cannot read config file"):
        parse_config(Cfg, ["--config", str(tmp_path / "missing.yaml")], "t")
    broken = tmp_path / "c.json"
    broken.write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        parse_config(Cfg, ["--config", str(broken)], "t")


def test_run_main_exit_codes(capsys):
    def bad():
        raise InputError("x.json: /kind: wrong")

    assert run_main("csc-x", bad) == 2
    assert capsys.readouterr().err == "csc-x: error: x.json: /kind: wrong\n"

    def boom():
        raise RuntimeError("disk on fire")

    assert run_main("csc-x", boom) == 1
    assert "csc-x: failed: RuntimeError: disk on fire" in capsys.readouterr().err
    assert run_main("csc-x", lambda: parse_config(Cfg, ["--mode", "medium"], "t")) == 2


def test_umbrella_lists_verbs(capsys):
    assert csc_main([]) == 0
    out = capsys.readouterr().out
    for verb in ("fetch-data", "train", "predict", "process", "pack-results", "evaluate", "visualize"):
        assert verb in out
    assert csc_main(["nope"]) == 2
