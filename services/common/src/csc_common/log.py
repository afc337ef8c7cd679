"""Logging and progress bars for every stage.

stdlib logging to stderr, ``-v``/``-q`` to change the level; progress bars
only when stderr is a terminal so logs in CI, Docker and Kubernetes stay clean.
"""

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(verbosity: int = 0) -> None:
    """Configure the root logger: INFO by default, DEBUG with -v, WARNING with -q."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    logging.basicConfig(level=level, format=_FORMAT, datefmt="%H:%M:%S", stream=sys.stderr, force=True)


def progress_enabled() -> bool:
    """Progress bars only for a human watching a terminal."""
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it", **kw: Any) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar on a terminal; a plain iterator otherwise."""
    return iter(tqdm(iterable, desc=desc, total=total, unit=unit, disable=not progress_enabled(), **kw))


def progress_bar(*, desc: str, total: int | None = None, unit: str = "it", **kw: Any) -> tqdm:
    """A manual tqdm bar (``update(n)``), silent when stderr is not a terminal."""
    return tqdm(desc=desc, total=total, unit=unit, disable=not progress_enabled(), **kw)
