"""Deliberately broken predictors for the conformance kit's own tests: ``broken_predictor.py FAULT ARGS...``.

Each runs the reference predictor, then damages its output in a plausible-looking way the kit must reject:

* ``geometry``: every translation shifted by one voxel (manifest and attrs, consistently) and the last
  z-slice of the first array dropped;
* ``channels``: the arrays of the first two classes of each crop swapped (right geometry, wrong values).
"""

import json
import sys
from pathlib import Path

import zarr
from csc_predictor.cli import main

if __name__ == "__main__":
    fault, argv = sys.argv[1], sys.argv[2:]
    rc = main([*argv, "-q"])
    if rc:
        sys.exit(rc)
    out = Path(argv[argv.index("--output") + 1])
    m = json.loads(out.read_text())
    root = out.parent / m["zarr"]
    for crop in m["crops"] if fault == "channels" else []:
        if len(crop["classes"]) >= 2:
            a, b = crop["classes"][0], crop["classes"][1]
            a["path"], b["path"] = b["path"], a["path"]
    for i, crop in enumerate(m["crops"] if fault == "geometry" else []):
        for j, v in enumerate(crop["classes"]):
            g = v["geometry"]
            g["translation"] = [t + s for t, s in zip(g["translation"], g["voxel_size"], strict=True)]
            arr = zarr.open_array(str(root / v["path"]), mode="r+")
            arr.attrs["translation"] = g["translation"]
            if i == 0 and j == 0:
                arr.resize((arr.shape[0] - 1, *arr.shape[1:]))
    out.write_text(json.dumps(m, indent=2))
