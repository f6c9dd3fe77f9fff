from __future__ import annotations

import io

import pytest
import torch

from misr_monai.networks.nets import ResidualInterpolationNet

CASES = [
    ({}, (2, 2, 32, 32), (2, 1, 32, 32)),
    ({"channels": 8, "num_res_blocks": 1}, (1, 2, 17, 23), (1, 1, 17, 23)),
    ({"channels": 8, "num_res_blocks": 0, "in_channels": 4, "out_channels": 2}, (3, 4, 16, 16), (3, 2, 16, 16)),
]


@pytest.mark.parametrize("kwargs,in_shape,out_shape", CASES)
def test_shape(kwargs, in_shape, out_shape):
    net = ResidualInterpolationNet(**kwargs).eval()
    with torch.no_grad():
        assert net(torch.rand(in_shape)).shape == out_shape


def test_starts_as_linear_interpolation_and_learns_a_residual():
    net = ResidualInterpolationNet(channels=8, num_res_blocks=1).eval()
    x = torch.rand(2, 2, 16, 16)
    torch.testing.assert_close(net(x), x.mean(1, keepdim=True))  # zero-initialised tail
    torch.nn.init.normal_(net.tail.conv.weight)
    assert not torch.allclose(net(x), x.mean(1, keepdim=True))


def test_torchscript_round_trip():
    net = ResidualInterpolationNet(channels=8, num_res_blocks=2).eval()
    torch.nn.init.normal_(net.tail.conv.weight, std=0.1)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = torch.rand(2, 2, 24, 24)
    torch.testing.assert_close(loaded(x), net(x))


@pytest.mark.parametrize(
    "kwargs", [{"channels": 0}, {"in_channels": 0}, {"out_channels": -1}, {"num_res_blocks": -1}]
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        ResidualInterpolationNet(**kwargs)
