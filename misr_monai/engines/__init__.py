# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from .adversarial import BF16Inferer, ConditionedInferer, PairedAdversarialTrainer, SharpnessRatio, adversarial_stats
from .checkpoint import AtomicCheckpointSaver, KeepLatestCheckpoints, VersionStamp, latest_checkpoint, versions
from .determinism import EpochSeedHandler
from .distributed import RANK_ZERO_HANDLERS, end_process_group, handlers_for_rank
from .finish import FinalValidation, WeightsReport, run_training
from .timing import DataWaitHandler

__all__ = ["AtomicCheckpointSaver", "BF16Inferer", "ConditionedInferer", "DataWaitHandler", "EpochSeedHandler", "FinalValidation", "end_process_group",
           "KeepLatestCheckpoints", "WeightsReport", "run_training",
           "PairedAdversarialTrainer", "RANK_ZERO_HANDLERS", "SharpnessRatio", "VersionStamp", "adversarial_stats", "handlers_for_rank", "latest_checkpoint",
           "versions"]
