"""Numbers from environment variables: the limits a user may tune without a flag.

A typo must never silently turn a limit off, so anything that is not a positive
finite number is bad input, named with the variable.
"""

import math
import os
from typing import TypeVar

from csc_common.errors import InputError

N = TypeVar("N", int, float)


def env_number(name: str, default: N, cast: type[N]) -> N:
    """A positive finite number from environment variable ``name``; ``default`` when unset or blank.

    ``cast=int`` accepts ``"1e9"`` (parsed as a float, then truncated). Raises
    ``InputError`` for a non-number, ``nan``/``inf`` or a value <= 0, so that a
    typo never silently turns a limit off.
    """
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = cast(float(raw)) if cast is int else cast(raw)
    except ValueError:
        raise InputError(f"environment variable {name}: not a number: {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"environment variable {name}: must be > 0, got {raw!r}")
    return value
