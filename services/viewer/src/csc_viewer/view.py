"""The viewer stage: what ``csc-view`` does with a parsed config (`run`).

Reads the selected manifests (inputs followed back to the dataset) into a
catalog, applies the ``-d/-c/-C/-k`` selection, and either writes the
pictures asked for (``--chart``, ``--montage``, ``--screenshot``) or serves
the volumes in neuroglancer until interrupted. It writes no manifest: the
viewer produces no data.
"""

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from csc_common import views
from csc_common.errors import InputError
from csc_common.views import ScoresView

from csc_viewer.catalog import Volume, build_catalog, find_manifests, load_manifests
from csc_viewer.config import Config
from csc_viewer.layers import build_views

log = logging.getLogger("csc.viewer")


def run(cfg: Config) -> list[Path]:
    """Do what ``cfg`` asks; returns the pictures written (empty when serving)."""
    selection = cfg.selection
    written: list[Path] = []
    if cfg.chart:
        written.append(_chart(cfg, cfg.chart))
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
        written += _screenshots(cfg, cfg.screenshot, volumes)
    if written:
        return written
    _serve(cfg, volumes)
    return written


def _scores_manifest(cfg: Config) -> ScoresView:
    """The scores manifest to chart: --scores, else the scores manifest among --manifest, else DATA/scores.json."""
    if cfg.scores:
        return views.load(cfg.scores, ScoresView)
    for path in cfg.manifest:
        found = views.load_any(path)
        if isinstance(found, ScoresView):
            return found
    if not cfg.manifest and (Path(cfg.data) / "scores.json").is_file():
        return views.load(Path(cfg.data) / "scores.json", ScoresView)
    raise InputError("--chart needs a scores manifest: --scores DATA/scores.json")


def _chart(cfg: Config, out: str) -> Path:
    from csc_viewer.montage import scores_chart

    scores = _scores_manifest(cfg)
    path = scores_chart(scores, Path(out), title=f"per-class scores — overall {_fmt(scores.overall_score)}")
    log.info("chart: %s", path)
    return path


def _fmt(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "n/a"


def _montages(volumes: Sequence[Volume], template: Path) -> list[Path]:
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


def _screenshots(cfg: Config, template: str, volumes: Sequence[Volume]) -> list[Path]:
    from csc_viewer import ng

    size = cfg.viewport
    specs = build_views(volumes, viewport=size, focus_crop=cfg.focus, layout=cfg.layout)
    served = ng.serve(specs, bind_address=cfg.bind_address, port=cfg.port, layout=cfg.layout, clean=True)
    out = Path(template)
    try:
        written = []
        for spec, viewer in zip(specs, served.viewers, strict=True):
            path = out if len(specs) == 1 else out.with_name(f"{out.stem}-{spec.dataset}{out.suffix or '.png'}")
            ng.screenshot(
                viewer, path, size=size, chromium=cfg.chromium, chromedriver=cfg.chromedriver, timeout=cfg.timeout
            )
            log.info("screenshot %s (crop%s, %d layers): %s", spec.dataset, spec.focus_crop, len(spec.layers), path)
            written.append(path)
        return written
    finally:
        ng.stop_server()


def _serve(cfg: Config, volumes: Sequence[Volume]) -> None:
    from csc_viewer import ng

    specs = build_views(volumes, focus_crop=cfg.focus, layout=cfg.layout)
    with _stop_on_signal() as stop:  # before the URL is out: whoever reads it may stop us at once
        served = ng.serve(specs, bind_address=cfg.bind_address, port=cfg.port, layout=cfg.layout)
        try:
            for spec, url, viewer in zip(specs, served.urls(), served.viewers, strict=True):
                log.info("%s: %d layers, opens on crop%s", spec.dataset, len(spec.layers), spec.focus_crop)
                if cfg.bind_address in ("0.0.0.0", "::"):  # the URL names this host; a container's is unreachable
                    log.info(
                        "%s: from this machine, or the host of a container publishing the port: %s",
                        spec.dataset,
                        ng.local_url(viewer).replace("127.0.0.1", "localhost"),
                    )
                print(f"{spec.dataset}\t{url}", flush=True)
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
