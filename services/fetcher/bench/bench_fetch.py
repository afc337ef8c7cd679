"""make bench-fetch: parallel speed-up and memory of csc-fetch against a local S3 server.

Set-up (all on 127.0.0.1, each in its own process so the client's threads do
not share a GIL with the servers): a moto S3 server holding two public-read
buckets built from the synthetic data — "small" (the tiny dataset) and
"large" (the same crops inside an EM volume tiled 3x3x3, ~27x the chunks) —
and a proxy adding ~50 ms latency per request, as a far-away bucket would.

Measured in one run, as ratios: the copy phase of the same selection with 1
worker and with 32 workers (objects/s and speed-up), and the peak RSS of a
32-worker fetch of everything in the small and in the large bucket (memory
must stay flat as the dataset grows). Last line:

    bench fetch: speedup=<x> objects_s=<n> rss_small_mib=<n> rss_large_mib=<n>
"""

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import zarr
from csc_common.geometry import Geometry
from csc_common.volumes import open_group, read_levels, write_multiscale
from csc_fetcher import synthetic

TESTS = Path(__file__).resolve().parents[1] / "tests"  # the S3 test doubles live with the fetcher's tests
sys.path.insert(0, str(TESTS))
from s3_doubles import upload_folder  # noqa: E402

DS = "syn_iso-1"
EM = f"{DS}/{DS}.zarr/recon-1/em/fibsem-uint8"
RUNNER = (
    "import resource, sys\nfrom csc_fetcher.cli import main\nrc = main(sys.argv[1:])\n"
    "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc)\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    raise SystemExit(f"bench fetch: {url} did not come up")


def make_large(small: Path, large: Path, tiles: int) -> None:
    """The small bucket with its EM tiled ``tiles``^3 times (same crops, many more chunks)."""
    shutil.copytree(small, large)
    src = zarr.open_array(str(small / EM / "s0"), mode="r")[:]
    big = np.tile(src, (tiles,) * 3)
    s0 = read_levels(small / EM)[0].geometry
    g0 = Geometry(s0.voxel_size, s0.translation, big.shape)  # type: ignore[arg-type]
    levels = [(big, g0)]
    for _ in range(2):
        a, g = levels[-1]
        levels.append((synthetic.downsample_mean(a), synthetic._coarser(g)))
    shutil.rmtree(large / EM)
    grp = open_group(large / f"{DS}/{DS}.zarr/recon-1/em", "a")
    chunk = zarr.open_array(str(small / EM / "s0"), mode="r").chunks
    write_multiscale(grp, "fibsem-uint8", levels, chunks=chunk)


def fetch(proxy: str, bucket_dir: Path, bucket: str, dest: Path, workers: int, *extra: str) -> dict:
    man = dest.parent / f"{dest.name}-manifest.csv"
    man.write_text(
        (bucket_dir / "manifest.csv").read_text().replace(f"s3://{synthetic.BUCKET_NAME}/", f"s3://{bucket}/")
    )
    cmd = [
        sys.executable,
        "-c",
        RUNNER,
        "--source",
        "s3",
        "--endpoint-url",
        proxy,
        "--dest",
        str(dest),
        "--manifest",
        str(man),
        "--test-manifest",
        str(bucket_dir / "test_crop_manifest.csv"),
        "--datasets",
        DS,
        "-w",
        str(workers),
        "-q",
        *extra,
    ]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"bench fetch: fetch failed: {p.stderr.strip()[-800:]}")
    rss = int(next(ln.split()[1] for ln in p.stderr.splitlines() if ln.startswith("maxrss_kib")))
    m = json.loads((dest / "dataset.json").read_text())
    c, t = m["counts"], m["timings"]
    return {
        "objects": c["fetched_objects"],
        "bytes": c["fetched_bytes"],
        "copy_s": t["copy_s"],
        "plan_s": t["plan_s"],
        "wall_s": wall,
        "rss_mib": rss / 1024,
        "objects_s": c["fetched_objects"] / max(t["copy_s"], 1e-9),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added per request by the proxy")
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--tiles", type=int, default=3, help="the large bucket's EM is the small one tiled N^3 times")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    procs: list[subprocess.Popen] = []
    try:
        small = work / "small"
        synthetic.generate(small, seed=0, size="tiny")
        large = work / "large"
        make_large(small, large, args.tiles)
        port = free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(endpoint)
        t0 = time.perf_counter()
        n = upload_folder(endpoint, "bench-small", small, include=(f"{DS}/",), workers=16)
        n += upload_folder(endpoint, "bench-large", large, include=(f"{DS}/",), workers=16)
        print(f"uploaded {n} objects to moto in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        px = subprocess.Popen(
            [sys.executable, str(TESTS / "s3_doubles.py"), "proxy", str(port), "--latency", str(args.latency)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(px)
        proxy = px.stdout.readline().strip()  # type: ignore[union-attr]

        sel = ("--crops", "101,102", "--raw-padding", "8")
        one = fetch(proxy, small, "bench-small", work / "d1", 1, *sel)
        many = fetch(proxy, small, "bench-small", work / "d32", args.workers, *sel)
        rs = fetch(proxy, small, "bench-small", work / "ds", args.workers, "--raw-padding", "10000")
        rl = fetch(proxy, large, "bench-large", work / "dl", args.workers, "--raw-padding", "10000")
        speedup = many["objects_s"] / one["objects_s"]
        for name, r in (("1 worker", one), (f"{args.workers} workers", many), ("small, all", rs), ("large, all", rl)):
            print(
                f"{name:>12}: {r['objects']:>5} objects {r['bytes'] / 2**20:7.1f} MiB  copy {r['copy_s']:6.2f} s "
                f"({r['objects_s']:6.1f} objects/s)  plan {r['plan_s']:5.2f} s  peak RSS {r['rss_mib']:6.1f} MiB"
            )
        print(
            f"latency {args.latency * 1000:.0f} ms/request; end-to-end speed-up incl. planning "
            f"{one['wall_s'] / many['wall_s']:.1f}x"
        )
        sys.stdout.flush()
        print(
            f"bench fetch: speedup={speedup:.1f} objects_s={many['objects_s']:.0f} "
            f"rss_small_mib={rs['rss_mib']:.0f} rss_large_mib={rl['rss_mib']:.0f}"
        )
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
