"""Neuroglancer edge without a browser: data adaptation, source transforms, the server and its URL."""

import socket
import urllib.request

import numpy as np
import pytest
from csc_common.errors import InputError
from csc_viewer import ng
from csc_viewer.catalog import Selection, build_catalog, find_manifests, load_manifests
from csc_viewer.layers import build_views


@pytest.fixture(scope="module")
def views(demo):
    cat = build_catalog(load_manifests(find_manifests([], demo.root)))
    return build_views(Selection.parse(kinds="*").apply(cat))


def test_served_array_adapts_each_role():
    raw = np.array([[[0, 3, 255]]], np.uint8)
    assert ng.ServedArray(raw, "mask").dtype == np.uint8
    assert ng.ServedArray(raw, "mask")[...].tolist() == [[[0, 1, 1]]]
    prob = ng.ServedArray(raw, "probability", scale=1 / 255)
    assert prob.dtype == np.float32 and prob[...][0, 0, 2] == pytest.approx(1.0)
    assert ng.ServedArray(raw.astype(np.int64), "labels").dtype == np.uint64
    assert ng.ServedArray(raw, "labels")[...].dtype == np.uint32
    assert ng.ServedArray(raw.astype(np.float64), "em").dtype == np.float32


def test_layers_carry_fractional_translations(views):
    view = views[0]
    spec = view.layer("crop1/gt/mito")
    layer = ng.make_layer(spec)
    src = layer.source[0]
    matrix = np.asarray(src.transform.matrix)
    assert matrix[:, 3] == pytest.approx(spec.voxel_offset)  # 3.25, 12.75, 11.75: not integers
    assert list(src.transform.output_dimensions.scales) == pytest.approx([v * 1e-9 for v in spec.voxel_size])  # metres
    assert type(layer).__name__ == "SegmentationLayer"
    ecs = ng.make_layer(view.layer("crop1/gt/ecs"))
    assert type(ecs).__name__ == "ImageLayer" and "emitRGBA" in ecs.shader


def test_serve_prints_reachable_urls(views):
    served = ng.serve(views, bind_address="127.0.0.1", port=0)
    try:
        (url,) = served.urls()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200 and b"<html" in resp.read(2000).lower()
        state = served.viewers[0].state
        assert [layer.name for layer in state.layers][0] == "fibsem"
        assert list(state.dimensions.names) == ["x", "y", "z"]  # neuroglancer's xy panel = first two
        assert list(state.position) == pytest.approx(list(views[0].position[::-1]))
    finally:
        ng.stop_server()


def test_port_in_use_is_one_clear_error(views):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(InputError, match=f"--port {port} .* is in use"):
            ng.serve(views, bind_address="127.0.0.1", port=port)
    ng.stop_server()
