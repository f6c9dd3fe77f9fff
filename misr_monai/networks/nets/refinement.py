# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""A frozen slice predictor refined by a residual network: the SRGAN generator over ``context_cnn``."""

from __future__ import annotations

import torch
import torch.nn as nn

from monai.networks.blocks import Convolution

from .residual_interpolation import ResidualInterpolationNet, _ResidualBlock

__all__ = ["RefinedInterpolationNet"]


class RefinedInterpolationNet(nn.Module):
    """``base(x) + strength * refiner(x, base(x))``: a frozen base network and a trained residual over it.

    The refiner (Conv, residual blocks, Conv) sees the base's input (the neighbouring slices, the condition maps and
    the spline of a context network) and the base's prediction. Its last convolution starts at zero, so untrained the
    network is the base exactly; with ``init_from_base`` its head and blocks start as the base's (a PSNR-oriented warm
    start, as ESRGAN's generator starts from its PSNR model), the head's kernel for the base's prediction at zero.
    ``strength`` blends the two: 0 gives the base, 1 the full refinement (the user's sharpness knob).

    The base's parameters are frozen (``requires_grad=False``); the state dict holds both networks, so one file is
    the whole model.

    Args:
        base: the network refined, taking ``in_channels`` channels and returning one slice.
        channels: the refiner's feature width. Defaults to 64.
        num_res_blocks: the refiner's residual blocks. Defaults to 5.
        strength: the weight of the refinement, in [0, 1]. Defaults to 1.0.
        init_from_base: start the refiner's head and blocks from the base's (a ``ResidualInterpolationNet`` of the
            same width and depth). Defaults to False.
        act: activation factory name. Defaults to ``"relu"``.

    Example::

        >>> base = ResidualInterpolationNet(in_channels=7, channels=8, num_res_blocks=1, spline_skip=True, conditions=2)
        >>> net = RefinedInterpolationNet(base, channels=8, num_res_blocks=1)
        >>> x = torch.rand(2, 7, 16, 16)
        >>> bool((net(x) == base(x)).all())  # untrained: the base exactly
        True

    Raises:
        ValueError: ``strength`` outside [0, 1], or ``init_from_base`` with a base of another shape.
    """

    def __init__(self, base: ResidualInterpolationNet, channels: int = 64, num_res_blocks: int = 5,
                 strength: float = 1.0, init_from_base: bool = False, act: str = "relu") -> None:
        super().__init__()
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}.")
        self.base = base.requires_grad_(False)
        self.in_channels = base.in_channels  # the base's input contract, which slice predictors read
        self.spline_skip = getattr(base, "spline_skip", False)
        self.conditions = getattr(base, "conditions", 0)
        self.strength = float(strength)
        self.head = Convolution(2, self.in_channels + 1, channels, kernel_size=3, act=act, norm=None)
        self.body = nn.Sequential(*(_ResidualBlock(2, channels, act) for _ in range(num_res_blocks)))
        self.tail = Convolution(2, channels, 1, kernel_size=3, conv_only=True)
        if init_from_base:
            self._start_from_base()
        nn.init.zeros_(self.tail.conv.weight)
        nn.init.zeros_(self.tail.conv.bias)

    def _start_from_base(self) -> None:
        base = self.base.state_dict()
        head = base.get("head.conv.weight")
        if head is None or head.shape[0] != self.head.conv.out_channels or len(self.base.body) != len(self.body):
            raise ValueError("init_from_base needs a ResidualInterpolationNet base of the refiner's width and depth.")
        with torch.no_grad():
            self.head.conv.weight.copy_(torch.cat([head, torch.zeros_like(head[:, :1])], dim=1))
            self.head.conv.bias.copy_(base["head.conv.bias"])
            self.body.load_state_dict({k[len("body."):]: v for k, v in base.items() if k.startswith("body.")})

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The refiner's parameters (the base's are frozen): what an optimizer should get."""
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        estimate = self.base(x)
        if self.strength == 0.0:
            return estimate
        residual = self.tail(self.body(self.head(torch.cat([x, estimate.to(x.dtype)], dim=1))))
        return estimate + self.strength * residual
