"""CLI plumbing shared by every stage: typed configs, config files, exit codes.

A stage defines one frozen dataclass; ``parse_config`` builds the argparse
CLI from it (argparse-dataclass), lets ``--config FILE`` (YAML or JSON)
supply the same fields, and lets flags override the file. ``run_main`` maps
errors to exit codes (0 ok, 1 failed, 2 bad input) and prints one line.
"""

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from argparse_dataclass import _add_dataclass_options, _get_kwargs

from csc_common.errors import EXIT_BAD_INPUT, EXIT_FAILED, CscError, InputError
from csc_common.log import setup_logging

C = TypeVar("C")
log = logging.getLogger("csc")


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
        raise InputError(
            f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'} ({exc})".replace("\n", " ")
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{p}: config file must hold a mapping of field names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_parser(config_cls: type, prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser for ``config_cls`` plus --config, -v and -q."""
    parser = argparse.ArgumentParser(prog=prog, description=description or (config_cls.__doc__ or "").strip())
    parser.add_argument("--config", help="YAML or JSON file supplying any of the fields below; flags override it")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    _add_dataclass_options(config_cls, parser)
    return parser


def parse_config(config_cls: type[C], argv: Sequence[str] | None, prog: str, description: str | None = None) -> C:
    """Parse ``argv`` into a ``config_cls`` instance, merging ``--config`` file fields."""
    parser = build_parser(config_cls, prog, description)
    ns = parser.parse_args(argv)
    setup_logging(ns.verbose - ns.quiet)
    values = _get_kwargs(ns)
    for key in ("config", "verbose", "quiet"):
        values.pop(key, None)
    file_values = load_config_file(ns.config) if ns.config else {}
    names = {f.name for f in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
    unknown = sorted(set(file_values) - names)
    if unknown:
        raise InputError(
            f"{ns.config}: unknown config field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    merged = {**file_values, **values}
    try:
        return config_cls(**merged)
    except TypeError as exc:
        raise InputError(f"{prog}: {exc}") from None


def run_main(prog: str, body: Callable[[], int | None]) -> int:
    """Run a stage's main body, turning errors into one line and an exit code."""
    try:
        rc = body()
        return 0 if rc is None else rc
    except CscError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # argparse: --help (0) or usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - last resort: one line, full trace at debug level
        log.debug("unexpected failure", exc_info=True)
        print(f"{prog}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
