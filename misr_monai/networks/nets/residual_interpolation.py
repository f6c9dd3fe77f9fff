# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Residual Interpolation CNN: predicts slice i from its 2K neighbours (i-1, i+1; or i-3, i-1, i+1, i+3) as a residual
over their interpolation, or over the cubic spline through the volume's slices (the context CNN)."""

from __future__ import annotations

import torch
import torch.nn as nn

from monai.networks.blocks import Convolution

__all__ = ["ResidualInterpolationNet", "SKIP_FILTERS", "warm_start"]

SKIP_FILTERS = {2: (0.5, 0.5), 4: (-1 / 16, 9 / 16, 9 / 16, -1 / 16)}
"""The global skip's interpolation filter over the input channels, per channel count (2K neighbours)."""


class _ResidualBlock(nn.Module):
    """conv-act-conv with an identity skip."""

    def __init__(self, spatial_dims: int, channels: int, act: str | tuple) -> None:
        super().__init__()
        self.conv1 = Convolution(spatial_dims, channels, channels, kernel_size=3, act=act, norm=None)
        self.conv2 = Convolution(spatial_dims, channels, channels, kernel_size=3, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class ResidualInterpolationNet(nn.Module):
    """Conv(in->channels)+act, ``num_res_blocks`` residual blocks, Conv(channels->out), plus a global skip.

    The global skip adds the interpolation of the neighbouring slices that the input channels hold: their mean for 2
    (slices i-1, i+1), the four-tap cubic-like filter (-1, 9, 9, -1) / 16 for 4 (slices i-3, i-1, i+1, i+3). With
    ``spline_skip`` the last of the ``2K + 1`` input channels is an estimate of slice i (the natural cubic spline
    through the volume's slices, evaluated at i: the protocol's ``cubic``), and the skip is that channel. The network
    learns the residual over its skip and starts exactly at it when its last layer is zero.

    With ``conditions`` c, the c channels before the spline are constant maps that tell the network where the new slice
    lies and how the slices were acquired (the context models: the position ``t`` of the new slice in its gap, and the
    slice profile's width ``w`` over the kept-slice spacing; :py:class:`~misr_monai.transforms.RandSliceGap`), so one
    network serves every factor and profile.

    Args:
        spatial_dims: 2 for slices. Defaults to 2.
        in_channels: input channels: 2K neighbouring slices (2 or 4), or 2K + 1 with ``spline_skip`` (3, 5, 7...).
            Defaults to 2.
        out_channels: slices predicted. Defaults to 1.
        channels: feature width. Defaults to 64.
        num_res_blocks: residual blocks. Defaults to 5.
        act: activation factory name or ``(name, args)``. Defaults to ``"relu"``.
        zero_init_last: start the last convolution at zero, i.e. at the skip's interpolation. Defaults to True.
        spline_skip: the last input channel is the estimate used as the skip. Defaults to False.
        conditions: constant condition channels just before the spline channel (``spline_skip`` only). Defaults to 0.

    Example::

        >>> net = ResidualInterpolationNet(channels=8, num_res_blocks=1)
        >>> net(torch.rand(3, 2, 32, 32)).shape
        torch.Size([3, 1, 32, 32])
        >>> context = ResidualInterpolationNet(in_channels=5, channels=8, num_res_blocks=1, spline_skip=True)
        >>> x = torch.rand(3, 5, 32, 32)  # slices i-3, i-1, i+1, i+3 and the spline at i
        >>> bool((context(x) == x[:, 4:]).all())  # untrained: the spline exactly
        True
        >>> anywhere = ResidualInterpolationNet(in_channels=7, channels=8, num_res_blocks=1, spline_skip=True, conditions=2)
        >>> tuple(anywhere(torch.rand(3, 7, 32, 32)).shape)  # slices k-1 .. k+2, t, w and the spline at k + t
        (3, 1, 32, 32)

    Raises:
        ValueError: non-positive ``channels``, ``in_channels`` or ``out_channels``, negative ``num_res_blocks``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 2,
        out_channels: int = 1,
        channels: int = 64,
        num_res_blocks: int = 5,
        act: str | tuple = "relu",
        zero_init_last: bool = True,
        spline_skip: bool = False,
        conditions: int = 0,
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, channels) < 1:
            raise ValueError(f"in_channels, out_channels and channels must be positive, got {in_channels}, "
                             f"{out_channels}, {channels}.")
        if num_res_blocks < 0:
            raise ValueError(f"num_res_blocks must not be negative, got {num_res_blocks}.")
        if conditions and not spline_skip or conditions < 0:
            raise ValueError(f"conditions must be 0, or positive with spline_skip, got {conditions}.")
        if spline_skip and (in_channels - conditions < 3 or (in_channels - conditions) % 2 == 0):
            raise ValueError(f"with spline_skip, in_channels must be 2K + {conditions} + 1 (2K neighbours, {conditions} "
                             f"conditions and the spline), got {in_channels}.")
        if not spline_skip and in_channels not in SKIP_FILTERS:
            raise ValueError(f"in_channels must be one of {sorted(SKIP_FILTERS)} (2K neighbouring slices), got {in_channels}.")
        self.in_channels = in_channels
        self.spline_skip = spline_skip
        self.conditions = conditions
        self.head = Convolution(spatial_dims, in_channels, channels, kernel_size=3, act=act, norm=None)
        self.body = nn.Sequential(*(_ResidualBlock(spatial_dims, channels, act) for _ in range(num_res_blocks)))
        self.tail = Convolution(spatial_dims, channels, out_channels, kernel_size=3, conv_only=True)
        if zero_init_last:
            nn.init.zeros_(self.tail.conv.weight)
            nn.init.zeros_(self.tail.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spline_skip:
            estimate = x[:, -1:]
        elif self.in_channels == 2:
            estimate = x.mean(dim=1, keepdim=True)
        else:  # SKIP_FILTERS[4]
            estimate = (9 * (x[:, 1:2] + x[:, 2:3]) - (x[:, 0:1] + x[:, 3:4])) / 16
        return estimate + self.tail(self.body(self.head(x)))


def warm_start(network: ResidualInterpolationNet, state_dict: dict) -> ResidualInterpolationNet:
    """Load the weights of a smaller ResidualInterpolationNet into ``network``: fewer (or as many) residual blocks, and
    for a context network (``spline_skip``) optionally one input channel fewer.

    The head, the first blocks and the tail are copied; each extra block keeps its first convolution and gets a zero
    second convolution, so it starts as an identity. This is how the SRGAN generator (8 blocks) starts from the residual
    CNN (5 blocks). A state dict of a 2K-neighbour network (``residual_cnn_4slice``) given to a context network of the
    same K gets a zero head kernel for the spline channel, so the body sees what it was trained on while the skip is
    the spline instead of the four-tap filter. A context network without conditions given to one with ``conditions``
    (the x2 ``context_cnn`` of release 0.7.0 to the one told ``t`` and ``w``) gets zero head kernels for them: it starts
    as the given network at every position and profile.

    Args:
        network: the deeper (or spline-taking) network, changed in place.
        state_dict: a state dict of the smaller network (same width and output channels).

    Returns:
        ``network``.

    Raises:
        ValueError: the state dict has more blocks than ``network``, or its input channels do not fit.

    Example::

        >>> small = ResidualInterpolationNet(channels=8, num_res_blocks=1)
        >>> deep = warm_start(ResidualInterpolationNet(channels=8, num_res_blocks=3), small.state_dict())
        >>> four = ResidualInterpolationNet(in_channels=4, channels=8, num_res_blocks=1)
        >>> context = warm_start(ResidualInterpolationNet(in_channels=5, channels=8, num_res_blocks=1, spline_skip=True),
        ...                      four.state_dict())
    """
    own = network.state_dict()
    state_dict = dict(state_dict)
    blocks = {int(k.split(".")[1]) for k in state_dict if k.startswith("body.")}
    if len(blocks) > len(network.body):
        raise ValueError(f"the state dict has {len(blocks)} residual blocks, the network only {len(network.body)}.")
    head, ours = state_dict.get("head.conv.weight"), own["head.conv.weight"]
    if head is not None and head.shape[1] != ours.shape[1]:
        neighbours = ours.shape[1] - network.conditions - 1
        zeros = torch.zeros_like(ours[:, :1])
        if network.spline_skip and head.shape[1] == neighbours:
            head = torch.cat([head, zeros], dim=1)
        if not (network.spline_skip and head.shape[1] == neighbours + 1):
            raise ValueError(f"the state dict's network takes {head.shape[1]} input channels, this one "
                             f"{ours.shape[1]}; only a spline channel and condition channels can be added.")
        state_dict["head.conv.weight"] = torch.cat([head[:, :-1], *[zeros] * network.conditions, head[:, -1:]], dim=1)
    own.update(state_dict)
    network.load_state_dict(own)
    for block in list(network.body)[len(blocks):]:
        nn.init.zeros_(block.conv2.conv.weight)
        nn.init.zeros_(block.conv2.conv.bias)
    return network
