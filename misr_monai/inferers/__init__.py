# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from .fast_ddpm import FastDDPMSampler, SliceTarget
from .slice_interpolation import SliceInterpolationInferer

__all__ = ["FastDDPMSampler", "SliceInterpolationInferer", "SliceTarget"]
