# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Reconstruction losses that keep fine detail: L1 plus the gradient variance loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["GradientVarianceLoss", "DetailedL1Loss"]

_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


class GradientVarianceLoss(torch.nn.Module):
    """The gradient variance loss (Abrahamyan et al., ICASSP 2022): the mean squared difference between the variances of
    the Sobel gradients of prediction and target over non-overlapping ``patch`` x ``patch`` windows, for both in-plane
    directions.

    An L1 model puts edges where they are but softens them (the median of the plausible slices); this loss asks each
    window to carry the target's amount of gradient, wherever within it, so it restores the contrast of fine detail
    without asking for the exact phase that the neighbouring slices cannot give.

    Args:
        patch: the window size; the image sides are cropped to a multiple of it. Defaults to 8.

    Example::

        >>> target = torch.rand(2, 1, 16, 16)
        >>> float(GradientVarianceLoss()(target, target))
        0.0
    """

    def __init__(self, patch: int = 8) -> None:
        super().__init__()
        self.patch = patch
        self.register_buffer("kernels", torch.stack([_SOBEL, _SOBEL.T])[:, None], persistent=False)

    def _variances(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = F.conv2d(x.reshape(b * c, 1, h, w).float(), self.kernels.to(x.device))
        h, w = (g.shape[-2] // self.patch) * self.patch, (g.shape[-1] // self.patch) * self.patch
        windows = F.unfold(g[..., :h, :w], self.patch, stride=self.patch).view(b * c, 2, self.patch**2, -1)
        return windows.var(dim=2)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self._variances(pred), self._variances(target))


class DetailedL1Loss(torch.nn.Module):
    """``L1(pred, target) + weight * GradientVarianceLoss(pred, target)``: the SRGAN's reconstruction loss.

    Args:
        weight: the gradient variance loss's weight. Defaults to 1.0.
        patch: its window (:py:class:`GradientVarianceLoss`). Defaults to 8.
    """

    def __init__(self, weight: float = 1.0, patch: int = 8) -> None:
        super().__init__()
        self.weight = weight
        self.variance = GradientVarianceLoss(patch)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        l1 = F.l1_loss(pred.float(), target.float())
        return l1 if self.weight == 0 else l1 + self.weight * self.variance(pred, target)
