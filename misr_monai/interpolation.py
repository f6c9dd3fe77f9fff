# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The protocol's interpolation baselines along a slice stack, and the spline that the context models refine.

The natural cubic spline through uniformly spaced slices, evaluated half-way between them, is a fixed linear operator
along the slice axis: a tridiagonal solve for the second derivatives, then a three-tap combination. It is computed
here in torch, on the stack's device and in its floating dtype (float32 for float32 volumes), and matches SciPy's
``CubicSpline(bc_type="natural")`` to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

__all__ = ["linear_interpolate", "cubic_interpolate", "natural_spline_midpoints", "BASELINES",
           "leave_parity_out_spline"]

def linear_interpolate(slices: np.ndarray) -> np.ndarray:
    """The ``linear`` baseline: the mean of each pair of neighbouring slices (axis 0)."""
    return (slices[:-1] + slices[1:]) / 2


@lru_cache(maxsize=64)
def _thomas_factors(n: int) -> tuple[float, ...]:
    """The forward-sweep factors of the (1, 4, 1) tridiagonal system of size ``n`` (float64, rounded once)."""
    factors, previous = [], 0.0
    for _ in range(n):
        previous = 1.0 / (4.0 - previous)
        factors.append(previous)
    return tuple(factors)


def natural_spline_midpoints(knots: torch.Tensor) -> torch.Tensor:
    """The natural cubic spline through ``knots`` (``m`` uniformly spaced samples on dim 0, any trailing shape),
    evaluated half-way between each pair: ``(m - 1, ...)``, on ``knots``' device and in its dtype.

    With unit spacing the second derivatives ``M`` solve ``M[j-1] + 4 M[j] + M[j+1] = 6 (y[j-1] - 2 y[j] + y[j+1])``
    (``M`` zero at both ends) and the spline at ``j + 1/2`` is ``(y[j] + y[j+1]) / 2 - (M[j] + M[j+1]) / 16``; the
    system is solved by the Thomas algorithm, one vectorised step per slice (``3 m`` tensor operations in all).

    Example::

        >>> natural_spline_midpoints(torch.tensor([0.0, 1.0, 4.0, 9.0])).tolist()
        [0.4, 2.35, 6.4]
    """
    m = knots.shape[0]
    mean = torch.add(knots[:-1], knots[1:]).mul_(0.5)
    if m < 3:
        return mean
    second = torch.add(knots[:-2], knots[2:]).sub_(knots[1:-1], alpha=2).mul_(6)  # right-hand side, then M in place
    factors = _thomas_factors(m - 2)
    second[0] *= factors[0]
    for j in range(1, m - 2):
        second[j].sub_(second[j - 1]).mul_(factors[j])
    for j in range(m - 4, -1, -1):
        second[j].sub_(second[j + 1], alpha=factors[j])
    second.mul_(1 / 16)
    mean[1:].sub_(second)
    mean[:-1].sub_(second)
    return mean


def cubic_interpolate(slices):
    """The ``cubic`` baseline: a natural cubic spline through all slices (axis 0 of ``(m, H, W)``), evaluated half-way
    between them (:py:func:`natural_spline_midpoints`).

    A numpy array gives a numpy array of its dtype (computed in float32, or float64 for float64 input); a tensor
    gives a tensor on its device.
    """
    if isinstance(slices, torch.Tensor):
        return natural_spline_midpoints(slices if slices.is_floating_point() else slices.float())
    work = np.float64 if np.asarray(slices).dtype == np.float64 else np.float32
    result = natural_spline_midpoints(torch.from_numpy(np.asarray(slices, dtype=work)))
    return result.numpy().astype(np.asarray(slices).dtype, copy=False)


BASELINES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"linear": linear_interpolate, "cubic": cubic_interpolate}
"""The protocol's baselines by name: slice predictors (:py:class:`~misr_monai.predictors.base.SlicePredictor`)."""


def leave_parity_out_spline(stack):
    """For every slice i of ``stack`` (axis 0, ``n`` slices), the natural cubic spline through the slices of the other
    parity, evaluated at i: what ``cubic`` would predict for slice i if it were missing with every other slice.

    At the odd slices it is exactly :py:func:`cubic_interpolate` of the even slices (the protocol's ``cubic``); this is
    the context models' skip at training time, where targets of either parity are drawn. Slices outside the other
    parity's span (slice 0 from the odd slices, the last slice when its parity's neighbour is missing) keep their own
    value: no method is asked for them. A tensor is computed on its device in float32; a numpy array gives float32
    numpy.

    Example::

        >>> z = np.arange(7.0)[:, None, None] ** 2
        >>> leave_parity_out_spline(z)[1:-1, 0, 0].round(3).tolist()
        [1.4, 4.25, 8.8, 16.25, 25.4]
    """
    if not isinstance(stack, torch.Tensor):
        return leave_parity_out_spline(torch.from_numpy(np.asarray(stack, dtype=np.float32))).numpy()
    stack = stack.to(torch.float32)
    out = stack.clone()
    for parity in (0, 1):
        knots = stack[parity::2]
        if knots.shape[0] >= 2:
            middles = natural_spline_midpoints(knots)
            out[parity + 1 : parity + 1 + 2 * middles.shape[0] : 2] = middles
    return out
