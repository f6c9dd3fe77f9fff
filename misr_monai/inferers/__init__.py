# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from .fast_ddpm import FastDDPMSampler, SliceTarget

__all__ = ["FastDDPMSampler", "SliceTarget"]
