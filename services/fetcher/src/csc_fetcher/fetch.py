"""The fetch stage: manifests -> plan -> verified parallel copy -> local tree + ``dataset`` manifest.

Reads: the challenge's crop manifests (manifest.csv for training crops, the
test crop manifest for test crops) and a source bucket (S3, or a local folder
in bucket layout such as the generated synthetic data).
Writes under ``--dest`` (UPSTREAM.md §2.5)::

    <ds>/<ds>.zarr/recon-1/em/fibsem-uint8/{.zattrs, sN/.zarray, sN/<chunks near crops>}
    <ds>/<ds>.zarr/recon-1/labels/groundtruth/crop<N>/<class>/...   (training crops)
    test_crop_manifest.csv                                           (selected test rows)
    ground_truth.zarr/crop<N>/<class>                                (synthetic only: held-apart truth)

and last the ``dataset`` manifest at ``--output``. Everything is validated
(manifests, crop ids, classes, datasets, the endpoint) before anything is
written, so bad input exits 2 leaving nothing behind.
"""

import logging
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from csc_common import views
from csc_common.classes import ClassKind, kinds_for
from csc_common.crops import CropRow, merged_crop_box, parse_crop_manifest, write_crop_manifest
from csc_common.errors import InputError
from csc_common.fsutil import atomic_write_text, sha256_file
from csc_common.geometry import Box
from csc_common.manifest import now, relpath
from csc_common.views import ClassEntry, CropEntry, DatasetEntry, DatasetView, EmLevel, Header, Split, VoxelCounts
from csc_common.volumes import Level, parse_multiscales

from csc_fetcher import synthetic, voxelcounts
from csc_fetcher.config import Config
from csc_fetcher.io import DEFAULT_BUCKET, default_location, read_text
from csc_fetcher.plan import (
    EM_PATH,
    ArrayMeta,
    Selection,
    TrainCrop,
    check_class_names,
    chunk_key,
    chunk_ranges,
    default_workers,
    finest_voxel_size,
    parse_fetch_manifest,
    row_prefix,
    select,
    select_levels,
)
from csc_fetcher.sources import (
    LocalSource,
    ObjectInfo,
    S3Source,
    Source,
    parse_s3_url,
    read_json_bytes,
)
from csc_fetcher.transfer import Item, Result, copy, remove_stale_parts

log = logging.getLogger("csc.fetch")
T = TypeVar("T")
ZGROUP = b'{\n  "zarr_format": 2\n}\n'
ASSUMED_BANDWIDTH = 100e6  # bytes/s, for the dry-run estimate only


@dataclass
class ClassInfo:
    name: str
    path: str  # label group inside the dataset zarr
    levels: list[Level]


@dataclass
class CropPlan:
    crop_id: int
    dataset: str
    split: Split
    box: Box
    classes: list[ClassInfo] = field(default_factory=list)  # training crops
    rows: list[CropRow] = field(default_factory=list)  # test crops
    em_levels: list[str] = field(default_factory=list)


@dataclass
class DatasetPlan:
    name: str
    levels: list[Level]
    metas: dict[str, ArrayMeta]
    fetched_levels: set[str] = field(default_factory=set)


@dataclass
class Plan:
    source: Source
    source_label: str
    datasets: dict[str, DatasetPlan]
    crops: list[CropPlan]
    items: list[Item]
    missing_chunks: int
    test_rows: list[CropRow]
    truth: bool
    manifests: dict[str, str]


def _pmap(fn: Callable[[Any], T], args: Sequence[Any], workers: int) -> list[T]:
    """``map`` over a thread pool (metadata reads and listings are latency-bound)."""
    if len(args) <= 1 or workers <= 1:
        return [fn(a) for a in args]
    with ThreadPoolExecutor(max_workers=min(workers, len(args)), thread_name_prefix="plan") as pool:
        return list(pool.map(fn, args))


# ------------------------------------------------------------------------------------------------
# Sources and manifests


def open_source(cfg: Config, workers: int) -> tuple[Source | None, str, str, str, Callable[[], bool]]:
    """(source or None for S3 until the bucket is known, label, train manifest text, test manifest text, prepare).

    ``prepare`` materialises the source (generates the synthetic bucket) and says
    whether it is new; it is called only after the selection was validated.
    """
    dest = Path(cfg.dest)
    if cfg.source == "synthetic":
        bucket_dir = Path(cfg.bucket_dir) if cfg.bucket_dir else dest / ".synthetic-bucket"
        spec = synthetic.build_spec(cfg.seed, cfg.size)
        train_text = read_text(cfg.manifest, retry=cfg.retry) if cfg.manifest else synthetic.manifest_csv(spec)
        test_text = (
            read_text(cfg.test_manifest, retry=cfg.retry)
            if cfg.test_manifest
            else write_crop_manifest(synthetic.crop_rows(spec, "test"))
        )
        label = f"synthetic (seed {cfg.seed}, size {cfg.size}) at {bucket_dir}"

        def prepare() -> bool:
            if synthetic.is_generated(bucket_dir, seed=cfg.seed, size=cfg.size):
                return False
            log.info("generating the synthetic bucket (seed %d, size %s) in %s", cfg.seed, cfg.size, bucket_dir)
            synthetic.generate(bucket_dir, seed=cfg.seed, size=cfg.size)
            return True

        return LocalSource(bucket_dir), label, train_text, test_text, prepare
    if cfg.source == "local" and cfg.bucket_dir:  # Config requires --bucket-dir with --source local
        root = Path(cfg.bucket_dir)
        train_text = read_text(cfg.manifest or str(root / "manifest.csv"), retry=cfg.retry)
        test_text = read_text(cfg.test_manifest or str(root / "test_crop_manifest.csv"), retry=cfg.retry)
        return LocalSource(root), str(root), train_text, test_text, lambda: False
    train_text = read_text(cfg.manifest or default_location("manifest"), endpoint_url=cfg.endpoint_url, retry=cfg.retry)
    test_text = read_text(
        cfg.test_manifest or default_location("test_manifest"), endpoint_url=cfg.endpoint_url, retry=cfg.retry
    )
    return None, "", train_text, test_text, lambda: False


def _bucket_of(train: Sequence[TrainCrop]) -> str:
    buckets = {parse_s3_url(t.crop_url)[0] for t in train} | {parse_s3_url(t.em_url)[0] for t in train}
    if len(buckets) > 1:
        raise InputError(f"the training manifest names several buckets ({', '.join(sorted(buckets))}); expected one")
    return buckets.pop() if buckets else DEFAULT_BUCKET


# ------------------------------------------------------------------------------------------------
# Planning


def _em_key(ds: str) -> str:
    return f"{ds}/{ds}.zarr/{EM_PATH}"


def _read_multiscale(
    source: Source, group_key: str, workers: int
) -> tuple[list[Level], dict[str, ArrayMeta], dict[str, bytes]]:
    """Levels + array metadata of a multiscale group, and the raw metadata documents (to copy verbatim)."""
    raw: dict[str, bytes] = {}
    zattrs = source.get(f"{group_key}/.zattrs")
    if zattrs is None:
        raise InputError(f"{source.name}/{group_key}: no multiscale group (.zattrs missing)")
    raw[".zattrs"] = zattrs
    attrs = read_json_bytes(zattrs, f"{source.name}/{group_key}/.zattrs")
    paths = (
        [d.get("path") for d in attrs.get("multiscales", [{}])[0].get("datasets", [])]
        if isinstance(attrs.get("multiscales"), list) and attrs["multiscales"]
        else []
    )
    if not paths:
        raise InputError(f"{source.name}/{group_key}/.zattrs: no OME-NGFF multiscales datasets")
    keys = [".zgroup"] + [f"{p}/.zarray" for p in paths] + [f"{p}/.zattrs" for p in paths]
    docs = _pmap(lambda k: source.get(f"{group_key}/{k}"), keys, workers)
    zarrays = {}
    for k, doc in zip(keys, docs, strict=True):
        if doc is None:
            continue
        raw[k] = doc
        if k.endswith("/.zarray"):
            zarrays[k.rsplit("/", 1)[0]] = doc
    raw.setdefault(".zgroup", ZGROUP)
    levels, metas = _levels_from_docs(zattrs, zarrays, f"{source.name}/{group_key}")
    return levels, metas, raw


def _levels_from_docs(zattrs: bytes, zarrays: dict[str, bytes], where: str) -> tuple[list[Level], dict[str, ArrayMeta]]:
    """OME-NGFF levels and chunk metadata from a group's ``.zattrs`` and its levels' ``.zarray`` documents."""
    attrs = read_json_bytes(zattrs, f"{where}/.zattrs")
    metas = {
        p: ArrayMeta.from_zarray(read_json_bytes(d, f"{where}/{p}/.zarray"), f"{where}/{p}/.zarray")
        for p, d in zarrays.items()
    }
    levels = parse_multiscales(attrs, {p: m.shape for p, m in metas.items()}, where)
    return levels, metas


def build_plan(
    source: Source, sel: Selection, cfg: Config, dest: Path, workers: int, label: str, manifests: dict[str, str]
) -> Plan:
    """Everything to copy: metadata, label objects of the selected crops/classes, EM chunks near crops."""
    resolutions = cfg.resolutions
    pad = cfg.raw_padding
    items: list[Item] = []
    ds_names = list(dict.fromkeys([t.dataset for t in sel.train] + [rows[0].dataset for rows in sel.test.values()]))
    datasets: dict[str, DatasetPlan] = {}

    def em_meta(ds: str) -> tuple[str, tuple[list[Level], dict[str, ArrayMeta], dict[str, bytes]]]:
        return ds, _read_multiscale(source, _em_key(ds), workers)

    for ds, (levels, metas, raw) in _pmap(em_meta, ds_names, workers):
        datasets[ds] = DatasetPlan(ds, levels, metas)
        for k, data in raw.items():
            items.append(Item(f"{_em_key(ds)}/{k}", dest / _em_key(ds) / k, data=data))
        # the group chain above the EM (and the labels) so the local zarr opens as a hierarchy
        chain = [f"{ds}/{ds}.zarr", f"{ds}/{ds}.zarr/recon-1", f"{ds}/{ds}.zarr/recon-1/em"]
        if any(t.dataset == ds for t in sel.train):
            chain += [f"{ds}/{ds}.zarr/recon-1/labels", f"{ds}/{ds}.zarr/recon-1/labels/groundtruth"]
        keys = [f"{g}/{n}" for g in chain for n in (".zgroup", ".zattrs")]
        for k, doc in zip(keys, _pmap(source.get, keys, workers), strict=False):
            if doc is None and k.endswith(".zgroup"):
                doc = ZGROUP
            if doc is not None:
                items.append(Item(k, dest / k, data=doc))

    crops: list[CropPlan] = []

    # Training crops: list each crop group (one listing per crop, in parallel), then read every
    # label multiscale's metadata in one parallel sweep; those documents are copied inline, not twice.
    crop_keys = [parse_s3_url(t.crop_url)[1].rstrip("/") for t in sel.train]
    listings = _pmap(lambda k: list(source.list(k + "/")), crop_keys, workers)
    wanted_by_crop: list[list[str]] = []
    meta_objs: list[ObjectInfo] = []
    for t, ck, objs in zip(sel.train, crop_keys, listings, strict=True):
        rels = [o.key[len(ck) + 1 :] for o in objs]
        present = sorted({r.split("/", 1)[0] for r in rels if "/" in r})
        wanted = [c for c in present if sel.classes is None or c in sel.classes]
        wanted_by_crop.append(wanted)
        if not objs:
            log.warning("crop %d (%s): no ground truth at %s/%s; skipped", t.crop_id, t.dataset, source.name, ck)
        elif not wanted:
            log.info("crop %d (%s): none of the requested classes annotated; skipped", t.crop_id, t.dataset)
        for o, r in zip(objs, rels, strict=True):
            parts = r.split("/")
            if parts[0] in wanted and (parts[1:] == [".zattrs"] or (len(parts) == 3 and parts[2] == ".zarray")):
                meta_objs.append(o)
    docs = dict(zip([o.key for o in meta_objs], _pmap(lambda o: source.get(o.key, o), meta_objs, workers), strict=True))
    for t, ck, objs, wanted in zip(sel.train, crop_keys, listings, wanted_by_crop, strict=True):
        label_root = ck.split("/", 2)[2]  # path inside the dataset zarr (after "<ds>/<ds>.zarr/")
        infos = []
        for c in wanted:
            if c == "all" and sel.classes is None:
                continue  # copied, but not listed as a class
            zattrs = docs.get(f"{ck}/{c}/.zattrs")
            if zattrs is None:
                raise InputError(f"{source.name}/{ck}/{c}: label group without .zattrs (no multiscales)")
            zarrays = {
                k[len(ck) + len(c) + 2 :].rsplit("/", 1)[0]: v
                for k, v in docs.items()
                if k.startswith(f"{ck}/{c}/") and k.endswith("/.zarray") and v is not None
            }
            levels, _ = _levels_from_docs(zattrs, zarrays, f"{source.name}/{ck}/{c}")
            infos.append(ClassInfo(c, f"{label_root}/{c}", levels))
        for o in objs:
            rel = o.key[len(ck) + 1 :]
            if "/" not in rel or rel.split("/", 1)[0] in wanted:
                d = docs.get(o.key)
                items.append(Item(o.key, dest / o.key, info=o, data=d))
        if not infos:
            continue
        box = infos[0].levels[0].geometry.box
        for ci in infos[1:]:
            box = box.union(ci.levels[0].geometry.box)
        cp = CropPlan(t.crop_id, t.dataset, "train", box, classes=infos)
        cp.em_levels = [
            lv.path
            for lv in select_levels(
                datasets[t.dataset].levels,
                finest_voxel_size(ci.levels[0].geometry.voxel_size for ci in infos),
                all_resolutions=cfg.fetch_all_em_resolutions,
                resolutions=resolutions,
            )
        ]
        crops.append(cp)
    for cid, rows in sel.test.items():
        ds = rows[0].dataset
        cp = CropPlan(cid, ds, "test", merged_crop_box(rows), rows=list(rows))
        cp.em_levels = [
            lv.path
            for lv in select_levels(
                datasets[ds].levels,
                finest_voxel_size(r.geometry.voxel_size for r in rows),
                all_resolutions=cfg.fetch_all_em_resolutions,
                resolutions=resolutions,
            )
        ]
        crops.append(cp)

    # EM chunks: union of every crop's chunk ranges per level, listed row by row (one request per row).
    needed: dict[tuple[str, str], set[tuple[int, int, int]]] = defaultdict(set)
    for cp in crops:
        dp = datasets[cp.dataset]
        by_path = {lv.path: lv for lv in dp.levels}
        for path in cp.em_levels:
            meta = dp.metas[path]
            rr = chunk_ranges(by_path[path].geometry, meta, cp.box, pad)
            if rr is None:
                continue
            dp.fetched_levels.add(path)
            needed[(cp.dataset, path)].update((z, y, x) for z in rr[0] for y in rr[1] for x in rr[2])
    rows_to_list = []
    for (ds, path), idx in sorted(needed.items()):
        meta = datasets[ds].metas[path]
        for zy in sorted({(z, y) for z, y, _ in idx}):
            rows_to_list.append((ds, path, zy, row_prefix(f"{_em_key(ds)}/{path}", zy, meta)))
    listed: dict[str, ObjectInfo] = {}
    for objs in _pmap(lambda r: list(source.list(r[3])), rows_to_list, workers):
        listed.update((o.key, o) for o in objs)
    missing = 0
    for (ds, path), idx in sorted(needed.items()):
        meta = datasets[ds].metas[path]
        for zyx in sorted(idx):
            key = chunk_key(f"{_em_key(ds)}/{path}", zyx, meta)
            if key in listed:
                items.append(Item(key, dest / key, info=listed[key]))
            else:
                missing += 1  # never written upstream: reads back as the fill value

    truth = False
    test_rows = [r for rows in sel.test.values() for r in rows]
    if cfg.source == "synthetic" and sel.test:
        root = synthetic.TRUTH_PREFIX
        for k in (f"{root}/.zgroup", f"{root}/.zattrs"):
            doc = source.get(k)
            if doc is not None:
                items.append(Item(k, dest / "ground_truth.zarr" / k[len(root) + 1 :], data=doc))
        for cid, rows in sel.test.items():
            labels = {r.class_label for r in rows}
            for o in source.list(f"{root}/crop{cid}/"):
                rel = o.key[len(root) + 1 :]
                parts = rel.split("/")
                if len(parts) == 2 or parts[1] in labels:
                    items.append(Item(o.key, dest / "ground_truth.zarr" / rel, info=o))
        truth = True
    return Plan(source, label, datasets, crops, items, missing, test_rows, truth, manifests)


# ------------------------------------------------------------------------------------------------
# Output


def _mib(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def describe_plan(plan: Plan, workers: int) -> str:
    """The dry-run report: datasets, crops, objects, bytes, estimated time."""
    from csc_fetcher.transfer import is_complete

    todo = [it for it in plan.items if not is_complete(it)]
    nbytes = sum(it.size for it in todo)
    total_bytes = sum(it.size for it in plan.items)
    st = plan.source.stats
    lat = st.latency_s / st.requests if st.requests and st.latency_s else 0.0
    est = max(len(todo) * lat / workers, nbytes / ASSUMED_BANDWIDTH)
    n_train = sum(c.split == "train" for c in plan.crops)
    lines = [
        f"plan: fetch from {plan.source_label}",
        f"  datasets: {len(plan.datasets)}   crops: {n_train} train, {len(plan.crops) - n_train} test",
        f"  {'dataset':<24} {'crops':>5}  {'em levels':<14} {'objects':>8} {'bytes':>11}",
    ]
    for ds, dp in plan.datasets.items():
        prefix = f"{ds}/"
        its = [it for it in plan.items if it.key.startswith(prefix)]
        lines.append(
            f"  {ds:<24} {sum(c.dataset == ds for c in plan.crops):>5}  "
            f"{','.join(sorted(dp.fetched_levels)) or '-':<14} {len(its):>8} {_mib(sum(i.size for i in its)):>11}"
        )
    other = [it for it in plan.items if not any(it.key.startswith(f"{ds}/") for ds in plan.datasets)]
    if other:
        lines.append(
            f"  {'test truth (held apart)':<24} {len(plan.test_rows) and len({r.crop_id for r in plan.test_rows}):>5}  "
            f"{'-':<14} {len(other):>8} {_mib(sum(i.size for i in other)):>11}"
        )
    lines.append(
        f"  total: {len(plan.items)} objects, {_mib(total_bytes)}; already present: "
        f"{len(plan.items) - len(todo)}; to fetch: {len(todo)} objects, {_mib(nbytes)}; "
        f"chunks never written (fill value): {plan.missing_chunks}"
    )
    lines.append(
        f"  estimated time: {_hms(est)} with {workers} workers "
        f"({lat * 1000:.0f} ms per request measured while planning; assuming {ASSUMED_BANDWIDTH / 1e6:.0f} MB/s)"
    )
    return "\n".join(lines)


def _level_json(lv: Level) -> dict[str, Any]:
    return {"path": lv.path, **lv.geometry.to_json()}


def class_names(plan: Plan) -> list[str]:
    """Every class the fetched crops carry, in first-seen order."""
    names = [ci.name for cp in plan.crops for ci in cp.classes] + [r.class_label for cp in plan.crops for r in cp.rows]
    return list(dict.fromkeys(names))


def dataset_view(
    plan: Plan,
    res: Result,
    dest: Path,
    output: Path,
    header: Header,
    kinds: dict[str, ClassKind],
    timings: dict[str, float],
    voxel_counts: dict[tuple[int, str], VoxelCounts] | None = None,
) -> DatasetView:
    """The dataset manifest of a finished fetch; ``kinds`` is the one record of each class's kind.

    ``voxel_counts``: voxel counts of each training (crop, class), see `voxelcounts`.
    """
    datasets = tuple(
        DatasetEntry(
            ds,
            (dest / ds / f"{ds}.zarr").resolve(),
            EM_PATH,
            tuple(EmLevel(lv.path, lv.geometry, lv.path in dp.fetched_levels) for lv in dp.levels),
        )
        for ds, dp in plan.datasets.items()
    )
    crops = []
    for cp in plan.crops:
        if cp.split == "train":
            classes = tuple(
                ClassEntry(
                    ci.name,
                    kinds[ci.name],
                    ci.levels[0].geometry,
                    ci.path,
                    details={"levels": [_level_json(lv) for lv in ci.levels]},
                    counts=(voxel_counts or {}).get((cp.crop_id, ci.name)),
                )
                for ci in cp.classes
            )
        else:
            classes = tuple(ClassEntry(r.class_label, kinds[r.class_label], r.geometry) for r in cp.rows)
        details = {"em_levels": cp.em_levels, "box": cp.box.to_json()}
        crops.append(CropEntry(cp.crop_id, cp.dataset, classes, cp.split, details))
    manifests = {
        k: (relpath(v, output) if "://" not in v and Path(v).is_file() else v) for k, v in plan.manifests.items()
    }
    counts = {
        "objects": len(plan.items),
        "bytes": sum(it.size for it in plan.items),
        "fetched_objects": res.fetched,
        "fetched_bytes": res.bytes,
        "skipped_objects": res.skipped,
        "missing_chunks": plan.missing_chunks + res.missing,
        "requests": plan.source.stats.requests,
        "retries": plan.source.stats.retries,
    }
    return DatasetView(
        header=header,
        details={"manifests": manifests, "counts": counts, "timings": {k: round(v, 3) for k, v in timings.items()}},
        source=plan.source_label,
        datasets=datasets,
        crops=tuple(crops),
        test_manifest=(dest / "test_crop_manifest.csv").resolve(),
        truth=(dest / "ground_truth.zarr").resolve() if plan.truth else None,
    )


def count_voxels(plan: Plan, dest: Path, workers: int) -> dict[tuple[int, str], VoxelCounts]:
    """Voxel counts of every fetched training (crop, class), from the finest label level just copied."""
    keys = [(cp, ci) for cp in plan.crops for ci in cp.classes]
    dirs = [dest / cp.dataset / f"{cp.dataset}.zarr" / ci.path / ci.levels[0].path for cp, ci in keys]
    got = voxelcounts.count_levels(dirs, workers=min(workers, 4))
    return {(cp.crop_id, ci.name): c for (cp, ci), c in zip(keys, got, strict=True)}


def manifest_inputs(manifests: dict[str, str], output: Path) -> list[dict[str, str]]:
    """Provenance of the crop manifests read from local files (URLs are recorded in ``details`` only)."""
    inputs = []
    for which, loc in manifests.items():
        p = Path(loc.removeprefix("file://"))
        if "://" not in loc and p.is_file():
            inputs.append({"kind": f"{which}-crop-manifest", "path": relpath(p, output), "sha256": sha256_file(p)})
    return inputs


# ------------------------------------------------------------------------------------------------
# The stage


def run(cfg: Config, *, args: list[str] | None = None) -> DatasetView | None:
    """Fetch what ``cfg`` selects; returns the written manifest (None for --dry-run / --zip).

    ``args`` (the command line) is recorded in the manifest's producer block.
    """
    started = now()
    t0 = time.perf_counter()
    dest = Path(cfg.dest)
    output = Path(cfg.output) if cfg.output else dest / "dataset.json"
    workers = default_workers(cfg.num_workers)
    source, label, train_text, test_text, prepare = open_source(cfg, workers)
    bucket_dir = Path(cfg.bucket_dir) if cfg.bucket_dir else dest / ".synthetic-bucket"
    local_default = cfg.source in ("synthetic", "local")
    train_loc = cfg.manifest or (str(bucket_dir / "manifest.csv") if local_default else default_location("manifest"))
    test_loc = cfg.test_manifest or (
        str(bucket_dir / "test_crop_manifest.csv") if local_default else default_location("test_manifest")
    )
    train = parse_fetch_manifest(train_text, train_loc)
    test_rows = parse_crop_manifest(test_text, test_loc)
    sel = select(train, test_rows, crops=cfg.crops, datasets=cfg.dataset_names, classes=cfg.class_names)
    override = cfg.instance_class_names
    if override is not None:
        check_class_names(override, test_rows, "--instance-classes")
    if source is None:
        bucket = _bucket_of(train)
        source = S3Source(
            bucket,
            endpoint_url=cfg.endpoint_url,
            workers=workers,
            retry=cfg.retry,
            read_timeout=cfg.timeout,
        )
        label = source.name
    if cfg.zip:
        from csc_fetcher.zipfetch import fetch_zip

        fetch_zip(cfg, source, dest)
        return None
    if not sel.train and not sel.test:
        raise InputError(f"--crops {cfg.crops!r} with the given filters selects no crop")
    fresh_source = prepare()
    source.check()
    plan = build_plan(source, sel, cfg, dest, workers, label, {"train": train_loc, "test": test_loc})
    t_plan = time.perf_counter()
    if cfg.dry_run:
        print(describe_plan(plan, workers), file=sys.stdout, flush=True)
        return None

    output.unlink(missing_ok=True)  # the manifest means "finished": never leave an older one over a failed run
    roots = [dest / ds / f"{ds}.zarr" for ds in plan.datasets] + ([dest / "ground_truth.zarr"] if plan.truth else [])
    if cfg.access_mode == "overwrite" or fresh_source:
        # a regenerated synthetic bucket has new content: never mix it with files of an older one
        for r in roots:
            if r.exists():
                log.info("overwrite: removing %s", r)
                shutil.rmtree(r)
    remove_stale_parts(roots)
    res = copy(plan.items, source, workers=workers, batch_size=cfg.batch_size)
    t_copy = time.perf_counter()
    atomic_write_text(dest / "test_crop_manifest.csv", write_crop_manifest(plan.test_rows))
    voxel_counts = count_voxels(plan, dest, workers)
    timings = {
        "plan_s": t_plan - t0,
        "copy_s": t_copy - t_plan,
        "count_s": time.perf_counter() - t_copy,
        "workers": workers,
    }
    header = Header.new("fetcher", started, inputs=manifest_inputs(plan.manifests, output), args=args)
    kinds = kinds_for(class_names(plan), override)
    view = views.save(dataset_view(plan, res, dest, output, header, kinds, timings, voxel_counts), output)
    dt = time.perf_counter() - t0
    n_train = sum(c.split == "train" for c in plan.crops)
    log.info(
        "fetched %d crops (%d train, %d test) of %d dataset(s) from %s",
        len(plan.crops),
        n_train,
        len(plan.crops) - n_train,
        len(plan.datasets),
        label,
    )
    log.info(
        "objects: %d fetched (%s), %d already present, %d chunks never written (fill value); "
        "%d requests, %d retries; %.1f s (%.0f objects/s)",
        res.fetched,
        _mib(res.bytes),
        res.skipped,
        plan.missing_chunks + res.missing,
        source.stats.requests,
        source.stats.retries,
        dt,
        res.fetched / dt if dt > 0 else 0.0,
    )
    log.info("wrote %s", output)
    return view
