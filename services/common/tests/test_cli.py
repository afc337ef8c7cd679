from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from csc_common.cli import parse_config, refuse_ignored, run_main
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


@dataclass(frozen=True, kw_only=True)
class Typed:
    """Fields of every supported kind, one required, some with ranges."""

    dataset: str = field(metadata={"help": "the dataset manifest"})
    iterations: int = field(default=10, metadata={"min": 1})
    rate: float = field(default=0.5, metadata={"gt": 0, "max": 1})
    tta: bool = False
    strict: bool = True
    rules: Literal["challenge", "official"] = "challenge"
    dims: Literal[2, 3] = 3
    voxel_size: str = "8,8,8"


def _file(tmp_path, text, name="c.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return str(f)


def test_file_values_are_typed_like_flags(tmp_path):
    cfg = parse_config(
        Typed,
        [
            "--config",
            _file(
                tmp_path, "dataset: d.json\niterations: '7'\ntta: 'yes'\nstrict: no\ndims: 2\nvoxel_size: [4, 4, 8]\n"
            ),
        ],
        "t",
    )
    assert (cfg.iterations, cfg.tta, cfg.strict, cfg.dims, cfg.voxel_size) == (7, True, False, 2, "4,4,8")
    assert parse_config(Typed, ["--dataset", "x", "--config", _file(tmp_path, "tta: 'false'\n")], "t").tta is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("iterations: many\n", "c.yaml: iterations: 'many' is not an integer"),
        ("iterations: 2.5\n", "c.yaml: iterations: 2.5 is not an integer"),
        ("iterations: 0\n", "c.yaml: iterations: must be >= 1, got 0"),
        ("tta: maybe\n", "c.yaml: tta: 'maybe' is not a boolean"),
        ("rules: bogus\n", "c.yaml: rules: 'bogus' is not one of challenge, official"),
        ("dims: 4\n", "c.yaml: dims: 4 is not one of 2, 3"),
        ("rate: 0\n", "c.yaml: rate: must be > 0, got 0.0"),
        ("rate: .nan\n", "c.yaml: rate: nan is not a finite number"),
        ("dataset: [1, true]\n", "c.yaml: dataset: [1, true] is not a string"),
    ],
)
def test_bad_file_values_name_file_field_and_value(tmp_path, text, message):
    with pytest.raises(InputError) as err:
        parse_config(Typed, ["--dataset", "d", "--config", _file(tmp_path, text)], "t")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_required_and_flag_ranges_and_usage_errors():
    with pytest.raises(InputError, match=r"^--dataset is required \(the dataset manifest\)$"):
        parse_config(Typed, [], "t")
    with pytest.raises(InputError, match="^--iterations: must be >= 1, got 0$"):
        parse_config(Typed, ["--dataset", "d", "--iterations", "0"], "t")
    with pytest.raises(InputError, match=r"^--iterations: invalid int value: 'abc' \(see t --help\)$"):
        parse_config(Typed, ["--dataset", "d", "--iterations", "abc"], "t")


@dataclass(frozen=True, kw_only=True)
class Mapped:
    """A field that is a file path on the command line or the mapping itself in a config file; an exclusive range."""

    steps: str | dict[str, Any] | None = field(default=None, metadata={"type": str})
    overlap: float = field(default=0.25, metadata={"min": 0, "lt": 1})


def test_union_and_mapping_fields_and_exclusive_upper_bound(tmp_path):
    assert parse_config(Mapped, ["--steps", "s.yaml"], "t").steps == "s.yaml"
    assert parse_config(Mapped, ["--config", _file(tmp_path, "steps: {a: [1]}\n")], "t").steps == {"a": [1]}
    assert parse_config(Mapped, ["--config", _file(tmp_path, "steps: null\n")], "t").steps is None
    with pytest.raises(InputError, match=r"c.yaml: steps: True is not str or a mapping$"):
        parse_config(Mapped, ["--config", _file(tmp_path, "steps: true\n")], "t")
    with pytest.raises(InputError, match=r"c.yaml: overlap: must be < 1, got 1.0$"):
        parse_config(Mapped, ["--config", _file(tmp_path, "overlap: 1\n")], "t")
    assert parse_config(Mapped, ["--overlap", "0.99"], "t").overlap == 0.99


def test_exclusive_upper_bound_and_long_flag_names():
    @dataclass(frozen=True, kw_only=True)
    class Bounded:
        ratio: float = field(default=0.5, metadata={"min": 0, "lt": 1})
        pad: int = field(default=0, metadata={"args": ["-p", "--pad"], "min": 0})

    assert parse_config(Bounded, ["--ratio", "0.99"], "t").ratio == 0.99
    with pytest.raises(InputError, match=r"^--ratio: must be < 1, got 1.0$"):
        parse_config(Bounded, ["--ratio", "1"], "t")
    with pytest.raises(InputError, match=r"^--pad: must be >= 0, got -1$"):
        parse_config(Bounded, ["-p", "-1"], "t")


def test_required_field_may_come_from_the_file(tmp_path):
    assert parse_config(Typed, ["--config", _file(tmp_path, '{"dataset": "f"}', "c.json")], "t").dataset == "f"


def test_subcommand_takes_the_same_fields():
    from csc_common.cli import parse_command

    assert parse_command(Typed, ["--dataset", "a"], "t", {"finalize": "write the manifest"}) == (
        None,
        Typed(dataset="a"),
    )
    cmd, cfg = parse_command(Typed, ["finalize", "--dataset", "b", "--tta"], "t", {"finalize": "write the manifest"})
    assert (cmd, cfg.dataset, cfg.tta) == ("finalize", "b", True)


def test_list_vector_and_crop_id_parsers():
    from csc_common.cli import parse_crop_ids, parse_floats, parse_list, parse_shape3, parse_vec3

    assert parse_list(" a, ,b ") == ["a", "b"] and parse_list(None) == [] and parse_list(["x", 3]) == ["x", "3"]
    assert parse_vec3("8", "--voxel-size") == (8.0, 8.0, 8.0) and parse_vec3([1, 2, 3], "v") == (1.0, 2.0, 3.0)
    assert parse_shape3("1,64,64", "--patch") == (1, 64, 64) and parse_shape3(0, "--context", minimum=0) == (0, 0, 0)
    assert parse_crop_ids("557, crop558,557") == [557, 558]
    assert parse_floats("8,16", "--resolution", positive=True) == [8.0, 16.0]
    for bad in (
        lambda: parse_vec3("1,2", "v"),
        lambda: parse_vec3("0", "v"),
        lambda: parse_shape3("1.5", "s"),
        lambda: parse_crop_ids("abc"),
        lambda: parse_floats("8,x", "r"),
    ):
        with pytest.raises(InputError):
            bad()


@dataclass(frozen=True, kw_only=True)
class Modes:
    """A mode and options that only some modes use."""

    region: str = ""
    crops: str = "test"
    halo: int = 16
    zip: bool = False
    em: bool = True
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.region:
            refuse_ignored(self, ["crops", "halo", "zip", "em", "names"], "with --region")


def test_refuse_ignored_names_every_flag_set_away_from_its_default():
    assert parse_config(Modes, ["--region", "r", "--crops", "test", "--halo", "16"], "t").region == "r"
    assert parse_config(Modes, ["--crops", "901", "--halo", "3"], "t").crops == "901"  # no region: all used
    with pytest.raises(InputError) as err:
        parse_config(Modes, ["--region", "r", "--crops", "901"], "t")
    assert str(err.value) == "--crops '901' would be ignored with --region; drop it"
    with pytest.raises(InputError) as err:
        Modes(region="r", halo=3, zip=True, em=False, names=["a"])
    assert (
        str(err.value) == '--halo 3 and --zip and --no-em and --names ["a"] would be ignored with --region; drop them'
    )


def test_sigterm_runs_cleanup_and_exits_143(capsys):
    import os
    import signal
    import time

    cleaned = []

    def body():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises in here
            raise AssertionError("SIGTERM did not interrupt the body")
        finally:
            cleaned.append(True)

    before = signal.getsignal(signal.SIGTERM)
    assert run_main("csc-x", body) == 143
    assert cleaned == [True] and capsys.readouterr().err == "csc-x: terminated (SIGTERM)\n"
    assert signal.getsignal(signal.SIGTERM) is before  # restored for whoever called main
