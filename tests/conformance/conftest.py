"""Make the kit's modules (conformance_kit, conformance_fixture) importable by the tests beside them."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
