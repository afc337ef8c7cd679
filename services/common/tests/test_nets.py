"""Shared U-Nets and checkpoints (csc_common.nets)."""

import pytest
import torch
from csc_common import nets
from csc_common.errors import InputError


@pytest.mark.parametrize(("dims", "shape"), [(3, (2, 1, 8, 12, 16)), (2, (2, 1, 3, 12, 16))])
def test_unet_keeps_spatial_shape_and_gives_one_channel_per_class(dims, shape):
    model = nets.build_model({"dims": dims, "out_channels": 5, "depth": 3, "base_features": 4})
    assert model(torch.rand(shape)).shape == (shape[0], 5, *shape[2:])


def test_2d_unet_runs_slices_independently():
    torch.manual_seed(0)
    model = nets.build_model({"dims": 2, "out_channels": 2, "depth": 2, "base_features": 4}).eval()
    x = torch.rand(1, 1, 3, 8, 8)
    with torch.no_grad():
        whole = model(x)
        one = model(x[:, :, 1:2])
    torch.testing.assert_close(whole[:, :, 1:2], one)


def test_downsampling_multiple():
    assert nets.downsampling_multiple({"dims": 3, "depth": 4}) == (8, 8, 8)
    assert nets.downsampling_multiple({"dims": 2, "depth": 3}) == (1, 4, 4)


@pytest.mark.parametrize("bad", [{"dims": 4}, {"depth": 0}, {"norm": "layer"}, {"name": "vitnet"}, {"widht": 3}])
def test_bad_architecture_is_input_error(bad):
    with pytest.raises(InputError, match="architecture"):
        nets.build_model(bad)


def test_checkpoint_round_trip_and_corruption(tmp_path):
    arch = {"dims": 3, "out_channels": 2, "depth": 2, "base_features": 4, "norm": "batch"}
    model = nets.build_model(arch)
    opt = torch.optim.AdamW(model.parameters())
    path = nets.save_checkpoint(tmp_path / "ck.pt", model, arch, optimizer=opt, iteration=7, extra={"a": 1})
    state = nets.load_checkpoint(path)
    assert state["iteration"] == 7 and state["extra"] == {"a": 1} and "optimizer" in state
    loaded, got_arch = nets.load_model(path, {**arch, "parameters": 123})
    assert got_arch == nets.normalize_architecture(arch) and not loaded.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    with pytest.raises(InputError, match="does not match the manifest"):
        nets.load_model(path, {**arch, "base_features": 8})
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InputError, match="corrupt or unreadable checkpoint"):
        nets.load_checkpoint(path)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a csc checkpoint"):
        nets.load_checkpoint(tmp_path / "other.pt")
