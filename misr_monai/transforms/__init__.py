# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from .array import PercentileScale, RandSliceTriplet, SliceAxis, SliceSpline, SliceTriplets
from .dictionary import (
    PercentileScaled,
    PercentileScaleD,
    PercentileScaleDict,
    RandSliceTripletd,
    RandSliceTripletD,
    RandSliceTripletDict,
    SliceAxisd,
    SliceAxisD,
    SliceAxisDict,
    SliceSplined,
    SliceSplineD,
    SliceSplineDict,
    SliceTripletsd,
    SliceTripletsD,
    SliceTripletsDict,
)
from .utils import FOREGROUND_THRESHOLD, find_slice_axis, percentile_scale_factor, voxel_spacing
