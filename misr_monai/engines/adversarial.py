# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""MONAI's ``AdversarialTrainer`` for paired image-to-image training: targets as reals, a conditional discriminator."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from monai.engines import AdversarialTrainer
from monai.inferers import Inferer
from monai.utils import AdversarialIterationEvents, AdversarialKeys, CommonKeys

__all__ = ["PairedAdversarialTrainer", "ConditionedInferer", "BF16Inferer", "SharpnessRatio", "adversarial_stats"]


class ConditionedInferer(Inferer):
    """Run ``inferer`` on a condition concatenated on channels before the image, as a pix2pix discriminator sees it.

    With ``residual_scale`` s the image is given as ``s * (image - condition[:, -1:])``: its difference from the
    estimate the condition ends with (the spline of a context model's input), magnified. Real and generated slices
    differ in fine detail of a few percent of the intensity range; judged as residuals they differ at order one, and
    the discriminator learns from the first iterations (the transform is invertible, so it sees the same information).

    Args:
        condition: returns the current condition, ``(B, C, H, W)``.
        inferer: the inferer to wrap. Defaults to calling the network.
        residual_scale: judge ``s * (image - condition[:, -1:])`` instead of the image; None: the image.
            Defaults to None.

    Example::

        >>> inferer = ConditionedInferer(lambda: torch.zeros(1, 2, 4, 4))
        >>> inferer(torch.ones(1, 1, 4, 4), lambda x: x).shape
        torch.Size([1, 3, 4, 4])
    """

    def __init__(self, condition: Callable[[], torch.Tensor], inferer: Callable | None = None,
                 residual_scale: float | None = None) -> None:
        super().__init__()
        self.condition = condition
        self.inferer = inferer
        self.residual_scale = residual_scale

    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs):
        condition = self.condition().to(inputs.dtype)
        if self.residual_scale is not None:
            inputs = self.residual_scale * (inputs - condition[:, -1:])
        x = torch.cat([condition, inputs], dim=1)
        return network(x, *args, **kwargs) if self.inferer is None else self.inferer(x, network, *args, **kwargs)


class BF16Inferer(Inferer):
    """Run ``inferer`` under bfloat16 autocast on ``device_type`` and return float32 outputs (a tensor or a list).

    bfloat16 keeps float32's range, so training needs no gradient scaler; on CPUs with native bfloat16 it makes a
    training iteration of the SRGAN about 3x faster.

    Args:
        inferer: the inferer to wrap. Defaults to calling the network.
        device_type: ``"cpu"`` or ``"cuda"``. Defaults to ``"cpu"``.
    """

    def __init__(self, inferer: Callable | None = None, device_type: str = "cpu") -> None:
        super().__init__()
        self.inferer = inferer
        self.device_type = device_type

    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            out = network(inputs, *args, **kwargs) if self.inferer is None else self.inferer(inputs, network, *args, **kwargs)
        return [o.float() for o in out] if isinstance(out, (list, tuple)) else out.float()


class PairedAdversarialTrainer(AdversarialTrainer):
    """``AdversarialTrainer`` for paired training (pix2pix, SRGAN): the discriminator's reals are the targets.

    MONAI's trainer gives the discriminator the generator's *inputs* as reals, which suits auto-encoders. Here the
    reals are the batch's labels, and with ``conditional=True`` the discriminator sees the generator's input
    concatenated before the real or generated image. Its engine state keeps no pickled networks or optimizers
    (the stock trainer's ``state_dict`` embeds them, and loading one replaces the live networks): checkpoint them by
    their own state dicts, as the bundles do.

    Args:
        args, kwargs: as ``monai.engines.AdversarialTrainer``.
        conditional: give the discriminator the generator's input as a condition. Defaults to True.
        bf16: run both networks' forward passes under bfloat16 autocast (:py:class:`BF16Inferer`), on CPU too,
            where MONAI's ``amp`` is CUDA only. Defaults to False.
        residual_scale: with ``conditional``, the discriminator judges the slice as its magnified difference from
            the input's last channel (:py:class:`ConditionedInferer`). Defaults to None (the slice itself).
    """

    def __init__(self, *args, conditional: bool = True, bf16: bool = False, residual_scale: float | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.conditional = conditional
        if bf16:
            self.g_inferer = BF16Inferer(self.g_inferer, torch.device(self.state.device).type)
            self.d_inferer = BF16Inferer(self.d_inferer, torch.device(self.state.device).type)
        self._state_dict_user_keys.clear()
        self.add_event_handler(AdversarialIterationEvents.GENERATOR_FORWARD_COMPLETED, self._targets_as_reals)
        if conditional:
            self.d_inferer = ConditionedInferer(lambda: self.state.output[CommonKeys.IMAGE], self.d_inferer,
                                                residual_scale)

    @staticmethod
    def _targets_as_reals(engine: PairedAdversarialTrainer) -> None:
        engine.state.output[AdversarialKeys.REALS] = engine.state.output[CommonKeys.LABEL]


def _scalar(value) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _mean_logit(logits) -> float:
    return float((logits[-1] if isinstance(logits, (list, tuple)) else logits).detach().float().mean())


def adversarial_stats(output: dict) -> dict[str, float]:
    """Scalars of one adversarial iteration for Stats/TensorBoard handlers: both generator losses, the
    discriminator's loss and its mean patch output on reals and fakes (D(real), D(fake))."""
    return {
        "loss_recon": _scalar(output[AdversarialKeys.RECONSTRUCTION_LOSS]),
        "loss_g_adv": _scalar(output[AdversarialKeys.GENERATOR_LOSS]),
        "loss_d": _scalar(output[AdversarialKeys.DISCRIMINATOR_LOSS]),
        "d_real": _mean_logit(output[AdversarialKeys.REAL_LOGITS]),
        "d_fake": _mean_logit(output[AdversarialKeys.FAKE_LOGITS]),
    }


class SharpnessRatio(Metric):
    """The mean absolute in-plane Laplacian of the predicted slices over that of the true ones, pooled over an
    epoch: a validation metric for the SRGAN (1.0: as sharp as the truth; an L1 model gives less, noise more).

    ``update`` takes ``(pred, label)``, each a ``(B, 1, H, W)`` tensor or a list of ``(1, H, W)`` tensors.
    """

    _LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)

    @reinit__is_reduced
    def reset(self) -> None:
        self._pred = torch.zeros((), dtype=torch.float64)
        self._label = torch.zeros((), dtype=torch.float64)

    def _magnitude(self, images) -> torch.Tensor:
        x = torch.stack(list(images)) if isinstance(images, (list, tuple)) else images
        x = x.detach().float().flatten(0, -3)[:, None]
        return torch.nn.functional.conv2d(x, self._LAPLACIAN.to(x.device)).abs().sum().double().cpu()

    @reinit__is_reduced
    def update(self, output) -> None:
        pred, label = output
        self._pred += self._magnitude(pred)
        self._label += self._magnitude(label)

    @sync_all_reduce("_pred", "_label")
    def compute(self) -> float:
        return float(self._pred / self._label) if self._label > 0 else float("nan")
