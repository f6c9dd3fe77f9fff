# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""``PatchAdversarialLoss`` in the two call forms of MONAI's ``AdversarialTrainer``: ``g_loss(fake_logits)`` and
``d_loss(real_logits, fake_logits)``."""

from __future__ import annotations

import torch

from monai.losses import PatchAdversarialLoss

__all__ = ["GeneratorAdversarialLoss", "DiscriminatorAdversarialLoss"]


def _patch_logits(output: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """The patch logits of a ``PatchDiscriminator``: the last element of its list of feature maps."""
    return output[-1] if isinstance(output, (list, tuple)) else output


class GeneratorAdversarialLoss(torch.nn.Module):
    """``weight`` times the generator's adversarial loss: fakes should be judged real.

    Args:
        weight: the adversarial weight relative to the reconstruction loss. Defaults to 0.01.
        criterion: ``"least_squares"``, ``"bce"`` or ``"hinge"`` (see ``PatchAdversarialLoss``).
            Defaults to ``"least_squares"``.

    Example::

        >>> loss = GeneratorAdversarialLoss(weight=0.1)
        >>> float(loss([torch.zeros(2, 4), torch.ones(2, 1, 8, 8)]))
        0.0
    """

    def __init__(self, weight: float = 0.01, criterion: str = "least_squares") -> None:
        super().__init__()
        self.weight = weight
        self.loss = PatchAdversarialLoss(reduction="mean", criterion=criterion)

    def forward(self, fake_logits: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        return self.weight * self.loss(_patch_logits(fake_logits), target_is_real=True, for_discriminator=False)


class DiscriminatorAdversarialLoss(torch.nn.Module):
    """The discriminator's loss: the mean of its losses on reals (as real) and on fakes (as fake).

    Args:
        criterion: as :py:class:`GeneratorAdversarialLoss`. Defaults to ``"least_squares"``.

    Example::

        >>> loss = DiscriminatorAdversarialLoss()
        >>> float(loss(torch.ones(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)))
        0.0
    """

    def __init__(self, criterion: str = "least_squares") -> None:
        super().__init__()
        self.loss = PatchAdversarialLoss(reduction="mean", criterion=criterion)

    def forward(self, real_logits, fake_logits) -> torch.Tensor:
        real = self.loss(_patch_logits(real_logits), target_is_real=True, for_discriminator=True)
        fake = self.loss(_patch_logits(fake_logits), target_is_real=False, for_discriminator=True)
        return (real + fake) / 2
