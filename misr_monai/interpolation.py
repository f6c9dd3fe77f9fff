# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The protocol's interpolation baselines along a slice stack, and the spline that the context models refine."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.interpolate import CubicSpline

__all__ = ["SlicePredictor", "linear_interpolate", "cubic_interpolate", "BASELINES", "leave_parity_out_spline"]

SlicePredictor = Callable[[np.ndarray], np.ndarray]
"""Maps the ``m`` original slices of a volume, stacked on axis 0 as ``(m, H, W)``, to the ``m - 1`` slices between
them, in the volume's own intensity units."""


def linear_interpolate(slices: np.ndarray) -> np.ndarray:
    """The ``linear`` baseline: the mean of each pair of neighbouring slices (axis 0)."""
    return (slices[:-1] + slices[1:]) / 2


def cubic_interpolate(slices: np.ndarray, block: int = 2**20) -> np.ndarray:
    """The ``cubic`` baseline: a natural cubic spline through all slices (axis 0 of ``(m, H, W)``), evaluated half-way
    between them.

    The spline of each in-plane position is independent, so rows are fitted ``block`` values at a time (SciPy keeps
    four float64 coefficients per value); the result does not depend on ``block``.
    """
    m = slices.shape[0]
    knots, middles = 2 * np.arange(m), 2 * np.arange(m - 1) + 1
    out = np.empty((m - 1, *slices.shape[1:]), dtype=slices.dtype)
    rows = max(1, block // slices[:, :1].size)
    for start in range(0, slices.shape[1], rows):
        spline = CubicSpline(knots, slices[:, start : start + rows], axis=0, bc_type="natural")
        out[:, start : start + rows] = spline(middles)
    return out


BASELINES: dict[str, SlicePredictor] = {"linear": linear_interpolate, "cubic": cubic_interpolate}


def leave_parity_out_spline(stack: np.ndarray) -> np.ndarray:
    """For every slice i of ``stack`` (axis 0, ``n`` slices), the natural cubic spline through the slices of the other
    parity, evaluated at i: what ``cubic`` would predict for slice i if it were missing with every other slice.

    At the odd slices it is exactly :py:func:`cubic_interpolate` of the even slices (the protocol's ``cubic``); this is
    the context models' skip at training time, where targets of either parity are drawn. Slices outside the other
    parity's span (slice 0 from the odd slices, the last slice when its parity's neighbour is missing) keep their own
    value: no method is asked for them.

    Example::

        >>> z = np.arange(7.0)[:, None, None] ** 2
        >>> leave_parity_out_spline(z)[1:-1, 0, 0].round(3).tolist()
        [1.4, 4.25, 8.8, 16.25, 25.4]
    """
    out = np.array(stack, dtype=np.float32, copy=True)
    for parity in (0, 1):
        knots = stack[parity::2]
        if knots.shape[0] >= 2:
            middles = cubic_interpolate(np.asarray(knots, dtype=np.float32))
            out[parity + 1 : parity + 1 + 2 * middles.shape[0] : 2] = middles
    return out
