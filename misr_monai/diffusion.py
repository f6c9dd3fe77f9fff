# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Fast-DDPM for slice interpolation (Jiang et al., IEEE JBHI 2025) on MONAI's diffusion components.

Training and sampling use the same 10 timesteps of a 1000-step linear schedule. The network is MONAI's
``DiffusionModelUNet`` with the noisy target and the two neighbouring slices concatenated on channels (``mode="concat"``).
What is diffused is the middle slice, its residual over the neighbours' mean, or its residual over a frozen network's
prediction (predict-and-refine; :py:class:`SliceTarget`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from monai.engines import DiffusionPrepareBatch, default_prepare_batch
from monai.inferers import DiffusionInferer, Inferer
from monai.networks.schedulers import DDIMScheduler

from misr_monai.predictors import NetworkPredictor

__all__ = [
    "FAST_DDPM_TIMESTEPS",
    "FastDDIMScheduler",
    "SliceTarget",
    "FastDDPMPrepareBatch",
    "FastDDPMSampler",
    "SamplingPredictor",
    "warm_start_refiner",
]

FAST_DDPM_TIMESTEPS = (0, 199, 399, 599, 699, 799, 849, 899, 949, 999)
"""The official non-uniform Fast-DDPM set: 4 steps below t = 699 (40%), 6 in the noisy end (60%)."""


class FastDDIMScheduler(DDIMScheduler):
    """``DDIMScheduler`` over an arbitrary set of timesteps, such as the non-uniform Fast-DDPM set.

    MONAI's ``DDIMScheduler.step`` takes the previous timestep as ``t - num_train_timesteps // num_inference_steps``,
    which holds only for evenly spaced steps. Here the previous timestep is the next entry of the (descending)
    ``timesteps``, and the alpha product after the last one is ``final_alpha_cumprod``.

    Args:
        timesteps: the steps, in any order, or an int ``n`` for ``n`` evenly spaced steps as MONAI spaces them.
            Defaults to :py:data:`FAST_DDPM_TIMESTEPS`.
        num_train_timesteps, schedule, clip_sample, set_alpha_to_one, prediction_type, schedule_args:
            as ``DDIMScheduler``. ``clip_sample`` defaults to False: the diffused values are not confined to [-1, 1].
        eta: DDIM's eta for the steps that MONAI's ``DiffusionInferer`` takes (0: deterministic DDIM, 1: DDPM-like
            fresh noise at every step). Its noise is drawn with ``generator`` when one is set (the sampler sets its
            own, so that samples stay reproducible). Defaults to 0.

    Example::

        >>> scheduler = FastDDIMScheduler(schedule="linear_beta", beta_start=1e-4, beta_end=0.02)
        >>> scheduler.timesteps.tolist()
        [999, 949, 899, 849, 799, 699, 599, 399, 199, 0]
    """

    def __init__(
        self,
        timesteps: Sequence[int] | int = FAST_DDPM_TIMESTEPS,
        num_train_timesteps: int = 1000,
        schedule: str = "linear_beta",
        clip_sample: bool = False,
        set_alpha_to_one: bool = True,
        prediction_type: str = "epsilon",
        eta: float = 0.0,
        **schedule_args,
    ) -> None:
        super().__init__(num_train_timesteps, schedule, clip_sample, set_alpha_to_one, 0, prediction_type,
                         **schedule_args)
        self.set_timesteps(timesteps)
        self.eta = eta
        self.generator: torch.Generator | None = None

    def set_timesteps(self, num_inference_steps: Sequence[int] | int, device: str | torch.device | None = None) -> None:
        """Use the given steps (sorted descending, duplicates rejected), or ``n`` evenly spaced ones."""
        if isinstance(num_inference_steps, int):
            super().set_timesteps(num_inference_steps, device)
            return
        steps = sorted((int(t) for t in num_inference_steps), reverse=True)
        if len(set(steps)) != len(steps) or not steps or steps[-1] < 0 or steps[0] >= self.num_train_timesteps:
            raise ValueError(f"timesteps must be distinct and in [0, {self.num_train_timesteps}), got {steps}.")
        self.num_inference_steps = len(steps)
        self.timesteps = torch.tensor(steps, dtype=torch.long, device=device)

    def previous_timestep(self, timestep: int) -> int:
        """The step after ``timestep`` in sampling order, or -1 after the last."""
        steps = self.timesteps.tolist()
        i = steps.index(int(timestep))
        return steps[i + 1] if i + 1 < len(steps) else -1

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        eta: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DDIM update (Song et al., eq. 12) from ``timestep`` to the next step of the set; ``eta`` and
        ``generator`` default to the scheduler's.

        Returns:
            the sample at the next step, and the predicted original sample.
        """
        prev = self.previous_timestep(timestep)
        alpha_t = self.alphas_cumprod[int(timestep)]
        alpha_prev = self.alphas_cumprod[prev] if prev >= 0 else self.final_alpha_cumprod
        if self.prediction_type == "epsilon":
            eps = model_output
            x0 = (sample - (1 - alpha_t) ** 0.5 * eps) / alpha_t**0.5
        elif self.prediction_type == "sample":
            x0 = model_output
            eps = (sample - alpha_t**0.5 * x0) / (1 - alpha_t) ** 0.5
        else:  # v_prediction
            x0 = alpha_t**0.5 * sample - (1 - alpha_t) ** 0.5 * model_output
            eps = alpha_t**0.5 * model_output + (1 - alpha_t) ** 0.5 * sample
        if self.clip_sample:
            x0 = torch.clamp(x0, *self.clip_sample_values)
        eta = self.eta if eta is None else eta
        sigma = eta * ((1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)) ** 0.5
        prev_sample = alpha_prev**0.5 * x0 + (1 - alpha_prev - sigma**2) ** 0.5 * eps
        if eta > 0:
            noise = torch.randn(model_output.shape, dtype=model_output.dtype, generator=generator or self.generator)
            prev_sample = prev_sample + sigma * noise.to(model_output.device)
        return prev_sample, x0


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


class FastDDPMPrepareBatch(DiffusionPrepareBatch):
    """``DiffusionPrepareBatch`` for slice triplets: t drawn from the Fast-DDPM set, the neighbours as the condition.

    The batch's ``image`` (the neighbours, and the base prediction with ``SliceTarget("base")``) is the concatenated
    condition, its ``label`` (the middle slice) is encoded by ``target`` and noised; the loss target is the noise, the
    velocity ``sqrt(alpha_t) noise - sqrt(1 - alpha_t) x0`` (``scheduler.prediction_type`` ``"v_prediction"``, as
    MONAI's ``VPredictionPrepareBatch``) or x0 itself (``"sample"``). For ``SupervisedTrainer`` with
    ``DiffusionInferer``.

    Args:
        timesteps: the training steps. Defaults to :py:data:`FAST_DDPM_TIMESTEPS`.
        target: what is diffused. Defaults to ``SliceTarget()`` (the scaled residual).
        num_train_timesteps: of the schedule. Defaults to 1000.
        scheduler: the schedule, whose ``prediction_type`` sets the loss target. Defaults to None (noise prediction).
    """

    def __init__(
        self,
        timesteps: Sequence[int] = FAST_DDPM_TIMESTEPS,
        target: SliceTarget | None = None,
        num_train_timesteps: int = 1000,
        scheduler: FastDDIMScheduler | None = None,
    ) -> None:
        super().__init__(num_train_timesteps)
        self.timesteps = torch.as_tensor(sorted(set(timesteps)), dtype=torch.long)
        self.target = SliceTarget() if target is None else target
        self.scheduler = scheduler

    def get_target(self, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        prediction = "epsilon" if self.scheduler is None else self.scheduler.prediction_type
        if prediction == "v_prediction":
            return self.scheduler.get_velocity(images, noise, timesteps)
        return images if prediction == "sample" else noise

    def get_timesteps(self, images: torch.Tensor) -> torch.Tensor:
        index = torch.randint(0, len(self.timesteps), (images.shape[0],))
        return self.timesteps[index].to(images.device)

    def __call__(self, batchdata: dict[str, torch.Tensor], device: str | torch.device | None = None,
                 non_blocking: bool = False, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        neighbours, slices = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        neighbours, slices = torch.as_tensor(neighbours), torch.as_tensor(slices)
        condition, skip = self.target.condition(neighbours)
        x0 = self.target.encode(slices, skip)
        noise = self.get_noise(x0)
        timesteps = self.get_timesteps(x0)
        kwargs = {"noise": noise, "timesteps": timesteps, "condition": condition, "mode": "concat"}
        return x0, self.get_target(x0, noise, timesteps), (), kwargs


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


class SamplingPredictor(NetworkPredictor):
    """The volume path's slice predictor for a diffusion model (see :py:class:`misr_monai.predictors.NetworkPredictor`).

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


def warm_start_refiner(network: torch.nn.Module, state_dict: dict) -> torch.nn.Module:
    """Load a refiner's weights into ``network``, also those of a refiner over a 2-slice base into one over a context
    base.

    A refiner over a 2-slice base takes 4 channels (the noisy value, slices i-1 and i+1, the base's prediction); one
    over a context base with K neighbours a side takes 2K + 3 (the noisy value, the 2K neighbours, the spline, the
    base's prediction). The first convolution's kernels of the four images go to where those images now are, the
    outer neighbours and the spline start at zero, so the refiner starts as it was trained. Any other state dict is
    loaded strictly.

    Args:
        network: a ``DiffusionModelUNet``, changed in place.
        state_dict: its weights, or those of a refiner over a 2-slice base.

    Returns:
        ``network``.
    """
    key = "conv_in.conv.weight"
    old, own = state_dict.get(key), network.state_dict().get(key)
    if old is not None and own is not None and old.shape[1] == 4 and own.shape[1] > 4 and own.shape[1] % 2:
        k = (own.shape[1] - 3) // 2
        kernel = torch.zeros_like(own)
        kernel[:, [0, k, k + 1, own.shape[1] - 1]] = old
        state_dict = {**state_dict, key: kernel}
    network.load_state_dict(state_dict)
    return network
