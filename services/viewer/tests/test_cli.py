"""The command line: `csc-view` / `csc visualize` end to end without a browser, and bad input -> exit 2, one line."""

import json
import shutil
import socket

import pytest
from csc_viewer.cli import main


def test_serve_no_wait_prints_one_url_per_dataset(demo, capsys):
    assert main(["--data", str(demo.root), "--no-wait", "--port", "0", "-q"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    dataset, url = out[0].split("\t")
    assert dataset == "jrc_demo-1" and url.startswith("http://127.0.0.1:") and "/v/" in url


def test_serve_blocks_until_signalled(demo):
    """The real command: prints the URL, serves it, and exits 0 on SIGTERM (docker stop) or SIGINT."""
    import signal
    import subprocess
    import sys
    import urllib.request

    cmd = [
        sys.executable,
        "-c",
        "import sys; from csc_viewer.cli import main; sys.exit(main())",
        "--data",
        str(demo.root),
        "-c",
        "2",
        "--bind-address",
        "0.0.0.0",
        "--port",
        "0",
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # blocks until the server is up and the URL printed
        assert "\t" in line, f"no URL printed: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        dataset, url = line.strip().split("\t")
        port_and_path = url.split(":", 2)[2]  # 0.0.0.0 prints the host name; reach it on loopback
        with urllib.request.urlopen(f"http://127.0.0.1:{port_and_path}", timeout=30) as resp:
            assert resp.status == 200
        assert proc.poll() is None  # still serving
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        assert rc == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_montage_and_chart(demo, tmp_path):
    rc = main(
        [
            "-m",
            str(demo.processed),
            "-c",
            "test",
            "-k",
            "em,gt,predictions,processed",
            "-C",
            "mito,ecs",
            "--montage",
            str(tmp_path / "m.png"),
            "--scores",
            str(demo.scores),
            "--chart",
            str(tmp_path / "c.png"),
            "-q",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "m.png"]  # -c test: crop 2 only, so the exact name


def test_umbrella_verb(demo, tmp_path):
    from csc_common.umbrella import main as csc

    assert csc(["visualize", "--data", str(demo.root), "-c", "1", "--montage", str(tmp_path / "one.png"), "-q"]) == 0
    assert (tmp_path / "one.png").is_file()


def test_several_crops_give_one_png_each_and_an_overview(demo, tmp_path):
    from PIL import Image

    assert main(["--data", str(demo.root), "--montage", str(tmp_path / "m.png"), "-q"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-crop1.png", "m-crop2.png", "m.png"]
    sizes = [Image.open(tmp_path / n).size for n in ("m-crop1.png", "m-crop2.png", "m.png")]
    assert sizes[2] == (max(sizes[0][0], sizes[1][0]), sizes[0][1] + sizes[1][1])


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("csc-view: error: ")
    return err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-k", "gt,raw"], "unknown kind(s) raw"),
        (["-d", "nope"], "nothing to show"),
        (["--size", "big"], "--size 'big'"),
        (["--port", "70000"], "--port: must be <= 65535, got 70000"),
    ],
)
def test_bad_options(demo, capsys, args, message):
    assert main(["--data", str(demo.root), "--no-wait", *args]) == 2
    assert message in _err(capsys)


def test_chart_without_scores(demo, tmp_path, capsys):
    assert main(["-m", str(demo.dataset), "--chart", str(tmp_path / "c.png")]) == 2
    assert "--chart needs a scores manifest" in _err(capsys)
    assert not (tmp_path / "c.png").exists()


def test_missing_manifest_and_wrong_kind(demo, tmp_path, capsys):
    assert main(["-m", str(tmp_path / "nope.json"), "--no-wait"]) == 2
    assert "nope.json: manifest file not found" in _err(capsys)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["-m", str(bad), "--no-wait"]) == 2
    assert "not valid JSON" in _err(capsys)
    model = tmp_path / "model.json"
    model.write_text(json.dumps({**json.loads(demo.dataset.read_text()), "kind": "model"}))
    assert main(["-m", str(model), "--no-wait"]) == 2
    assert "/kind" in _err(capsys)


def test_missing_volume(demo, tmp_path, capsys):
    root = tmp_path / "d"
    shutil.copytree(demo.root, root)
    shutil.rmtree(root / "jrc_demo-1" / "jrc_demo-1.zarr" / "recon-1" / "labels" / "groundtruth" / "crop1" / "ecs")
    assert main(["-m", str(root / "dataset.json"), "--no-wait"]) == 2
    assert "crop1/ecs: zarr group not found" in _err(capsys)
    root2 = tmp_path / "d2"
    shutil.copytree(demo.root, root2)
    (root2 / "submission.zip").write_bytes(b"not a zip")
    assert main(["-m", str(root2 / "submission.json"), "--no-wait"]) == 2
    assert "submission.zip" in _err(capsys)


def test_port_in_use(demo, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["--data", str(demo.root), "--no-wait", "--port", str(port)]) == 2
    assert f"--port {port} on --bind-address 127.0.0.1 is in use" in _err(capsys)


def test_help_lists_the_original_options(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in (
        "-d DATASETS",
        "-c CROPS",
        "-C CLASSES",
        "-k KINDS",
        "--bind-address",
        "--port",
        "--screenshot",
        "--montage",
        "--chart",
        "--no-wait",
    ):
        assert flag in out


def test_on_the_fetchers_synthetic_data(synthetic_data, tmp_path):
    """The real fetcher's output (bucket layout, anisotropic dataset, held-apart test truth) views as-is."""
    from csc_viewer.catalog import Selection, build_catalog, load_manifests
    from csc_viewer.layers import build_views

    cat = build_catalog(load_manifests([synthetic_data]))
    assert cat.test_crops and {v.kind for v in cat.volumes} == {"em", "gt"}
    views = build_views(Selection.parse(crops="test").apply(cat))
    assert len(views) == len(cat.datasets()) >= 2
    for view in views:
        em = view.layer("fibsem")
        crop_layers = [s for s in view.layers if s.role != "em"]
        assert crop_layers and all(s.name.startswith(f"crop{view.focus_crop}/gt/") for s in crop_layers)
        assert em.voxel_size == tuple(min(s.voxel_size[i] for s in crop_layers) for i in range(3))
    assert any(v.voxel_size[0] != v.voxel_size[1] for view in views for v in view.layers)  # anisotropic data
    crop = min(cat.test_crops)
    assert main(["-m", str(synthetic_data), "-c", str(crop), "--montage", str(tmp_path / "t.png"), "-q"]) == 0
    assert (tmp_path / "t.png").stat().st_size > 10_000


def test_screenshot_without_a_browser_is_one_clear_error(demo, tmp_path, capsys):
    out = tmp_path / "s.png"
    assert main(["--data", str(demo.root), "--screenshot", str(out), "--chromium", str(tmp_path / "no-chromium")]) == 2
    assert "no-chromium: not found (install Debian's chromium and chromium-driver)" in _err(capsys)
    assert not out.exists()
