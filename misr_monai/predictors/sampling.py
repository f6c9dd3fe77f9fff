# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The slice predictor of a diffusion model: K seeded samples per gap, their mean, and their standard deviation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from misr_monai.inferers import FastDDPMSampler
from misr_monai.predictors.network import NetworkPredictor

__all__ = ["SamplingPredictor"]

class SamplingPredictor(NetworkPredictor):
    """The volume path's slice predictor for a diffusion model (see :py:class:`misr_monai.predictors.network.NetworkPredictor`).

    The sampler is re-seeded for every volume, so the same file and seed give the same output. With
    ``sampler.num_samples`` K > 1, :py:meth:`predict_with_std` also gives the per-voxel standard deviation of the K
    samples, in the volume's own units.

    Args:
        network: the ``DiffusionModelUNet``.
        sampler: a :py:class:`FastDDPMSampler`.
        device, batch_size, percentile, progress, precision, bf16_psnr_change_db, bf16_faster_on: as
            ``NetworkPredictor``; bf16
            runs the sampler's network passes (and the target's base network) under bfloat16 autocast.
        std_calibration: ``(a, b)`` of :py:func:`~misr_monai.metrics.calibrated_std`, fitted on a validation split
            (``misr calibrate``), for the uncertainty map a user reads (:py:meth:`calibrated_std`). Defaults to None
            (the samples' raw std).
    """

    def __init__(self, network: torch.nn.Module, sampler: FastDDPMSampler, device: str | torch.device = "cpu",
                 batch_size: int = 8, percentile: float = 99.5, progress: bool = False, precision: str = "fp32",
                 bf16_psnr_change_db: float | None = None, bf16_faster_on: list[str] | None = None,
                 std_calibration: Sequence[float] | None = None) -> None:
        self.unet = network
        self.sampler = sampler
        self.std_calibration = None if std_calibration is None else (float(std_calibration[0]), float(std_calibration[1]))
        base = sampler.target.base
        # the sampler takes what its base network takes (neighbours, and the spline for a context model);
        # channels-last modules: oneDNN's fast layout (about 8% here)
        super().__init__(self._mean_and_std, device, batch_size, percentile, progress, precision, bf16_psnr_change_db,
                         context=getattr(base, "in_channels", 2) // 2, spline=getattr(base, "spline_skip", False),
                         modules=[network] + ([] if base is None else [base]), bf16_faster_on=bf16_faster_on)
        self.sampler.bf16 = self.sampler.target.bf16 = self.precision == "bf16"

    @property
    def trained_module(self) -> torch.nn.Module:
        """The refiner (``DiffusionModelUNet``); the frozen base is another bundle's model."""
        return self.unet

    @property
    def num_samples(self) -> int:
        """K, the samples per slice (the sampler's)."""
        return self.sampler.num_samples

    def _mean_and_std(self, pairs: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.sampler.sample_stats(pairs, self.unet), dim=1)

    def __call__(self, slices: np.ndarray) -> np.ndarray:
        return self.predict_with_std(slices)[0]

    def predict_with_std(self, slices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mean and the standard deviation of the sampled in-between slices, ``(m - 1, H, W)`` each."""
        self.sampler.reset()
        out = self.predict_channels(slices)
        return out[:, 0], out[:, 1]

    def calibrated_std(self, std: np.ndarray, slices: np.ndarray) -> np.ndarray:
        """The uncertainty map of ``std`` (from :py:meth:`predict_with_std` on ``slices``) recalibrated with
        ``std_calibration``, in the slices' units; ``std`` itself without a calibration."""
        from misr_monai.metrics import calibrated_std
        from misr_monai.transforms.utils import percentile_scale_factor

        if self.std_calibration is None:
            return std
        return calibrated_std(std, self.std_calibration, percentile_scale_factor(slices, self.percentile))
