"""Benchmark of csc-train on CPU: iterations/s of the demo config and peak RSS against the number of crops.

Fetches the synthetic demo dataset with ``csc-fetch`` (or uses ``--dataset``), then trains the
demo config (all defaults except ``--iterations``) in a fresh process per run
on 1x, 2x and 4x the training crops. The 2x/4x manifests list every training
crop again under new ids (same arrays), which is what matters here: the
trainer keeps only array handles and coarse class cells per crop, so peak RSS
must stay flat. Last line:

    bench train: it_s=<x> rss_1x_mib=<n> rss_2x_mib=<n> rss_4x_mib=<n>
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def child(args: list[str]) -> None:
    """Run csc-train in this process; print peak RSS (MiB) and it/s as JSON."""
    from csc_common import views
    from csc_trainer.cli import main

    out = Path(args[args.index("--output") + 1])
    t0 = time.perf_counter()
    rc = main(args)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tr = views.load(out, views.ModelView).details["training"] if rc == 0 else {}
    print(
        json.dumps(
            {
                "rc": rc,
                "rss_mib": peak,
                "it_s": tr.get("iterations_per_second"),
                "wall_s": wall,
                "crops": len(tr.get("train_crops", [])) + len(tr.get("validate_crops", [])),
            }
        )
    )


def multiply(dataset: Path, factor: int, dest: Path) -> Path:
    """A copy of the dataset manifest listing every training crop ``factor`` times (new ids, same arrays)."""
    from csc_common import views

    ds = views.load(dataset, views.DatasetView)
    train = [c for c in ds.crops_of("train") if c.id is not None]
    top = max(c.id for c in ds.crops if c.id is not None) + 1
    extra = [replace(c, id=c.id + k * top) for k in range(1, factor) for c in train if c.id is not None]
    views.save(replace(ds, crops=ds.crops + tuple(extra)), dest)  # paths re-relativised to dest
    return dest


def run_child(dataset: Path, out: Path, iterations: int, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--dataset",
        str(dataset),
        "--output",
        str(out),
        "--iterations",
        str(iterations),
        "--validate-every",
        str(max(1, iterations // 2)),
        "-q",
        *extra,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode or not lines or json.loads(lines[-1])["rc"] != 0:
        sys.exit(f"bench train: child failed:\n{res.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> int:
    if "--child" in sys.argv:
        child([a for a in sys.argv[1:] if a != "--child"])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", help="dataset manifest (default: fetch the synthetic demo data into a temp dir)")
    ap.add_argument("--iterations", type=int, default=100, help="iterations of the timed demo-config run")
    ap.add_argument("--rss-iterations", type=int, default=40, help="iterations of the 2x/4x RSS runs")
    a, extra = ap.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        if a.dataset:
            dataset = Path(a.dataset).resolve()
        else:
            dataset = root / "data" / "dataset.json"
            fetch = shutil.which("csc-fetch") or str(Path(sys.executable).with_name("csc-fetch"))
            cmd = [fetch, "--source", "synthetic", "--size", "demo", "--dest", str(dataset.parent)]
            if subprocess.run([*cmd, "--output", str(dataset), "-q"], check=False).returncode:
                sys.exit("bench train: synthetic fetch failed")
        r1 = run_child(dataset, root / "m1" / "model.json", a.iterations, extra)
        print(
            f"1x: {r1['crops']} crops, {r1['it_s']:.2f} it/s over {a.iterations} iterations (incl. validation), "
            f"peak RSS {r1['rss_mib']:.0f} MiB, wall {r1['wall_s']:.1f} s",
            file=sys.stderr,
        )
        r1s = run_child(dataset, root / "m1s" / "model.json", a.rss_iterations, extra)
        rss = {1: r1s["rss_mib"]}
        for f in (2, 4):
            ds_f = multiply(dataset, f, root / f"dataset{f}x.json")
            r = run_child(ds_f, root / f"m{f}" / "model.json", a.rss_iterations, extra)
            rss[f] = r["rss_mib"]
            print(f"{f}x: {r['crops']} crops, peak RSS {r['rss_mib']:.0f} MiB", file=sys.stderr)
    print(f"bench train: it_s={r1['it_s']:.2f} rss_1x_mib={rss[1]:.0f} rss_2x_mib={rss[2]:.0f} rss_4x_mib={rss[4]:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
