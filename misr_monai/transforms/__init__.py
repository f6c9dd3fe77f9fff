# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from .array import PercentileScale, RandSliceGap, RandSliceTriplet, SliceAxis, SliceGaps, SliceSpline, SliceTriplets, gap_input
from .dictionary import (
    PercentileScaled,
    PercentileScaleD,
    PercentileScaleDict,
    RandSliceGapd,
    RandSliceGapD,
    RandSliceGapDict,
    RandSliceTripletd,
    RandSliceTripletD,
    RandSliceTripletDict,
    SliceAxisd,
    SliceAxisD,
    SliceAxisDict,
    SliceSplined,
    SliceSplineD,
    SliceSplineDict,
    SliceGapsd,
    SliceGapsD,
    SliceGapsDict,
    SliceTripletsd,
    SliceTripletsD,
    SliceTripletsDict,
)
from .utils import FOREGROUND_THRESHOLD, find_slice_axis, percentile_scale_factor, voxel_spacing
