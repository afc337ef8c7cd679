import numpy as np
import pytest
from csc_common.geometry import Geometry
from csc_postprocessor.userfunc import ProcessFuncError, call_checked, load_process_func

G = Geometry((8, 8, 8), (0, 0, 0), (4, 5, 6))
A = np.zeros((4, 5, 6), np.float32)


def _write(tmp_path, body):
    f = tmp_path / "my_process.py"
    f.write_text(body)
    return f


def test_loads_and_calls_with_context(tmp_path):
    f = _write(
        tmp_path,
        "def process_func(array, *, class_name, geometry):\n"
        "    assert class_name == 'mito' and geometry.shape == array.shape\n"
        "    return array > 0.5\n",
    )
    out = call_checked(load_process_func(f), A, class_name="mito", geometry=G, where="crop 1 class mito")
    assert out.dtype == bool and out.shape == A.shape


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "    return array[:2] > 0",
            r"crop 7 class mito: process_func returned shape \(2, 5, 6\), expected \(4, 5, 6\)",
        ),
        ("    raise RuntimeError('boom')", "crop 7 class mito: process_func raised RuntimeError: boom"),
        ("    return array * 2.0", "crop 7 class mito: process_func returned dtype float32; expected bool"),
        ("    return (array - 1).astype('int32')", "negative ids"),
    ],
)
def test_bad_results_name_class_and_crop(tmp_path, body, message):
    f = _write(tmp_path, "def process_func(array, *, class_name, geometry):\n" + body + "\n")
    with pytest.raises(ProcessFuncError, match=message):
        call_checked(load_process_func(f), A, class_name="mito", geometry=G, where="crop 7 class mito")


def test_load_errors(tmp_path):
    with pytest.raises(ProcessFuncError, match="defines no function process_func"):
        load_process_func(_write(tmp_path, "x = 1\n"))
    with pytest.raises(ProcessFuncError, match="failed to load .*ZeroDivisionError"):
        load_process_func(_write(tmp_path, "1 / 0\n"))
    with pytest.raises(ProcessFuncError, match="not found"):
        load_process_func(tmp_path / "nope.py")
