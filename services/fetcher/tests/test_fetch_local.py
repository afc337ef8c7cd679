"""The fetch path end to end on the tiny synthetic bucket (local source, same copy code as S3)."""

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from csc_common import views
from csc_common.crops import read_crop_manifest
from csc_common.geometry import Geometry
from csc_common.manifest import read_manifest
from csc_common.views import DatasetView
from csc_common.volumes import read_levels
from csc_fetcher import synthetic
from csc_fetcher.cli import main
from csc_fetcher.plan import chunk_ranges


def _fetch(tiny_bucket: Path, dest: Path, *extra: str) -> int:
    return main(
        [
            "--source",
            "synthetic",
            "--size",
            "tiny",
            "--bucket-dir",
            str(tiny_bucket),
            "--dest",
            str(dest),
            "--output",
            str(dest / "dataset.json"),
            "-q",
            *extra,
        ]
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".synthetic-bucket" not in p.parts and p.name != "dataset.json"
    }


def test_full_fetch_layout_and_manifest(fetched_tiny: Path, tiny_bucket: Path) -> None:
    man = read_manifest(fetched_tiny / "dataset.json", "dataset")
    spec = synthetic.build_spec(0, "tiny")
    assert {d["name"] for d in man["datasets"]} == set(spec.datasets)
    assert sorted(c["id"] for c in man["crops"]) == sorted(c.crop_id for c in spec.crops)
    for d in man["datasets"]:
        em = man.resolve(d["zarr"]) / d["em"]["path"]
        levels = read_levels(em)
        assert [lv.geometry.to_json() for lv in levels] == [
            {k: v for k, v in x.items() if k not in ("path", "fetched")} for x in d["em"]["levels"]
        ]
    for c in man["crops"]:
        cs = next(x for x in spec.crops if x.crop_id == c["id"])
        assert c["split"] == cs.split
        assert sorted(k["name"] for k in c["classes"]) == sorted(cs.classes)
        for k in c["classes"]:
            assert k["kind"] == ("instance" if k["name"] in synthetic.INSTANCE_CLASSES else "semantic")
            if c["split"] == "train":
                zroot = man.resolve(next(d["zarr"] for d in man["datasets"] if d["name"] == c["dataset"]))
                assert Geometry.from_json(k["geometry"]) == read_levels(zroot / k["path"])[0].geometry
    assert read_crop_manifest(man.resolve(man["test_manifest"])) == list(synthetic.crop_rows(spec, "test"))
    # held-apart truth copied beside, never into the dataset's labels
    truth = zarr.open_group(str(man.resolve(man["truth"])), mode="r")
    assert sorted(truth.group_keys()) == ["crop901", "crop902"]
    assert not (fetched_tiny / "syn_iso-1/syn_iso-1.zarr/recon-1/labels/groundtruth/crop901").exists()
    # every fetched object is byte-identical to the bucket's
    tree = _tree(fetched_tiny)
    for rel, data in tree.items():
        if rel.startswith("ground_truth.zarr/"):
            src = tiny_bucket / synthetic.TRUTH_PREFIX / rel.removeprefix("ground_truth.zarr/")
        elif rel == "test_crop_manifest.csv":
            continue
        else:
            src = tiny_bucket / rel
        assert src.read_bytes() == data, rel
    assert man["counts"]["objects"] == len(tree) - 1


def test_em_near_crops_reads_back_like_the_source(fetched_tiny: Path, tiny_bucket: Path) -> None:
    man = read_manifest(fetched_tiny / "dataset.json", "dataset")
    c = next(c for c in man["crops"] if c["id"] == 901)
    g = Geometry.from_json(c["classes"][0]["geometry"])
    path = "syn_iso-1/syn_iso-1.zarr/recon-1/em/fibsem-uint8"
    local = zarr.open_array(str(fetched_tiny / path / "s0"), mode="r")
    src = zarr.open_array(str(tiny_bucket / path / "s0"), mode="r")
    em_geom = read_levels(fetched_tiny / path)[0].geometry
    sl = em_geom.slices_for(g.box)
    np.testing.assert_array_equal(local[sl], src[sl])


def test_selection_crops_classes_padding_resolution(tmp_path: Path, tiny_bucket: Path) -> None:
    dest = tmp_path / "d"
    assert (
        _fetch(
            tiny_bucket, dest, "--crops", "101,902", "--classes", "mito,nuc", "--resolution", "8", "--raw-padding", "3"
        )
        == 0
    )
    man = read_manifest(dest / "dataset.json", "dataset")
    assert {(c["id"], c["split"]) for c in man["crops"]} == {(101, "train"), (902, "test")}
    for c in man["crops"]:
        assert sorted(k["name"] for k in c["classes"]) == ["mito", "nuc"]
        assert c["em_levels"] == ["s0"]
    gt = dest / "syn_iso-1/syn_iso-1.zarr/recon-1/labels/groundtruth"
    assert sorted(p.name for p in gt.iterdir() if p.is_dir()) == ["crop101"]
    assert sorted(p.name for p in (gt / "crop101").iterdir() if p.is_dir()) == ["mito", "nuc"]
    # exactly the chunks of the padded box, only at s0
    em = "syn_iso-1/syn_iso-1.zarr/recon-1/em/fibsem-uint8"
    assert not list((dest / em / "s1").glob("*/*/*"))
    levels = read_levels(dest / em)
    from csc_fetcher.plan import ArrayMeta

    meta = ArrayMeta.from_zarray(json.loads((dest / em / "s0/.zarray").read_text()), "s0")
    crop = next(c for c in man["crops"] if c["id"] == 101)
    box = Geometry.from_json(crop["classes"][0]["geometry"]).box
    rr = chunk_ranges(levels[0].geometry, meta, box, 3)
    want = {f"{z}/{y}/{x}" for z in rr[0] for y in rr[1] for x in rr[2]}
    got = {p.relative_to(dest / em / "s0").as_posix() for p in (dest / em / "s0").glob("*/*/*")}
    assert got == want
    assert read_crop_manifest(dest / "test_crop_manifest.csv")[0].class_label in ("mito", "nuc")


def test_rerun_skips_complete_objects_and_cleans_parts(tmp_path: Path, tiny_bucket: Path) -> None:
    dest = tmp_path / "d"
    assert _fetch(tiny_bucket, dest, "--crops", "101,901") == 0
    first = _tree(dest)
    m1 = read_manifest(dest / "dataset.json", "dataset")["counts"]
    # simulate an interrupted run: one chunk missing, one stale temp file
    victim = next(k for k in first if "/em/fibsem-uint8/s0/" in k)
    (dest / victim).unlink()
    stale = dest / Path(victim).parent / ".x.abc.csc-part"
    stale.write_bytes(b"junk")
    assert _fetch(tiny_bucket, dest, "--crops", "101,901") == 0
    m2 = read_manifest(dest / "dataset.json", "dataset")["counts"]
    assert m2["fetched_objects"] == 1 and m2["skipped_objects"] == m1["objects"] - 1
    assert _tree(dest) == first


def test_overwrite_mode_removes_old_dataset_tree(tmp_path: Path, tiny_bucket: Path) -> None:
    dest = tmp_path / "d"
    assert _fetch(tiny_bucket, dest, "--crops", "101") == 0
    extra = dest / "syn_iso-1/syn_iso-1.zarr/stale-file"
    extra.write_text("x")
    assert _fetch(tiny_bucket, dest, "--crops", "101", "--access-mode", "append") == 0
    assert extra.exists()
    assert _fetch(tiny_bucket, dest, "--crops", "101", "-m", "overwrite") == 0
    assert not extra.exists()
    assert read_manifest(dest / "dataset.json", "dataset")["counts"]["skipped_objects"] == 0


def test_dry_run_prints_plan_and_writes_nothing(
    tmp_path: Path, tiny_bucket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "d"
    assert _fetch(tiny_bucket, dest, "--dry-run", "--crops", "test") == 0
    out = capsys.readouterr().out
    assert "datasets: 2" in out and "crops: 0 train, 2 test" in out and "estimated time" in out
    assert not dest.exists()


@pytest.mark.parametrize(
    "args,match",
    [
        (["--crops", "101,999"], "unknown crop id"),
        (["--classes", "mito,bogus"], "unknown class"),
        (["--datasets", "jrc_nope"], "unknown dataset"),
        (["--raw-padding", "-1"], "raw-padding"),
        (["--num-workers", "0"], "num-workers"),
        (["--resolution", "abc"], "resolution"),
        (["--access-mode", "delete"], ""),
        (["--instance-classes", "mito,mitoo"], "--instance-classes: unknown class(es) mitoo"),
        (["--crops", "tran"], "--crops: expected 'all', 'test', 'train' or comma-separated crop ids"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, tiny_bucket: Path, capsys: pytest.CaptureFixture[str], args: list[str], match: str
) -> None:
    dest = tmp_path / "d"
    assert _fetch(tiny_bucket, dest, *args) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "Traceback" not in err
    if match:
        assert len(err.splitlines()) == 1 and err.startswith("csc-fetch: error:")
    assert not (dest / "dataset.json").exists() and not (dest / "syn_iso-1").exists()


def test_instance_classes_override_is_recorded_once_in_the_manifest(tmp_path: Path, tiny_bucket: Path) -> None:
    dest = tmp_path / "d"
    assert _fetch(tiny_bucket, dest, "--crops", "101,902", "--instance-classes", "mito, er") == 0
    view = views.load(dest / "dataset.json", DatasetView)
    assert {c.id for c in view.crops} == {101, 902}
    kinds = view.class_kinds()
    assert {"mito", "er", "nuc"} <= set(kinds)
    assert kinds == {n: ("instance" if n in ("mito", "er") else "semantic") for n in kinds}
    raw = json.loads((dest / "dataset.json").read_text())
    assert all(k["kind"] == kinds[k["name"]] for c in raw["crops"] for k in c["classes"])
    assert view.to_json(dest / "dataset.json") == raw  # the view gives back exactly the written file
    # default: the challenge's table
    assert _fetch(tiny_bucket, tmp_path / "e", "--crops", "101") == 0
    default = views.load(tmp_path / "e" / "dataset.json", DatasetView).class_kinds()
    assert default["mito"] == "instance" and default["er"] == "semantic"


def test_range_violation_in_a_config_file_is_one_line(
    tmp_path: Path, tiny_bucket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "fetch.yaml"
    cfg.write_text("crops: '101'\nraw_padding: -3\n")
    dest = tmp_path / "d"
    assert _fetch(tiny_bucket, dest, "--config", str(cfg)) == 2
    assert capsys.readouterr().err.splitlines() == [f"csc-fetch: error: {cfg}: raw_padding: must be >= 0, got -3"]
    cfg.write_text("timeout: 0\n")
    assert _fetch(tiny_bucket, dest, "--config", str(cfg)) == 2
    assert capsys.readouterr().err.splitlines() == [f"csc-fetch: error: {cfg}: timeout: must be > 0, got 0.0"]
    assert not dest.exists()


def test_local_source_needs_a_bucket_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--source", "local", "--dest", str(tmp_path / "d"), "-q"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "csc-fetch: error: --source local needs --bucket-dir (a folder in bucket layout)"
    ]


def test_malformed_manifest_exits_2(tmp_path: Path, tiny_bucket: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("crop_number,collection,alignment,crop_url,em_url\n101,syn_iso-1,recon-1\n")
    dest = tmp_path / "d"
    assert _fetch(tiny_bucket, dest, "--manifest", str(bad)) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"csc-fetch: error: {bad} line 2: expected 5 comma-separated fields, got 3"]
    assert not dest.exists()
    assert _fetch(tiny_bucket, dest, "--test-manifest", str(tmp_path / "absent.csv")) == 2
    assert "cannot read manifest" in capsys.readouterr().err
    # a crop_url outside its collection's zarr (the labels could not be placed): the row is named
    good = (tiny_bucket / "manifest.csv").read_text().splitlines()
    row = next(i for i, line in enumerate(good) if line.startswith("101,"))
    url = good[row].split(",")[3]
    good[row] = good[row].replace(url, url.replace("/syn_iso-1/syn_iso-1.zarr/recon-1/labels/groundtruth", ""))
    bad.write_text("\n".join(good) + "\n")
    assert _fetch(tiny_bucket, dest, "--manifest", str(bad), "--crops", "101") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"csc-fetch: error: {bad} line {row + 1}: crop_url {url.split('/syn_iso-1/')[0] + '/crop101'!r} is not inside "
        "the collection's zarr; expected s3://<bucket>/syn_iso-1/syn_iso-1.zarr/<label path>/crop101"
    ]
    assert not dest.exists()


def test_fetched_em_and_labels_line_up(fetched_tiny: Path) -> None:
    """Read EM through the geometry on each training crop's label grid: class contrasts must show."""
    from csc_common.volumes import read_resampled

    man = read_manifest(fetched_tiny / "dataset.json", "dataset")
    for c in (c for c in man["crops"] if c["split"] == "train"):
        d = next(d for d in man["datasets"] if d["name"] == c["dataset"])
        em_root = man.resolve(d["zarr"]) / d["em"]["path"]
        s0 = read_levels(em_root)[0]
        classes = {k["name"]: k for k in c["classes"]}
        g = Geometry.from_json(classes["ecs"]["geometry"])
        img = read_resampled(zarr.open_array(str(em_root / "s0"), mode="r"), s0.geometry, g, order=1)
        lab = {
            n: zarr.open_array(str(man.resolve(d["zarr"]) / k["path"] / "s0"), mode="r")[:] > 0
            for n, k in classes.items()
        }
        if lab["ecs"].sum() > 50 and lab["cyto"].sum() > 50:
            assert img[lab["ecs"]].mean() > img[lab["cyto"]].mean() + 20, c["id"]
        if "mito" in lab and lab["mito"].sum() > 50:
            assert img[lab["mito"]].mean() < img[lab["cyto"]].mean() - 10, c["id"]


def test_regenerated_bucket_never_mixes_with_older_files(tmp_path: Path) -> None:
    bucket, dest = tmp_path / "bucket", tmp_path / "d"
    args = ["--source", "synthetic", "--size", "tiny", "--bucket-dir", str(bucket), "-q", "--crops", "101,901"]
    assert main([*args, "--dest", str(dest), "--seed", "0"]) == 0
    assert main([*args, "--dest", str(dest), "--seed", "1"]) == 0  # new bucket content: old trees are replaced
    fresh = tmp_path / "fresh"
    assert main([*args, "--dest", str(fresh), "--seed", "1"]) == 0
    assert _tree(dest) == _tree(fresh)


def test_an_http_manifest_read_retries_5xx_and_refuses_4xx(
    tmp_path: Path, tiny_bucket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(503 if self.path.startswith("/busy") else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    dest = tmp_path / "d"
    try:
        assert _fetch(tiny_bucket, dest, "--manifest", f"{url}/busy/manifest.csv", "--retries", "2") == 1
        assert capsys.readouterr().err.splitlines() == [
            f"csc-fetch: error: cannot read manifest {url}/busy/manifest.csv: gave up after 2 attempts "
            "(HTTP 503 Service Unavailable)"
        ]
        assert _fetch(tiny_bucket, dest, "--manifest", f"{url}/gone/manifest.csv", "--retries", "2") == 2
        assert capsys.readouterr().err.splitlines() == [
            f"csc-fetch: error: cannot read manifest {url}/gone/manifest.csv: HTTP 404 Not Found"
        ]
    finally:
        server.shutdown()
        server.server_close()
    assert hits == ["/busy/manifest.csv"] * 2 + ["/gone/manifest.csv"]
    assert not dest.exists()
