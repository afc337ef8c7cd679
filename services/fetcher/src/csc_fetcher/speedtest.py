"""``csc speedtest``: can this link fetch the data, and with how many workers?

The original pipes a third-party internet speed test into Python (UPSTREAM.md
§1.10), which measures a link to some other server. This measures what a
fetch needs, against the bucket itself (or ``--endpoint-url``), through the
fetcher's own S3 source: the latency of one small request, then objects/s and
MB/s downloading real EM chunk objects with 1 worker and with N workers. The
chunks are the ones a fetch of the test crops would copy, found the way the
fetcher plans (each crop's box in the finest EM level it would fetch, one
listing per row of chunks); the two runs use different objects, so neither
gains from the other's caches.

The suggestion follows from the two rates: k workers reach about
min(k x one worker's rate, the link's limit). When N workers got close to N
times one worker, the link was not saturated and more may help; otherwise
about ``speedup`` workers already fill it, and a quarter more is headroom.
"""
# ruff: noqa: UP007, UP045  (argparse-dataclass needs typing.Optional, not X | None)

import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Optional

from csc_common.cli import parse_config, run_main
from csc_common.crops import CropRow, merged_crop_box, parse_crop_manifest
from csc_common.errors import InputError, StageFailed
from csc_common.volumes import Level

from csc_fetcher.fetch import _em_key, _hms, _read_multiscale
from csc_fetcher.io import DEFAULT_BUCKET, default_location, read_text
from csc_fetcher.plan import (
    ArrayMeta,
    chunk_key,
    chunk_ranges,
    default_workers,
    finest_voxel_size,
    row_prefix,
    select_levels,
)
from csc_fetcher.sources import ObjectInfo, RetryPolicy, S3Source

PROG = "csc speedtest"
DEFAULT_FETCH_BYTES = 36.7e9  # the default fetch-data (UPSTREAM.md §1.1, seed README)


@dataclass(frozen=True, kw_only=True)
class SpeedtestConfig:
    """Measure request latency, objects/s and MB/s against the challenge bucket, and suggest --num-workers."""

    endpoint_url: Optional[str] = field(
        default=None, metadata={"help": "S3-compatible endpoint (default env AWS_ENDPOINT_URL, else AWS)"}
    )
    bucket: str = field(default=DEFAULT_BUCKET, metadata={"help": "bucket holding the EM volumes"})
    test_manifest: Optional[str] = field(
        default=None,
        metadata={"help": "test crop manifest whose crops pick the chunks (default as csc fetch-data)"},
    )
    dataset: Optional[str] = field(default=None, metadata={"help": "only chunks of this dataset (default: any)"})
    num_workers: Optional[int] = field(
        default=None,
        metadata={
            "args": ["-w", "--num-workers"],
            "help": "N, the parallel run's workers (default env CSC_FETCH_DATA_NUM_WORKERS or 32, as a fetch)",
            "min": 1,
        },
    )
    objects: int = field(
        default=96, metadata={"help": "chunk objects downloaded by the N-worker run (the 1-worker run: 1/8)", "min": 2}
    )
    requests: int = field(default=10, metadata={"help": "small requests timed for the latency", "min": 1})
    timeout: float = field(default=60.0, metadata={"help": "S3 read timeout per request, seconds", "gt": 0})
    json: bool = field(default=False, metadata={"help": "print JSON instead of the report"})


@dataclass(frozen=True)
class Rate:
    """One download run: how many objects and bytes in how long, with how many workers."""

    workers: int
    objects: int
    bytes: int
    seconds: float

    @property
    def objects_s(self) -> float:
        return self.objects / self.seconds if self.seconds > 0 else math.inf

    @property
    def mb_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else math.inf


@dataclass(frozen=True)
class Result:
    source: str
    sample: str
    latency_ms: dict[str, float]
    one: Rate
    many: Rate
    suggested_workers: int
    reason: str

    @property
    def speedup(self) -> float:
        return self.many.objects_s / self.one.objects_s if self.one.objects_s > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        def rate(r: Rate) -> dict[str, object]:
            return {**asdict(r), "objects_s": round(r.objects_s, 3), "mb_s": round(r.mb_s, 3)}

        return {
            "source": self.source,
            "sample": self.sample,
            "latency_ms": self.latency_ms,
            "one_worker": rate(self.one),
            "n_workers": rate(self.many),
            "speedup": round(self.speedup, 3),
            "suggested_num_workers": self.suggested_workers,
            "reason": self.reason,
            "default_fetch_s": round(DEFAULT_FETCH_BYTES / (self.many.mb_s * 1e6), 1) if self.many.mb_s > 0 else None,
        }


# ---------------------------------------------------------------- pure parts
def suggest_workers(one: Rate, many: Rate) -> tuple[int, str]:
    """Workers that fill the link, from a 1-worker and an N-worker rate (see the module doc)."""
    n = many.workers
    speedup = many.objects_s / one.objects_s if one.objects_s > 0 else float(n)
    if speedup >= 0.75 * n:
        return min(2 * n, 256), (
            f"{n} workers ran {speedup:.1f}x one worker, close to {n}x: the link is not saturated, more may help"
        )
    k = max(1, min(n, math.ceil(1.25 * speedup)))
    return k, f"{n} workers ran {speedup:.1f}x one worker: about {max(1, round(speedup))} already fill the link"


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[min(len(ms) - 1, math.ceil(0.9 * len(ms)) - 1)]
    return {"min": round(ms[0], 2), "median": round(statistics.median(ms), 2), "p90": round(p90, 2)}


def report(r: Result) -> str:
    lat = r.latency_ms
    lines = [
        f"speedtest: {r.source}, {r.sample}",
        f"  request latency  min {lat['min']:.1f} ms  median {lat['median']:.1f} ms  p90 {lat['p90']:.1f} ms",
    ]
    for rate, extra in ((r.one, ""), (r.many, f"  ({r.speedup:.1f}x one worker)")):
        lines.append(
            f"  {rate.workers:>3} worker{'s' if rate.workers > 1 else ' '}    {rate.objects} objects "
            f"({rate.bytes / 1e6:.2f} MB) in {rate.seconds:.2f} s: {rate.objects_s:.1f} objects/s, "
            f"{rate.mb_s:.2f} MB/s{extra}"
        )
    lines.append(f"  suggested: --num-workers {r.suggested_workers} ({r.reason})")
    if r.many.mb_s > 0:
        lines.append(
            f"  the default fetch (~{DEFAULT_FETCH_BYTES / 1e9:.1f} GB) would take about "
            f"{_hms(DEFAULT_FETCH_BYTES / (r.many.mb_s * 1e6))} at {r.many.mb_s:.2f} MB/s"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- measuring
def pick_chunks(source: S3Source, rows: Sequence[CropRow], want: int, workers: int) -> tuple[list[ObjectInfo], str]:
    """Up to ``want`` distinct EM chunk objects a fetch of these test crops would copy, and where from."""
    by_crop: dict[int, list[CropRow]] = {}
    for r in rows:
        by_crop.setdefault(r.crop_id, []).append(r)
    metas: dict[str, tuple[list[Level], dict[str, ArrayMeta]]] = {}
    picked: dict[str, ObjectInfo] = {}
    used: list[str] = []
    for cid, crop_rows in by_crop.items():
        ds = crop_rows[0].dataset
        if ds not in metas:
            levels, arrays, _ = _read_multiscale(source, _em_key(ds), workers)
            metas[ds] = (levels, arrays)
        levels, arrays = metas[ds]
        box = merged_crop_box(crop_rows)
        for lv in select_levels(levels, finest_voxel_size(r.geometry.voxel_size for r in crop_rows)):
            meta = arrays[lv.path]
            ranges = chunk_ranges(lv.geometry, meta, box)
            if ranges is None:
                continue
            level_key = f"{_em_key(ds)}/{lv.path}"
            wanted = {chunk_key(level_key, (z, y, x), meta) for z in ranges[0] for y in ranges[1] for x in ranges[2]}
            for zy in sorted({(z, y) for z in ranges[0] for y in ranges[1]}):
                for o in source.list(row_prefix(level_key, zy, meta)):
                    if o.key in wanted and o.size > 0:
                        picked.setdefault(o.key, o)
                if len(picked) >= want:
                    break
            used.append(f"{ds} crop {cid} {lv.path}")
            if len(picked) >= want:
                return list(picked.values())[:want], ", ".join(used)
    return list(picked.values()), ", ".join(used)


def _download(source: S3Source, objs: Sequence[ObjectInfo], workers: int) -> Rate:
    def one(o: ObjectInfo) -> int:
        data = source.get(o.key, o)
        if data is None:
            raise StageFailed(f"{source.name}/{o.key}: listed but gone")
        return len(data)

    t0 = time.perf_counter()
    if workers <= 1:
        sizes = [one(o) for o in objs]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="speedtest") as pool:
            sizes = list(pool.map(one, objs))
    return Rate(workers, len(objs), sum(sizes), time.perf_counter() - t0)


def _latency(source: S3Source, key: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        source.get(key)
        out.append(time.perf_counter() - t0)
    return out


def run(cfg: SpeedtestConfig) -> Result:
    """Measure, print the report (or JSON) on stdout, and return the numbers."""
    workers = default_workers(cfg.num_workers)
    loc = cfg.test_manifest or default_location("test_manifest")
    rows = parse_crop_manifest(read_text(loc, endpoint_url=cfg.endpoint_url), loc)
    if cfg.dataset is not None:
        rows = [r for r in rows if r.dataset == cfg.dataset]
        if not rows:
            raise InputError(f"--dataset {cfg.dataset!r}: no test crop of {loc} is in that dataset")
    if not rows:
        raise InputError(f"{loc}: no test crops")
    source = S3Source(
        cfg.bucket, endpoint_url=cfg.endpoint_url, workers=workers, retry=RetryPolicy(attempts=3),
        read_timeout=cfg.timeout,
    )  # fmt: skip
    source.check()  # unreachable endpoint or missing bucket: one line, exit 2
    n_one = max(1, min(max(4, cfg.objects // 8), cfg.objects))
    objs, used = pick_chunks(source, rows, n_one + cfg.objects, workers)
    if len(objs) < 2:
        raise InputError(f"{source.name}: found {len(objs)} EM chunk object(s) for the test crops; need at least 2")
    n_one = min(n_one, len(objs) // 2)
    probe = f"{_em_key(rows[0].dataset)}/.zattrs"
    latency = latency_summary(_latency(source, probe, cfg.requests))
    one = _download(source, objs[:n_one], 1)
    many = _download(source, objs[n_one : n_one + cfg.objects], workers)
    suggested, reason = suggest_workers(one, many)
    result = Result(source.name, f"{len(objs)} EM chunk objects of {used}", latency, one, many, suggested, reason)
    print(json.dumps(result.to_json(), indent=2) if cfg.json else report(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    run(parse_config(SpeedtestConfig, argv, PROG))
    return 0


if __name__ == "__main__":
    sys.exit(main())
