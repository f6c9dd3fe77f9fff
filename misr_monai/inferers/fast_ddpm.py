# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Fast-DDPM slice sampling on MONAI's ``DiffusionInferer``: what is diffused (:py:class:`SliceTarget`: the middle slice,
its residual over the neighbours' mean, or over a frozen network's prediction) and the seeded K-sample inferer. The
network is MONAI's ``DiffusionModelUNet`` with the noisy target and the base's inputs concatenated on channels
(``mode="concat"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from monai.inferers import DiffusionInferer, Inferer

from misr_monai.networks.schedulers import FastDDIMScheduler

__all__ = ["SliceTarget", "FastDDPMSampler"]

class SliceTarget:
    """What is diffused: ``(slice - skip) * scale``, and what the network is given beside the noisy value.

    ``skip`` is one of

    - ``"base"``: a frozen network's prediction of the slice (predict-and-refine: Whang et al., CVPR 2022; Shang et
      al., AAAI 2024). The prediction is also a condition channel, after the neighbours. With x0 ("sample")
      prediction and the zero-initialised output convolution of ``DiffusionModelUNet``, an untrained refiner
      returns the base prediction exactly.
    - ``"mean"``: the neighbours' mean (a residual over linear interpolation);
    - ``"none"``: 0.5, so that with ``scale=2`` a slice in [0, 1] is diffused in [-1, 1] (the official Fast-DDPM's
      image target).

    Args:
        skip: ``"base"``, ``"mean"`` or ``"none"``. Defaults to ``"mean"``.
        scale: the factor applied after subtracting the skip: about the inverse of the residual's standard deviation,
            so that the diffused value has about unit variance. Defaults to 2.0.
        base: the frozen ``(B, 2K, H, W) -> (B, 1, H, W)`` network of ``skip="base"``; it is put in eval mode and its
            parameters stop requiring gradients. Defaults to None.
        bf16: run ``base`` under bfloat16 autocast. Defaults to False.

    Example::

        >>> target = SliceTarget("mean", scale=10.0)
        >>> neighbours = torch.rand(1, 2, 4, 4)
        >>> condition, skip = target.condition(neighbours)
        >>> x0 = target.encode(neighbours[:, :1], skip)
        >>> torch.allclose(target.decode(x0, skip), neighbours[:, :1])
        True
    """

    SKIPS = ("base", "mean", "none")

    def __init__(self, skip: str = "mean", scale: float = 2.0, base: torch.nn.Module | None = None,
                 bf16: bool = False) -> None:
        if skip not in self.SKIPS:
            raise ValueError(f"skip must be one of {self.SKIPS}, got {skip!r}.")
        if (skip == "base") != (base is not None):
            raise ValueError("a base network is given exactly when skip is 'base'.")
        self.skip_kind, self.scale, self.base, self.bf16 = skip, scale, base, bf16
        if base is not None:
            base.eval().requires_grad_(False)

    def condition(self, neighbours: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """The network's condition and the skip for ``neighbours`` (B, 2K, H, W)."""
        if self.base is None:
            return neighbours, neighbours.mean(dim=1, keepdim=True) if self.skip_kind == "mean" else 0.5
        with torch.no_grad(), torch.autocast(neighbours.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            skip = self.base(neighbours).float()
        return torch.cat([neighbours, skip], dim=1), skip

    def encode(self, target: torch.Tensor, skip: torch.Tensor | float) -> torch.Tensor:
        """The diffused value of ``target`` (B, 1, H, W) given its ``skip``."""
        return (target - skip) * self.scale

    def decode(self, x0: torch.Tensor, skip: torch.Tensor | float) -> torch.Tensor:
        """The slice of a diffused value: the inverse of :py:meth:`encode`."""
        return x0 / self.scale + skip


class FastDDPMSampler(Inferer):
    """Sample middle slices from what the base takes (neighbours, and a context base's spline): ``(B, C, H, W) ->
    (B, 1, H, W)``, the mean of ``num_samples``.

    DDIM (the scheduler's eta, 0 by default) over its steps, from Gaussian noise drawn with a seeded generator;
    :py:meth:`reset` re-seeds it, so the same inputs after a reset give bit-identical samples on CPU. As an inferer
    it fits ``SupervisedEvaluator`` (validation) and, through :py:class:`SamplingPredictor`, the volume path.

    Args:
        scheduler: a :py:class:`FastDDIMScheduler`.
        target: what was diffused. Defaults to ``SliceTarget()``.
        num_samples: samples per slice (K). With K > 1, :py:meth:`sample_stats` also gives the per-pixel standard
            deviation. Defaults to 1.
        seed: of the noise. Defaults to 0.
        bf16: bfloat16 autocast of the network. Defaults to False.
        divisor: slices are padded (edge values) to a multiple of this for the U-Net, then cropped back.
            Defaults to 8 (a 4-level U-Net).
    """

    def __init__(self, scheduler: FastDDIMScheduler, target: SliceTarget | None = None, num_samples: int = 1,
                 seed: int = 0, bf16: bool = False, divisor: int = 8) -> None:
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}.")
        self.scheduler = scheduler
        self.target = SliceTarget() if target is None else target
        self.num_samples = num_samples
        self.seed = seed
        self.bf16 = bf16
        self.divisor = divisor
        self.inferer = DiffusionInferer(scheduler)
        self.reset()

    def reset(self) -> None:
        """Re-seed the noise generator (also the scheduler's, for eta > 0)."""
        self.generator = torch.Generator().manual_seed(self.seed)
        self.scheduler.generator = self.generator

    def sample_stats(self, inputs: torch.Tensor, network: Callable) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and the standard deviation (ddof 0; zero for K = 1) of ``num_samples`` sampled slices."""
        b, _, h, w = inputs.shape
        pad = (0, -w % self.divisor, 0, -h % self.divisor)
        condition, skip = self.target.condition(inputs.float())  # the base network sees the slices unpadded
        condition = F.pad(condition, pad, mode="replicate").repeat(self.num_samples, 1, 1, 1)
        if torch.is_tensor(skip):
            skip = F.pad(skip, pad, mode="replicate").repeat(self.num_samples, 1, 1, 1)
        noise = torch.randn((b * self.num_samples, 1, *condition.shape[2:]), generator=self.generator)
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            x0 = self.inferer.sample(noise.to(inputs.device), network, self.scheduler, conditioning=condition,
                                     mode="concat", verbose=False)
        slices = self.target.decode(x0.float(), skip)[..., :h, :w].reshape(self.num_samples, b, 1, h, w)
        return slices.mean(0), slices.std(0, correction=0)

    def __call__(self, inputs: torch.Tensor, network: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.sample_stats(inputs, network)[0]
