# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Plain functions behind the transforms, shared with volume inference and evaluation."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["voxel_spacing", "find_slice_axis", "percentile_scale_factor", "FOREGROUND_THRESHOLD", "neighbour_offsets",
           "reflect_index"]

FOREGROUND_THRESHOLD = 0.05
"""Intensity (after percentile scaling to [0, 1]) above which a voxel counts as foreground."""


def voxel_spacing(affine) -> np.ndarray:
    """Voxel sizes of the three spatial axes: the norms of the affine's first three columns (valid for oblique affines)."""
    affine = np.asarray(affine, dtype=np.float64)
    return np.linalg.norm(affine[:3, :3], axis=0)


def find_slice_axis(affine, tolerance: float = 0.1) -> int:
    """The through-plane axis: the axis with the largest voxel spacing.

    When all spacings agree within ``tolerance`` (largest <= smallest * (1 + tolerance)), the last spatial axis.

    Args:
        affine: a 4x4 (or 3x3) voxel-to-world matrix.
        tolerance: relative spread under which a volume counts as isotropic. Defaults to 0.1.

    Example::

        >>> find_slice_axis(np.diag([0.5, 0.5, 3.0, 1.0]))
        2
    """
    spacing = voxel_spacing(affine)
    if spacing.max() <= spacing.min() * (1.0 + tolerance):
        return 2
    return int(np.argmax(spacing))


def percentile_scale_factor(img, percentile: float = 99.5) -> float:
    """The ``percentile``-th percentile of the non-zero voxels of ``img`` (1.0 when it has none or it is not positive).

    Dividing by it maps a volume's tissue to about [0, 1]; it is the evaluation protocol's scaling.
    """
    values = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    count = int(np.count_nonzero(values))
    if count == 0:
        return 1.0
    gathered, start = np.empty(count, np.float64), 0  # in float64, one slab at a time: no full-size temporaries
    for part in np.atleast_2d(values):
        part = part[part != 0]
        gathered[start : start + part.size] = part
        start += part.size
    scale = float(np.percentile(gathered, percentile, overwrite_input=True))
    return scale if scale > 0 else 1.0


def neighbour_offsets(context: int = 1) -> list[int]:
    """Offsets from slice i of the ``2 * context`` neighbours a model sees: (-1, 1) for 1, (-3, -1, 1, 3) for 2."""
    if context < 1:
        raise ValueError(f"context must be positive, got {context}.")
    return [-(2 * k - 1) for k in range(context, 0, -1)] + [2 * k - 1 for k in range(1, context + 1)]


def reflect_index(index, n: int):
    """Slice indices mirrored at the two ends of ``n`` slices (-1 -> 1, n -> n - 2), as for the missing neighbours
    of the end gaps; an index still outside after one reflection is clamped."""
    index = np.abs(np.asarray(index))
    return np.clip(np.where(index > n - 1, 2 * (n - 1) - index, index), 0, n - 1)
