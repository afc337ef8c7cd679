"""``python -m csc_predictor`` = ``csc-predict``."""

import sys

from csc_predictor.cli import main

sys.exit(main())
