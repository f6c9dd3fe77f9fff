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

__all__ = ["linear_interpolate", "cubic_interpolate", "natural_spline_midpoints", "natural_spline_second_derivatives",
           "natural_spline_at", "gap_positions", "BASELINES", "leave_parity_out_spline", "slice_profile_kernel",
           "thick_slices"]


def gap_positions(factor: int) -> np.ndarray:
    """The fractional positions ``t = j / factor`` (j = 1 ... factor - 1) of the new slices in each gap."""
    return np.arange(1, factor) / factor


def linear_interpolate(slices: np.ndarray, factor: int = 2, profile: float | None = None) -> np.ndarray:
    """The ``linear`` baseline: ``(1 - t) y[k] + t y[k+1]`` at every ``t`` of :py:func:`gap_positions` between each
    pair of neighbouring slices (axis 0): ``((m - 1) (factor - 1), ...)``, the new slices in order. The slice
    ``profile`` does not change it."""
    if factor == 2:
        return (slices[:-1] + slices[1:]) / 2
    out = [(1 - t) * slices[:-1] + t * slices[1:] for t in gap_positions(factor)]
    return np.stack(out, axis=1).reshape(-1, *slices.shape[1:]).astype(np.result_type(slices, np.float32), copy=False)


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
    mean = torch.add(knots[:-1], knots[1:]).mul_(0.5)
    if knots.shape[0] < 3:
        return mean
    second = natural_spline_second_derivatives(knots)[1:-1].mul_(1 / 16)
    mean[1:].sub_(second)
    mean[:-1].sub_(second)
    return mean


def natural_spline_second_derivatives(knots: torch.Tensor) -> torch.Tensor:
    """The second derivatives ``M`` (``(m, ...)``, zero at both ends) of the natural cubic spline through ``knots``
    (unit spacing on dim 0): the solution of ``M[j-1] + 4 M[j] + M[j+1] = 6 (y[j-1] - 2 y[j] + y[j+1])``."""
    m = knots.shape[0]
    second = torch.zeros_like(knots)
    if m < 3:
        return second
    inner = second[1:-1]
    torch.add(knots[:-2], knots[2:], out=inner).sub_(knots[1:-1], alpha=2).mul_(6)
    factors = _thomas_factors(m - 2)
    inner[0] *= factors[0]
    for j in range(1, m - 2):
        inner[j].sub_(inner[j - 1]).mul_(factors[j])
    for j in range(m - 4, -1, -1):
        inner[j].sub_(inner[j + 1], alpha=factors[j])
    return second


def natural_spline_at(knots: torch.Tensor, factor: int) -> torch.Tensor:
    """The natural cubic spline through ``knots`` (``m`` samples at unit spacing on dim 0) at every position
    ``k + j / factor`` (j = 1 ... factor - 1) of every gap: ``((m - 1) (factor - 1), ...)``, the new slices in order,
    on ``knots``' device and in its dtype. Equal to SciPy's ``CubicSpline(bc_type="natural")`` at those positions.

    The value at ``k + t`` is ``(1 - t) y[k] + t y[k+1] + ((1 - t)^3 - (1 - t)) M[k] / 6 + (t^3 - t) M[k+1] / 6``;
    ``factor`` 2 is :py:func:`natural_spline_midpoints`, bit for bit.

    Example::

        >>> natural_spline_at(torch.tensor([0.0, 1.0, 4.0, 9.0]), 2).tolist()
        [0.4, 2.35, 6.4]
    """
    if factor == 2:
        return natural_spline_midpoints(knots)
    second = natural_spline_second_derivatives(knots)
    out = []
    for t in gap_positions(factor):
        s = 1 - t
        value = knots[:-1] * s + knots[1:] * t
        value += second[:-1] * ((s**3 - s) / 6) + second[1:] * ((t**3 - t) / 6)
        out.append(value)
    return torch.stack(out, dim=1).reshape(-1, *knots.shape[1:])


def cubic_interpolate(slices, factor: int = 2, profile: float | None = None):
    """The ``cubic`` baseline: a natural cubic spline through all slices (axis 0 of ``(m, H, W)``), evaluated at every
    ``t = j / factor`` between them (:py:func:`natural_spline_at`): ``((m - 1) (factor - 1), H, W)``. The slice
    ``profile`` does not change it.

    A numpy array gives a numpy array of its dtype (computed in float32, or float64 for float64 input); a tensor
    gives a tensor on its device.
    """
    if isinstance(slices, torch.Tensor):
        return natural_spline_at(slices if slices.is_floating_point() else slices.float(), factor)
    work = np.float64 if np.asarray(slices).dtype == np.float64 else np.float32
    result = natural_spline_at(torch.from_numpy(np.asarray(slices, dtype=work)), factor)
    return result.numpy().astype(np.asarray(slices).dtype, copy=False)


def slice_profile_kernel(width: float) -> np.ndarray:
    """The taps of a centred box ``width`` slices wide, sampled at whole slices: tap ``o`` is the overlap of
    ``[o - 1/2, o + 1/2]`` with ``[-width/2, width/2]``, normalised to sum 1. ``width`` F is the protocol's thick
    profile at factor F (``ones(F) / F`` for odd F; F + 1 taps with the ends halved for even F); under 1, one tap
    (thin slices).

    Example::

        >>> slice_profile_kernel(2).tolist()
        [0.25, 0.5, 0.25]
    """
    half = max(float(width), 1.0) / 2
    reach = int(np.ceil(half - 0.5 - 1e-9))
    offsets = np.arange(-reach, reach + 1)
    taps = np.clip(np.minimum(offsets + 0.5, half) - np.maximum(offsets - 0.5, -half), 0, None)
    return taps / taps.sum()


def thick_slices(volume: np.ndarray, axis: int, width: float) -> np.ndarray:
    """``volume`` filtered along ``axis`` by :py:func:`slice_profile_kernel` ``(width)``, mirrored at the ends
    (``scipy.ndimage.convolve1d(..., mode="mirror")``, float32): the protocol's thick-slice simulation at factor F with
    ``width`` F, where every slice averages the tissue across a contiguous slab."""
    from scipy.ndimage import convolve1d

    kernel = slice_profile_kernel(width)
    volume = np.asarray(volume, dtype=np.float32)
    return volume.copy() if kernel.size == 1 else convolve1d(volume, kernel.astype(np.float32), axis=axis, mode="mirror")


linear_interpolate.any_factor = cubic_interpolate.any_factor = True
BASELINES: dict[str, Callable[..., np.ndarray]] = {"linear": linear_interpolate, "cubic": cubic_interpolate}
"""The protocol's baselines by name: slice predictors of any factor (:py:class:`~misr_monai.predictors.base.SlicePredictor`;
the slice profile does not change them)."""


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
