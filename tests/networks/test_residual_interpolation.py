from __future__ import annotations

import io

import pytest
import torch

from misr_monai.networks.nets import ResidualInterpolationNet, warm_start

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


def test_warm_start_from_fewer_blocks_computes_the_same():
    torch.manual_seed(0)
    cnn = ResidualInterpolationNet(channels=8, num_res_blocks=5)
    torch.nn.init.normal_(cnn.tail.conv.weight, std=0.1)
    deep = warm_start(ResidualInterpolationNet(channels=8, num_res_blocks=8), cnn.state_dict())
    x = torch.rand(2, 2, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(deep.eval()(x), cnn.eval()(x), rtol=0, atol=0)
    for i in range(5):
        torch.testing.assert_close(deep.body[i].conv2.conv.weight, cnn.body[i].conv2.conv.weight)
    assert deep.body[6].conv1.conv.weight.abs().sum() > 0  # the new blocks can still learn
    assert deep.body[6].conv2.conv.weight.abs().sum() == 0


def test_warm_start_rejects_a_deeper_state_dict():
    with pytest.raises(ValueError, match="8 residual blocks"):
        warm_start(ResidualInterpolationNet(channels=8, num_res_blocks=5),
                   ResidualInterpolationNet(channels=8, num_res_blocks=8).state_dict())
