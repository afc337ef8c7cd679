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
"""

import contextlib
import logging
import re
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from csc_common.cli import parse_config, run_main
from csc_common.errors import InputError
from csc_common.manifest import read_manifest

from csc_viewer.catalog import Selection, build_catalog, find_manifests, load_manifests
from csc_viewer.config import Config
from csc_viewer.layers import build_views

PROG = "csc-view"
log = logging.getLogger("csc.viewer")


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    cfg = parse_config(Config, argv, PROG)
    run(cfg)
    return 0


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or not (16 <= int(m.group(1)) <= 8192 and 16 <= int(m.group(2)) <= 8192):
        raise InputError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1024x768")
    return int(m.group(1)), int(m.group(2))


def run(cfg: Config) -> list[Path]:
    """Do what ``cfg`` asks; returns the pictures written (empty when serving)."""
    selection = Selection.parse(datasets=cfg.datasets, crops=cfg.crops, classes=cfg.classes, kinds=cfg.kinds, em=cfg.em)
    size = parse_size(cfg.size)
    if not 0 <= cfg.port <= 65535:
        raise InputError(f"--port {cfg.port}: expected 0..65535")
    written: list[Path] = []
    if cfg.chart:
        written.append(_chart(cfg))
        if not (cfg.montage or cfg.screenshot):
            return written
    catalog = build_catalog(load_manifests(find_manifests(cfg.manifest, cfg.data)))
    volumes = selection.apply(catalog)
    if not volumes:
        raise InputError(
            f"nothing to show: no volume matches -d {cfg.datasets} -c {cfg.crops} -C {cfg.classes} "
            f"-k {cfg.kinds} (datasets found: {', '.join(catalog.datasets()) or 'none'})"
        )
    if cfg.montage:
        written += _montages(volumes, Path(cfg.montage))
    if cfg.screenshot:
        written += _screenshots(cfg, volumes, size)
    if written:
        return written
    _serve(cfg, volumes)
    return written


def _chart(cfg: Config) -> Path:
    from csc_viewer.montage import scores_chart

    path = cfg.scores or next((m for m in cfg.manifest if _kind_of(m) == "scores"), None)
    if path is None and not cfg.manifest and (Path(cfg.data) / "scores.json").is_file():
        path = str(Path(cfg.data) / "scores.json")
    if path is None:
        raise InputError("--chart needs a scores manifest: --scores DATA/scores.json")
    m = read_manifest(path, "scores")
    out = scores_chart(m.data, Path(cfg.chart), title=f"per-class scores — overall {_fmt(m.data.get('overall_score'))}")
    log.info("chart: %s", out)
    return out


def _kind_of(path: str) -> str | None:
    try:
        import json

        return json.loads(Path(path).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "n/a"


def _montages(volumes: list, template: Path) -> list[Path]:
    from csc_common.log import progress

    from csc_viewer.montage import crop_montage, montage_paths, stack_pngs

    ems = {v.dataset: v for v in volumes if v.kind == "em"}
    crops = sorted({v.crop for v in volumes if v.crop is not None})
    if not crops:
        raise InputError("--montage: no crop selected (montages are per crop)")
    paths = montage_paths(template, crops)
    out = []
    for crop in progress(crops, desc="montages", unit="crop"):
        vols = [v for v in volumes if v.crop == crop]
        out.append(crop_montage(vols, ems.get(vols[0].dataset), paths[crop]))
        log.info("montage crop%d: %s", crop, paths[crop])
    if len(crops) > 1 and "{crop}" not in template.name:
        out.append(stack_pngs(out, template))
        log.info("montage overview of %d crops: %s", len(crops), template)
    return out


def _screenshots(cfg: Config, volumes: list, size: tuple[int, int]) -> list[Path]:
    from csc_viewer import ng

    views = build_views(volumes, viewport=size, focus_crop=cfg.focus, layout=cfg.layout)
    served = ng.serve(views, bind_address=cfg.bind_address, port=cfg.port, layout=cfg.layout, clean=True)
    out = Path(cfg.screenshot)  # type: ignore[arg-type]
    try:
        written = []
        for view, viewer in zip(views, served.viewers, strict=True):
            path = out if len(views) == 1 else out.with_name(f"{out.stem}-{view.dataset}{out.suffix or '.png'}")
            ng.screenshot(
                viewer, path, size=size, chromium=cfg.chromium, chromedriver=cfg.chromedriver, timeout=cfg.timeout
            )
            log.info("screenshot %s (crop%s, %d layers): %s", view.dataset, view.focus_crop, len(view.layers), path)
            written.append(path)
        return written
    finally:
        ng.stop_server()


def _serve(cfg: Config, volumes: list) -> None:
    from csc_viewer import ng

    views = build_views(volumes, focus_crop=cfg.focus, layout=cfg.layout)
    with _stop_on_signal() as stop:  # before the URL is out: whoever reads it may stop us at once
        served = ng.serve(views, bind_address=cfg.bind_address, port=cfg.port, layout=cfg.layout)
        try:
            for view, url, viewer in zip(views, served.urls(), served.viewers, strict=True):
                log.info("%s: %d layers, opens on crop%s", view.dataset, len(view.layers), view.focus_crop)
                if cfg.bind_address in ("0.0.0.0", "::"):  # the URL names this host; a container's is unreachable
                    log.info(
                        "%s: from this machine, or the host of a container publishing the port: %s",
                        view.dataset,
                        ng.local_url(viewer).replace("127.0.0.1", "localhost"),
                    )
                print(f"{view.dataset}\t{url}", flush=True)
            if not cfg.wait:
                return
            print("serving; press Ctrl-C to stop", file=sys.stderr, flush=True)
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
            log.info("stopped")
        finally:
            ng.stop_server()


@contextlib.contextmanager
def _stop_on_signal() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM (``docker stop``), also where a shell started us with SIGINT ignored."""
    stop = threading.Event()
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    except ValueError:  # not the main thread (tests calling main): Ctrl-C stays a KeyboardInterrupt
        pass
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
