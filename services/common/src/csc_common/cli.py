"""CLI plumbing shared by every stage: one typed config path for flags and files, exit codes.

A stage defines one frozen dataclass. ``parse_config`` builds the argparse CLI
from it (argparse-dataclass), lets ``--config FILE`` (YAML or JSON) supply the
same fields and lets flags override the file. Values from the file go through
the same conversion and checks as flags — types, ``Literal`` choices,
booleans from ``true/false/yes/no/1/0`` only, the field's range
(``metadata`` keys ``min``, ``max``, ``gt``, ``lt``) — and so do the flags' values,
before any work starts; a field without a default is required, from either
place. Errors name the file or flag, the field, the value and what was
expected, on one line (exit 2). ``run_main`` maps errors to exit codes
(0 ok, 1 failed, 2 bad input).

The parsers at the end (``parse_list``, ``parse_vec3``, ``parse_shape3``,
``parse_crop_ids``) are the one reading of comma lists, 3-vectors and crop
ids for every stage.
"""

import argparse
import dataclasses
import functools
import json
import logging
import math
import operator
import os
import signal
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml
from argparse_dataclass import _add_dataclass_options, _get_kwargs

from csc_common.errors import EXIT_BAD_INPUT, EXIT_FAILED, CscError, InputError
from csc_common.geometry import Shape3, Vec3
from csc_common.log import setup_logging

C = TypeVar("C")
log = logging.getLogger("csc")
MISSING = dataclasses.MISSING
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


class UsageError(InputError):
    """A command-line usage error (argparse's), reported as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and an exception, not ~20 lines of usage and exit."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{message.removeprefix('argument ')} (see {self.prog} --help)")


# ---------------------------------------------------------------- config files
def load_config_file(path: str | Path) -> dict[str, Any]:
    """Fields from a YAML or JSON config file (a mapping at the top level)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputError(f"{p}: cannot read config file ({exc.strerror})") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if p.suffix == ".json" else "YAML"
        raise InputError(f"{p}: not valid {kind} ({exc})".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{p}: config file must hold a mapping of field names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


# ---------------------------------------------------------------- typed values
def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True), ``X | Y | None`` -> (X | Y, True); anything else -> (tp, False)."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = typing.get_args(tp)
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) < len(args):
            return functools.reduce(operator.or_, rest), True
    return tp, False


def _fmt(value: Any) -> str:
    return (
        repr(value) if isinstance(value, str) else json.dumps(value) if isinstance(value, list | dict) else str(value)
    )


def coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` (from YAML/JSON or a flag) as type ``tp``; InputError naming ``where`` otherwise.

    Supported: str, int, float, bool, Literal[...], list[X], dict (a mapping, passed
    through: its consumer checks the contents), unions (the first member that takes
    the value, in the order written), X | None and Any. A list given for a str field
    (a vector in a YAML file) becomes a comma string, the form the command line uses.
    """
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional or inner is Any:
            return None
        raise InputError(f"{where}: null is not allowed, expected {_describe(inner)}")
    if inner is Any:
        return value
    origin = typing.get_origin(inner)
    if origin is Literal:
        choices = typing.get_args(inner)
        for c in choices:
            if isinstance(value, bool) != isinstance(c, bool):
                continue
            if value == c or (isinstance(value, str) and not isinstance(c, str) and value.strip() == str(c)):
                return c
        raise InputError(f"{where}: {_fmt(value)} is not one of {', '.join(map(str, choices))}")
    if origin in (Union, types.UnionType):
        for member in typing.get_args(inner):
            try:
                return coerce(value, member, where)
            except InputError:
                continue
        raise InputError(f"{where}: {_fmt(value)} is not {_describe(inner)}")
    if inner is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise InputError(f"{where}: {_fmt(value)} is not a mapping")
    if origin is list:
        (item,) = typing.get_args(inner) or (Any,)
        items = value if isinstance(value, list) else [value]
        return [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(items)]
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise InputError(f"{where}: {_fmt(value)} is not a boolean (true/false, yes/no, 1/0)")
    if inner is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise InputError(f"{where}: {_fmt(value)} is not an integer")
    if inner is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise InputError(f"{where}: {_fmt(value)} is not a number")
    if inner is str:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, int | float | str) and not isinstance(v, bool) for v in value):
            return ",".join(str(v) for v in value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise InputError(f"{where}: {_fmt(value)} is not a string")
    raise TypeError(f"{where}: config fields of type {inner!r} are not supported")  # a programming error


def _describe(tp: Any) -> str:
    inner, _ = _unwrap_optional(tp)
    if typing.get_origin(inner) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(inner)))
    if typing.get_origin(inner) in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(inner))
    if inner is dict or typing.get_origin(inner) is dict:
        return "a mapping"
    return getattr(inner, "__name__", str(inner))


def check_range(value: Any, meta: Mapping[str, Any], where: str) -> None:
    """The field's range from its metadata: ``min`` / ``max`` (inclusive), ``gt`` / ``lt`` (exclusive)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{where}: {value} is not a finite number")
    if "min" in meta and value < meta["min"]:
        raise InputError(f"{where}: must be >= {meta['min']}, got {value}")
    if "gt" in meta and value <= meta["gt"]:
        raise InputError(f"{where}: must be > {meta['gt']}, got {value}")
    if "max" in meta and value > meta["max"]:
        raise InputError(f"{where}: must be <= {meta['max']}, got {value}")
    if "lt" in meta and value >= meta["lt"]:
        raise InputError(f"{where}: must be < {meta['lt']}, got {value}")


# ---------------------------------------------------------------- parsing
def flag_name(f: dataclasses.Field[Any]) -> str:
    """How a field is written on the command line (``--learning-rate``, or the positional's name).

    Of several spellings (``-p``, ``--raw-padding``) the first long one names the field in messages.
    """
    args = [str(a) for a in f.metadata.get("args") or ()]
    if args:
        if not args[0].startswith("-"):
            return args[0].upper()
        return next((a for a in args if a.startswith("--")), args[0])
    return f"--{f.name.replace('_', '-')}"


def _add_options(config_cls: type, parser: argparse.ArgumentParser) -> None:
    """argparse-dataclass's options, with required fields left to the merge (a file may supply them)."""
    start = len(parser._actions)
    _add_dataclass_options(config_cls, parser)
    required = {f.name for f in dataclasses.fields(config_cls) if _is_required(f)}
    for action in parser._actions[start:]:
        if action.dest in required:
            action.required = False
            action.default = MISSING
            action.help = f"{action.help or ''} (required)".strip()


def _is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML or JSON file supplying any of the fields below; flags override it")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output")


def build_parser(config_cls: type, prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser for ``config_cls`` plus --config, -v and -q."""
    parser = _Parser(prog=prog, description=description or (config_cls.__doc__ or "").strip())
    _common_options(parser)
    _add_options(config_cls, parser)
    return parser


def make_config(config_cls: type[C], flags: Mapping[str, Any], file_values: Mapping[str, Any], source: str) -> C:
    """The config from flag values (already typed by argparse) over file values, every field checked.

    File values are converted by the field's type; every value (flag or file)
    is range-checked; required fields must come from one of the two.
    """
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
    unknown = sorted(set(file_values) - set(fields))
    if unknown:
        raise InputError(f"{source}: unknown config field(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    values: dict[str, Any] = {}
    for name, raw in file_values.items():
        values[name] = coerce(raw, hints[name], f"{source}: {name}")
    values.update(flags)
    for name, f in fields.items():
        where = flag_name(f) if name in flags else f"{source}: {name}"
        if name not in values:
            if _is_required(f):
                hint = f.metadata.get("help")
                raise InputError(f"{flag_name(f)} is required" + (f" ({hint})" if hint else ""))
            continue
        check_range(values[name], f.metadata, where)
        choices = f.metadata.get("choices")
        if choices is not None and values[name] not in choices:
            raise InputError(f"{where}: {_fmt(values[name])} is not one of {', '.join(map(str, choices))}")
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:  # a __post_init__ check of the stage
        raise InputError(f"{source}: {exc}") from None


def _config_from_namespace(config_cls: type[C], ns: argparse.Namespace, prog: str) -> C:
    setup_logging(ns.verbose - ns.quiet)
    flags = _get_kwargs(ns)
    for key in ("config", "verbose", "quiet", "command"):
        flags.pop(key, None)
    file_values = load_config_file(ns.config) if ns.config else {}
    return make_config(config_cls, flags, file_values, str(ns.config) if ns.config else prog)


def parse_config(config_cls: type[C], argv: Sequence[str] | None, prog: str, description: str | None = None) -> C:
    """Parse ``argv`` into a ``config_cls`` instance, merging ``--config`` file fields (see module doc)."""
    ns = build_parser(config_cls, prog, description).parse_args(argv)
    return _config_from_namespace(config_cls, ns, prog)


def parse_command(
    config_cls: type[C], argv: Sequence[str] | None, prog: str, commands: Mapping[str, str]
) -> tuple[str | None, C]:
    """Like `parse_config` for a tool with subcommands that take the same fields (``csc-predict finalize``).

    Returns ``(command, config)``; ``command`` is None when no subcommand was given.
    """
    parser = build_parser(config_cls, prog)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common_options(p)
        _add_options(config_cls, p)
    ns = parser.parse_args(argv)
    return getattr(ns, "command", None), _config_from_namespace(config_cls, ns, prog)


def refuse_ignored(cfg: object, names: Sequence[str], when: str) -> None:
    """InputError for the fields among ``names`` set away from their defaults: the run would ignore them.

    A stage calls it in ``__post_init__`` for options that do nothing in the mode
    chosen, e.g. ``refuse_ignored(self, ["crops"], "with --roi (a region is predicted, not crops)")``.
    """
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"{cfg!r} is not a config dataclass")  # a programming error
    given = [
        _as_flag(f, getattr(cfg, f.name))
        for f in dataclasses.fields(cfg)
        if f.name in names and getattr(cfg, f.name) != _default(f)
    ]
    if given:
        raise InputError(f"{' and '.join(given)} would be ignored {when}; drop {'it' if len(given) == 1 else 'them'}")


def _as_flag(f: dataclasses.Field[Any], value: Any) -> str:
    """How ``value`` of field ``f`` is written on the command line (``--zip``, ``--no-em``, ``--crops '901'``)."""
    if isinstance(value, bool):
        return flag_name(f) if value else f"--no-{f.name.replace('_', '-')}"
    return f"{flag_name(f)} {_fmt(value)}"


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


class Terminated(BaseException):
    """SIGTERM (``docker stop``, a Kubernetes eviction), raised in the main thread so cleanup code runs."""


def _sigterm_handler(owner: int) -> Callable[[int, object], None]:
    """Raise `Terminated` in process ``owner``; a forked worker (the evaluator's pool) dies of SIGTERM as before."""

    def handle(signum: int, frame: object) -> None:
        if os.getpid() != owner:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        raise Terminated

    return handle


def run_main(prog: str, body: Callable[[], int | None]) -> int:
    """Run a stage's main body, turning errors into one line and an exit code.

    SIGTERM becomes `Terminated` for the duration, so temp folders and partial
    outputs are removed on the way out (exit 143), as for Ctrl-C (130).
    """
    try:
        previous = signal.signal(signal.SIGTERM, _sigterm_handler(os.getpid()))
    except ValueError:  # not the main thread (a test calling main): SIGTERM keeps its handler
        previous = None
    try:
        return _run_body(prog, body)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_body(prog: str, body: Callable[[], int | None]) -> int:
    try:
        rc = body()
        return 0 if rc is None else rc
    except CscError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{prog}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except SystemExit as exc:  # argparse's --help (0); user code is wrapped where it is called (see userfunc)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - last resort: one line, full trace at debug level
        log.debug("unexpected failure", exc_info=True)
        print(f"{prog}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


# ---------------------------------------------------------------- lists, vectors, crop ids
def parse_list(value: str | Sequence[Any] | None, what: str = "list") -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (blanks dropped); None or "" -> ``[]``."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [s.strip() for s in items if s.strip()]


def parse_floats(value: str | Sequence[Any] | None, what: str, *, positive: bool = False) -> list[float]:
    """A comma list of numbers (``"8,16"``); InputError naming ``what`` otherwise."""
    try:
        vals = [float(v) for v in parse_list(value, what)]
    except ValueError:
        raise InputError(f"{what}: expected numbers like 8 or 8,16, got {value!r}") from None
    if any(not math.isfinite(v) for v in vals) or (positive and any(v <= 0 for v in vals)):
        raise InputError(f"{what}: expected {'positive ' if positive else ''}finite numbers, got {value!r}")
    return vals


def parse_vec3(value: str | float | Sequence[Any], what: str, *, positive: bool = True) -> Vec3:
    """One number (isotropic) or three (z, y, x), as a comma string or a list."""
    raw = [value] if isinstance(value, int | float) else parse_list(value, what)
    try:
        nums = [float(v) for v in raw]
    except ValueError:
        nums = []
    if len(nums) == 1:
        nums = nums * 3
    if len(nums) != 3 or not all(math.isfinite(n) and (n > 0 or not positive) for n in nums):
        kind = "positive numbers" if positive else "numbers"
        raise InputError(f"{what}: expected 1 or 3 {kind} (z,y,x), got {value!r}")
    return nums[0], nums[1], nums[2]


def parse_shape3(value: str | int | Sequence[Any], what: str, *, minimum: int = 1) -> Shape3:
    """One integer (a cube) or three (z, y, x), each at least ``minimum``."""
    raw = [value] if isinstance(value, int) else parse_list(value, what)
    try:
        nums = [int(str(v)) for v in raw]
    except ValueError:
        nums = []
    if len(nums) == 1:
        nums = nums * 3
    if len(nums) != 3 or any(n < minimum for n in nums):
        raise InputError(f"{what}: expected 1 or 3 integers >= {minimum} (z,y,x), got {value!r}")
    return nums[0], nums[1], nums[2]


def parse_crop_id(text: str | int, what: str = "crop") -> int:
    """``557``, ``"557"`` or ``"crop557"`` -> 557."""
    s = str(text).strip().removeprefix("crop")
    if not s.isdigit():
        raise InputError(f"{what}: expected a crop id like 557 or crop557, got {text!r}")
    return int(s)


def parse_crop_ids(value: str | Sequence[Any] | None, what: str = "--crops") -> list[int]:
    """A comma list of crop ids (``"557,crop558"``) -> ``[557, 558]`` (order kept, duplicates dropped)."""
    return list(dict.fromkeys(parse_crop_id(v, what) for v in parse_list(value, what)))
