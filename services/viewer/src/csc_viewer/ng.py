"""Neuroglancer edge: serve ``ViewSpec`` layers from local zarr and take headless screenshots.

Every volume is served by the neuroglancer Python package's own server as a
``LocalVolume`` reading the zarr array lazily (directory or zip store), so
nothing leaves the machine and no internet is needed: the package bundles
the client. The data each layer sees is adapted on read (masks -> uint8 0/1,
predictions -> float32 probabilities, labels -> uint32/uint64), and each
layer carries its world placement as a source transform whose translation may
be fractional (``LocalVolume``'s own ``voxel_offset`` is integer-only).

Screenshots use neuroglancer's webdriver support with Debian's chromium and
chromedriver (no Selenium Manager download), in a fresh profile.
"""

import contextlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from csc_common.errors import InputError, StageFailed
from csc_common.fsutil import make_temp_dir

from csc_viewer.catalog import open_level
from csc_viewer.layers import LayerSpec, ViewSpec

log = logging.getLogger("csc.viewer")

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
    "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--hide-scrollbars", "--mute-audio",
)  # fmt: skip


class ServedArray:
    """What ``LocalVolume`` reads: a lazy zarr array converted per block for its layer role."""

    def __init__(self, array: Any, role: str, *, scale: float = 1.0) -> None:
        self._array = array
        self._role = role
        self._scale = float(scale)
        self.shape = tuple(array.shape)
        src = np.dtype(array.dtype)
        self.dtype: np.dtype[Any]
        if role == "mask":
            self.dtype = np.dtype(np.uint8)
        elif role == "probability":
            self.dtype = np.dtype(np.float32)
        elif role == "labels":
            self.dtype = np.dtype(np.uint32 if src.itemsize <= 4 else np.uint64)
        else:  # em: keep 8/16-bit integers, anything else as float32
            self.dtype = src if src in (np.dtype(np.uint8), np.dtype(np.uint16)) else np.dtype(np.float32)

    def __getitem__(self, item: Any) -> np.ndarray:
        block = np.asarray(self._array[item])
        if self._role == "mask":
            return (block > 0).astype(np.uint8)
        if self._role == "probability":
            return block.astype(np.float32) * np.float32(self._scale)
        return block.astype(self.dtype, copy=False)


def _coordinate_space(voxel_size: Sequence[float]) -> Any:
    import neuroglancer

    return neuroglancer.CoordinateSpace(names=["z", "y", "x"], units="nm", scales=list(voxel_size))


def make_layer(spec: LayerSpec) -> Any:
    """The neuroglancer layer of one spec (LocalVolume source + translation transform)."""
    import neuroglancer

    arr = open_level(spec.volume, spec.level)
    data = ServedArray(arr, spec.role, scale=spec.volume.scale)
    dims = _coordinate_space(spec.voxel_size)
    volume = neuroglancer.LocalVolume(
        data,
        dimensions=dims,
        volume_type="segmentation" if spec.layer_type == "segmentation" else "image",
    )
    offset = spec.voxel_offset
    transform = neuroglancer.CoordinateSpaceTransform(
        output_dimensions=dims,
        matrix=[[1 if r == c else 0 for c in range(3)] + [offset[r]] for r in range(3)],
    )
    source = neuroglancer.LayerDataSource(url=volume, transform=transform)
    if spec.layer_type == "segmentation":
        return neuroglancer.SegmentationLayer(source=source)
    if spec.shader is None:
        return neuroglancer.ImageLayer(source=source)
    return neuroglancer.ImageLayer(source=source, shader=spec.shader, opacity=1.0)


def apply_view(viewer: Any, view: ViewSpec, *, layout: str = "4panel", clean: bool = False) -> None:
    """Fill a neuroglancer viewer's state from a ViewSpec (``clean``: no axis lines or box outlines)."""
    import neuroglancer

    with viewer.txn() as s:
        # Global axes in x, y, z order: neuroglancer's "xy" panel shows the first two global
        # dimensions, so a zyx order would show z horizontally. Layers keep their zyx axes
        # (matching the arrays) and are mapped to these by name.
        s.dimensions = neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=list(view.scales[::-1]))
        for spec in view.layers:
            s.layers.append(name=spec.name, layer=make_layer(spec), visible=spec.visible)
        s.position = list(view.position[::-1])
        s.cross_section_scale = view.cross_section_scale
        s.projection_scale = view.cross_section_scale * 1024
        s.layout = layout
        if clean:
            s.show_axis_lines = False
            s.show_default_annotations = False
        if view.layers:
            s.selected_layer.layer = view.layers[-1].name if len(view.layers) > 1 else view.layers[0].name
            s.selected_layer.visible = False


def start_server(bind_address: str, port: int) -> None:
    """Start neuroglancer's server on ``bind_address:port``; a port in use is one clear InputError."""
    import neuroglancer
    import neuroglancer.server

    if neuroglancer.server.is_server_running():
        neuroglancer.server.stop()
    neuroglancer.set_server_bind_address(bind_address, bind_port=port)
    try:
        neuroglancer.server.start()
    except OSError as exc:
        reason = "is in use" if exc.errno in (98, 48, 10048) else f"cannot be bound ({exc.strerror or exc})"
        raise InputError(f"--port {port} on --bind-address {bind_address} {reason}") from None


def stop_server() -> None:
    import neuroglancer.server

    if neuroglancer.server.is_server_running():
        neuroglancer.server.stop()


@dataclass
class Served:
    """Running viewers (one per dataset) and their URLs."""

    viewers: list[Any]
    views: list[ViewSpec]

    def urls(self) -> list[str]:
        return [v.get_viewer_url() for v in self.viewers]


def serve(
    views: Sequence[ViewSpec], *, bind_address: str, port: int, layout: str = "4panel", clean: bool = False
) -> Served:
    """Start the server and one viewer per view; returns them (the server runs in a daemon thread)."""
    import neuroglancer

    start_server(bind_address, port)
    viewers = []
    for view in views:
        viewer = neuroglancer.Viewer()
        apply_view(viewer, view, layout=layout, clean=clean)
        viewers.append(viewer)
    return Served(viewers, list(views))


def local_url(viewer: Any) -> str:
    """The viewer URL on the loopback interface (a 0.0.0.0 bind prints the host name instead)."""
    import neuroglancer.server

    server = neuroglancer.server.global_server
    return f"http://127.0.0.1:{server.port}/v/{viewer.token}/"


@contextlib.contextmanager
def _browser(viewer: Any, *, chromium: str, chromedriver: str, size: tuple[int, int]) -> Iterator[Any]:
    """A headless chromium showing ``viewer``, driven by neuroglancer's webdriver support."""
    import neuroglancer.webdriver
    import selenium.webdriver
    from selenium.webdriver.chrome.service import Service

    for exe, what in ((chromium, "--chromium"), (chromedriver, "--chromedriver")):
        if not (Path(exe).is_file() or shutil.which(exe)):
            raise InputError(f"{what} {exe}: not found (install Debian's chromium and chromium-driver)")
    profile = make_temp_dir(tempfile.gettempdir(), "csc-view-chromium-")

    class _Driver(neuroglancer.webdriver.Webdriver):
        def _init_chrome(self) -> None:
            opts = selenium.webdriver.ChromeOptions()
            opts.binary_location = chromium
            opts.enable_bidi = True
            for arg in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0] + 64},{size[1] + 64}"):
                opts.add_argument(arg)
            self.driver = selenium.webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))

        def _init_driver(self) -> None:
            self._init_chrome()
            self.driver.get(local_url(self.viewer))

    try:
        try:
            driver = _Driver(viewer, headless=True, print_logs=False)
        except Exception as exc:  # noqa: BLE001 - selenium raises many types; one line for the user
            raise StageFailed(
                f"cannot start headless chromium ({chromium}, {chromedriver}): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
        try:
            yield driver
        finally:
            driver.driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(
    viewer: Any, out: Path, *, size: tuple[int, int], chromium: str, chromedriver: str, timeout: float = 90.0
) -> Path:
    """Render ``viewer`` headless once all visible data has loaded, and save the PNG to ``out``."""
    with _browser(viewer, chromium=chromium, chromedriver=chromedriver, size=size):
        image = _capture(viewer, size=size, timeout=timeout)
    out.parent.mkdir(parents=True, exist_ok=True)
    from csc_common.fsutil import atomic_write_bytes

    atomic_write_bytes(out, image)
    return out


def _capture(viewer: Any, *, size: tuple[int, int], timeout: float) -> bytes:
    """neuroglancer's ``Viewer.screenshot`` with a timeout (its own waits forever)."""
    prior = viewer.config_state.state
    with viewer.config_state.txn() as s:
        s.show_ui_controls = False
        s.show_panel_borders = False
        s.viewer_size = list(size)
    try:
        for _ in range(5):  # the first capture may predate the resize
            done = threading.Event()
            result: list[Any] = [None]

            def handler(reply: Any, result: list[Any] = result, done: threading.Event = done) -> None:
                result[0] = reply
                done.set()

            viewer.async_screenshot(handler)
            if not done.wait(timeout):
                raise StageFailed(f"screenshot: the headless browser sent no picture within {timeout:.0f} s")
            shot = result[0].screenshot
            if (shot.width, shot.height) == tuple(size):
                return shot.image
        return shot.image
    finally:
        viewer.config_state.set_state(prior)
