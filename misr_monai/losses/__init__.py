# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from .adversarial import DiscriminatorAdversarialLoss, GeneratorAdversarialLoss
from .detail import DetailedL1Loss, GradientVarianceLoss

__all__ = ["DetailedL1Loss", "DiscriminatorAdversarialLoss", "GeneratorAdversarialLoss", "GradientVarianceLoss"]
