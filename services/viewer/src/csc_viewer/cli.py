"""``csc-view`` / ``csc visualize``: neuroglancer on every pipeline volume, or pictures without a browser.

Reads any of the pipeline's manifests (dataset, predictions, processed,
submission, scores; inputs followed back to the dataset) and either

* serves the selected volumes in neuroglancer on ``--bind-address:--port``,
  prints one URL per dataset on stdout and blocks until interrupted
  (``--no-wait`` returns at once);
* ``--screenshot OUT.png``: renders the same view in headless chromium;
* ``--montage OUT.png``: one PNG of orthogonal slices per crop (matplotlib);
* ``--chart OUT.png``: a bar chart of a scores manifest's per-class scores.

Writes only the pictures asked for; leaves no manifest (it produces no data).
The work is `csc_viewer.view.run`.
"""

from csc_common.cli import parse_config, run_main

from csc_viewer.config import Config
from csc_viewer.view import run

PROG = "csc-view"


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    run(parse_config(Config, argv, PROG))
    return 0
