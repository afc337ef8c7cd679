"""Deliberately broken predictors for the conformance kit's own tests: ``broken_predictor.py FAULT ARGS...``.

Each runs the reference predictor, then damages its output in a plausible-looking way the kit must reject:

* ``geometry``: every translation shifted by one voxel (manifest, array attrs and OME-NGFF group
  metadata, consistently) and the last z-slice of the first array dropped;
* ``channels``: the data of the first two classes of each crop swapped (right geometry, wrong values);
* ``flat``: the old layout, one plain array per class at ``crop<N>/<class>`` (attrs kept, no OME-NGFF group).
"""

import json
import shutil
import sys
from pathlib import Path

import zarr
from csc_common.volumes import create_array, open_group
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
            a, b = (zarr.open_array(str(root / v["path"]), mode="r+") for v in crop["classes"][:2])
            a[...], b[...] = b[...], a[...]
    for i, crop in enumerate(m["crops"] if fault == "geometry" else []):
        for j, v in enumerate(crop["classes"]):
            g = v["geometry"]
            g["translation"] = [t + s for t, s in zip(g["translation"], g["voxel_size"], strict=True)]
            arr = zarr.open_array(str(root / v["path"]), mode="r+")
            arr.attrs["translation"] = g["translation"]
            group = zarr.open_group(str(root / v["path"].rsplit("/", 1)[0]), mode="r+")
            ms = group.attrs["multiscales"]
            ms[0]["datasets"][0]["coordinateTransformations"][1]["translation"] = g["translation"]
            group.attrs["multiscales"] = ms
            if i == 0 and j == 0:
                arr.resize((arr.shape[0] - 1, *arr.shape[1:]))
    for crop in m["crops"] if fault == "flat" else []:
        for v in crop["classes"]:
            arr = zarr.open_array(str(root / v["path"]), mode="r")
            data, attrs, group_path = arr[...], dict(arr.attrs), v["path"].rsplit("/", 1)[0]
            shutil.rmtree(root / group_path)
            crop_path, name = group_path.rsplit("/", 1)
            create_array(open_group(root / crop_path, mode="a"), name, shape=data.shape, dtype=data.dtype, attrs=attrs)[
                ...
            ] = data
            v["path"] = group_path
    out.write_text(json.dumps(m, indent=2))
