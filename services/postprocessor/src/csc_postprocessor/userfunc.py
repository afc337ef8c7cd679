"""The user's own post-processing: ``--process-file my_process.py`` defining ``process_func``.

Contract (as in the original, but with context and checks)::

    def process_func(array, *, class_name, geometry):
        # array: float32 probabilities of one class, zyx, whole crop (or one
        #        block plus its halo for whole volumes)
        # geometry: csc_common.geometry.Geometry of `array`
        return mask_or_labels   # same shape; bool or integer; or None to use the steps

Its result is checked (shape, dtype, no negative ids); a wrong result or an
exception becomes one error line naming the class and the crop. ``sys.exit()``
in the file (at import or in ``process_func``) is such a failure too (exit 2),
never a successful end of the stage.
"""

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from csc_common.errors import InputError
from csc_common.geometry import Geometry

ProcessFunc = Callable[..., Any]


CONTRACT = "a process file defines process_func(array, *, class_name, geometry) and returns its result"


def _file_of(func: ProcessFunc) -> str:
    """The file that defines ``func`` (for messages)."""
    code = getattr(func, "__code__", None)
    return str(code.co_filename) if code is not None else repr(func)


class ProcessFuncError(InputError):
    """The user's process_func could not be loaded, raised, or returned something unusable."""


def load_process_func(path: str | Path) -> ProcessFunc:
    """Import ``process_func`` from a python file; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise ProcessFuncError(f"{p}: process file not found")
    spec = importlib.util.spec_from_file_location(f"csc_user_process_{abs(hash(str(p.resolve())))}", p)
    if spec is None or spec.loader is None:
        raise ProcessFuncError(f"{p}: not an importable python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(p.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:  # sys.exit() in user code is a failure, never the stage's own exit
        raise ProcessFuncError(f"{p}: called sys.exit({exc.code!r}) while being imported; {CONTRACT}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported in one line
        raise ProcessFuncError(f"{p}: failed to load ({type(exc).__name__}: {exc})") from None
    finally:
        sys.path.remove(str(p.resolve().parent))
    func = getattr(module, "process_func", None)
    if not callable(func):
        raise ProcessFuncError(f"{p}: defines no function process_func(array, *, class_name, geometry)")
    return func


def call_checked(
    func: ProcessFunc, array: np.ndarray, *, class_name: str, geometry: Geometry, where: str
) -> np.ndarray | None:
    """Call the user's function and check its result (shape, dtype, sign).

    Returns a bool mask or a non-negative integer label array, or None where
    the function returned None (meaning: use the configured steps).
    """
    try:
        out = func(array, class_name=class_name, geometry=geometry)
    except SystemExit as exc:
        raise ProcessFuncError(
            f"{where}: process_func of {_file_of(func)} called sys.exit({exc.code!r}); {CONTRACT}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's error, reported with its context
        raise ProcessFuncError(f"{where}: process_func raised {type(exc).__name__}: {exc}") from None
    if out is None:
        return None
    if hasattr(out, "detach"):  # a torch tensor, as the original's process_func often returns
        out = out.detach().cpu().numpy()
    out = np.asarray(out)
    if out.shape != array.shape:
        raise ProcessFuncError(f"{where}: process_func returned shape {out.shape}, expected {array.shape}")
    if out.dtype == bool:
        return out
    if not np.issubdtype(out.dtype, np.integer):
        raise ProcessFuncError(
            f"{where}: process_func returned dtype {out.dtype}; expected bool (mask) or an integer type (instance ids)"
        )
    if out.size and np.issubdtype(out.dtype, np.signedinteger) and out.min() < 0:
        raise ProcessFuncError(f"{where}: process_func returned negative ids (min {out.min()})")
    return out
