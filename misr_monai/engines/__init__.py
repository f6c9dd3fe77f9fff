# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from .adversarial import BF16Inferer, ConditionedInferer, PairedAdversarialTrainer, adversarial_stats
from .checkpoint import AtomicCheckpointSaver, KeepLatestCheckpoints, VersionStamp, latest_checkpoint, versions
from .determinism import EpochSeedHandler
from .timing import DataWaitHandler
from .upsampling import UpsampleEvaluator, volume_dataset

__all__ = ["AtomicCheckpointSaver", "BF16Inferer", "ConditionedInferer", "DataWaitHandler", "EpochSeedHandler", "KeepLatestCheckpoints",
           "PairedAdversarialTrainer", "UpsampleEvaluator", "VersionStamp", "adversarial_stats", "latest_checkpoint",
           "versions", "volume_dataset"]
