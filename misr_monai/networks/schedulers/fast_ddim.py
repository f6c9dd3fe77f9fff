# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Fast-DDPM's scheduler (Jiang et al., IEEE JBHI 2025): MONAI's DDIM over the paper's 10 non-uniform timesteps of a
1000-step linear schedule, the same steps for training and sampling."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from monai.networks.schedulers import DDIMScheduler

__all__ = ["FAST_DDPM_TIMESTEPS", "FastDDIMScheduler"]

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
