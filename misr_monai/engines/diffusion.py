# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Fast-DDPM training batches on MONAI's ``DiffusionPrepareBatch``: a random step of the Fast-DDPM set, the noised
target (:py:class:`~misr_monai.inferers.SliceTarget`) and the base's inputs as the condition."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from monai.engines import DiffusionPrepareBatch, default_prepare_batch

from misr_monai.inferers import SliceTarget
from misr_monai.networks.schedulers import FAST_DDPM_TIMESTEPS, FastDDIMScheduler

__all__ = ["FastDDPMPrepareBatch"]

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
