# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Array transforms for slice-triplet super-resolution: slice axis, invertible scaling, the context models' spline,
triplet sampling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, Randomizable, Transform
from monai.data.meta_obj import get_track_meta
from monai.utils import TransformBackends, convert_to_tensor

from misr_monai.interpolation import (gap_positions, leave_parity_out_spline, natural_spline_at,
                                     natural_spline_second_derivatives, slice_profile_kernel, thick_slices)
from misr_monai.transforms.utils import (
    FOREGROUND_THRESHOLD,
    find_slice_axis,
    neighbour_offsets,
    percentile_scale_factor,
    reflect_index,
    voxel_spacing,
)

__all__ = ["SliceAxis", "PercentileScale", "SliceSpline", "RandSliceTriplet", "SliceTriplets", "RandSliceGap",
           "SliceGaps", "recorded_slice_axis", "sampled_axes", "spline_channel", "gap_input"]

SLICE_AXIS_KEY = "slice_axis"


class SliceAxis(Transform):
    """Record the through-plane axis of a channel-first volume in its metadata (``img.meta["slice_axis"]``).

    The axis is the spatial axis (0, 1 or 2, not counting the channel) with the largest voxel spacing, from the
    affine's column norms; when all spacings agree within ``tolerance`` it is the last one. ``axis`` overrides it.

    Args:
        axis: a fixed spatial axis, or None to detect it. Defaults to None.
        tolerance: relative spread under which a volume counts as isotropic. Defaults to 0.1.

    Example::

        >>> img = MetaTensor(torch.zeros(1, 8, 8, 4), affine=torch.diag(torch.tensor([1.0, 1.0, 3.0, 1.0])))
        >>> SliceAxis()(img).meta["slice_axis"]
        2

    Raises:
        ValueError: ``axis`` not in (0, 1, 2).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, axis: int | None = None, tolerance: float = 0.1) -> None:
        if axis is not None and axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1, 2 or None, got {axis}.")
        self.axis = axis
        self.tolerance = tolerance

    def __call__(self, img: NdarrayOrTensor) -> MetaTensor:
        img = MetaTensor(img) if not isinstance(img, MetaTensor) else img
        img.meta[SLICE_AXIS_KEY] = self.axis if self.axis is not None else find_slice_axis(img.affine, self.tolerance)
        return img


class PercentileScale(InvertibleTransform):
    """Divide an image by the ``percentile``-th percentile of its non-zero voxels; ``inverse`` multiplies it back.

    Unlike ``ScaleIntensityRangePercentiles`` it neither shifts nor clips, so it is exactly invertible, and the factor
    travels in ``applied_operations``.

    Args:
        percentile: percentile of the non-zero voxels mapped to 1. Defaults to 99.5.

    Example::

        >>> t = PercentileScale()
        >>> y = t(MetaTensor(torch.arange(1.0, 201.0)))
        >>> torch.allclose(t.inverse(y), torch.arange(1.0, 201.0))
        True
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, percentile: float = 99.5) -> None:
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}.")
        self.percentile = percentile

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        img = convert_to_tensor(img, track_meta=get_track_meta(), dtype=torch.float32)
        scale = percentile_scale_factor(img, self.percentile)
        out = img / scale
        self.push_transform(out, extra_info={"scale": scale})
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        transform = self.pop_transform(data)
        return data * transform["extra_info"]["scale"]


def recorded_slice_axis(img: torch.Tensor) -> int:
    """The slice axis :py:class:`SliceAxis` recorded in ``img.meta``, or the last spatial axis (2) without one."""
    return int(img.meta.get(SLICE_AXIS_KEY, 2)) if isinstance(img, MetaTensor) else 2


def sampled_axes(img: torch.Tensor, random_axis: bool = False, max_anisotropy: float = 1.5) -> list[int]:
    """The axes along which slice triplets of ``img`` are drawn: its ``meta["slice_axis"]`` (or the last axis), or,
    with ``random_axis`` and a near-isotropic volume (largest/smallest spacing <= ``max_anisotropy``), every axis with
    at least 3 slices."""
    axis = recorded_slice_axis(img)
    if random_axis and isinstance(img, MetaTensor):
        spacing = voxel_spacing(img.affine)
        if spacing.max() <= spacing.min() * max_anisotropy:
            return [a for a in range(3) if img.shape[a + 1] >= 3]
    return [int(axis)]


def spline_channel(spline: torch.Tensor, axis: int, slice_axis: int) -> int:
    """The channel of :py:class:`SliceSpline`'s output that holds the spline along ``axis``: ``axis`` itself when it
    has all three, 0 when it has only the slice axis's.

    Raises:
        ValueError: ``spline`` lacks ``axis``.
    """
    if spline.shape[0] == 3:
        return axis
    if axis != slice_axis:
        raise ValueError(f"the spline holds only the slice axis {slice_axis}, but a triplet along axis {axis} was "
                         "drawn: give SliceSpline the sampler's random_axis.")
    return 0


class SliceSpline(Transform):
    """The context models' spline of a channel-first 3D volume along the axes that triplets are drawn from:
    ``(3, X, Y, Z)`` (channel ``a`` holding :py:func:`~misr_monai.interpolation.leave_parity_out_spline` along axis
    ``a``) for a near-isotropic volume with ``random_axis``, else ``(1, X, Y, Z)`` along the slice axis only.

    At slice i along an axis it is the natural cubic spline through the slices of the other parity, which is what the
    protocol's ``cubic`` gives for slice i when i is the missing one; computed once per volume, in torch on the
    volume's device (cache it with the volume), then cut with the patches (:py:class:`RandSliceTriplet`,
    :py:class:`SliceTriplets`).

    Args:
        random_axis, max_anisotropy: as :py:class:`RandSliceTriplet` (the axes it can draw). Defaults to False, 1.5.

    Example::

        >>> vol = MetaTensor(torch.arange(7.0).view(1, 1, 1, 7).expand(1, 4, 4, 7) ** 2)
        >>> SliceSpline(random_axis=True)(vol)[2, 0, 0, 1:-1].round(decimals=3).tolist()
        [1.4, 4.25, 8.8, 16.25, 25.4]
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, random_axis: bool = False, max_anisotropy: float = 1.5) -> None:
        self.random_axis = random_axis
        self.max_anisotropy = max_anisotropy

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        if img.ndim != 4:
            raise ValueError(f"SliceSpline expects a channel-first 3D volume, got shape {tuple(img.shape)}.")
        img = convert_to_tensor(img, track_meta=True)
        volume = (img.as_tensor() if isinstance(img, MetaTensor) else img)[0]
        axes = sampled_axes(img, self.random_axis, self.max_anisotropy)
        return torch.stack([torch.movedim(leave_parity_out_spline(torch.movedim(volume, a, 0)), 0, a) for a in axes])


class RandSliceTriplet(Randomizable, Transform):
    """Cut a random slice triplet (i-1, i, i+1) from a channel-first 3D volume: ``(input, target)``.

    ``input`` has 2 channels (slices i-1 and i+1; with ``context`` K, the 2K slices i-(2K-1), ..., i-1, i+1, ...,
    i+(2K-1), mirrored at the volume's ends), ``target`` 1 channel (slice i), both ``patch_size`` in-plane
    (zero-padded where the slice is smaller). The axis is ``img.meta["slice_axis"]`` (or the last one); with
    ``random_axis`` a near-isotropic volume (largest/smallest spacing <= ``max_anisotropy``) uses any axis. Patches
    whose target has fewer than ``min_foreground`` foreground voxels (> 0.05 after scaling) are redrawn, at most
    ``max_tries`` times, after which the most foreground-rich draw is kept. Given the volume's ``spline``
    (:py:class:`SliceSpline`), the input gains it at slice i as its last channel (2K + 1 channels).

    The patch is cut by indexing the volume where it lies (CPU or GPU) and returned as plain tensors on that device:
    the volume, which a ``CacheDataset(copy_cache=False)`` shares between draws, is never written. With ``augment``,
    the patch (input and target together, one operation each) is flipped along each in-plane axis with probability
    0.5 and rotated by 90, 180 or 270 degrees with probability 0.5 (180 only for non-square patches): what
    ``RandFlipd`` twice and ``RandRotate90d`` would do, without wrapping each patch in a ``MetaTensor``.

    Args:
        patch_size: in-plane patch size. Defaults to (128, 128).
        min_foreground: least fraction of foreground voxels in the target patch. Defaults to 0.1.
        random_axis: draw the axis at random for near-isotropic volumes. Defaults to False.
        max_anisotropy: spacing ratio under which a volume counts as near-isotropic. Defaults to 1.5.
        max_tries: draws before giving up on ``min_foreground``. Defaults to 10.
        context: K, the neighbours on each side (:py:func:`neighbour_offsets`). Defaults to 1.
        augment: random in-plane flips and 90-degree rotations of the patch. Defaults to False.

    Example::

        >>> vol = MetaTensor(torch.rand(1, 40, 40, 9))
        >>> x, y = RandSliceTriplet(patch_size=(32, 32)).set_random_state(0)(vol)
        >>> tuple(x.shape), tuple(y.shape)
        ((2, 32, 32), (1, 32, 32))
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        patch_size: Sequence[int] = (128, 128),
        min_foreground: float = 0.1,
        random_axis: bool = False,
        max_anisotropy: float = 1.5,
        max_tries: int = 10,
        context: int = 1,
        augment: bool = False,
    ) -> None:
        self.offsets = neighbour_offsets(context)
        if len(patch_size) != 2 or min(patch_size) < 1:
            raise ValueError(f"patch_size must be two positive ints, got {patch_size}.")
        if not 0 <= min_foreground <= 1:
            raise ValueError(f"min_foreground must be in [0, 1], got {min_foreground}.")
        self.patch_size = tuple(int(p) for p in patch_size)
        self.min_foreground = min_foreground
        self.random_axis = random_axis
        self.max_anisotropy = max_anisotropy
        self.max_tries = max(1, int(max_tries))
        self.augment = augment
        self._axis = 2
        self._corner: tuple[int, int, int] = (1, 0, 0)

    def randomize(self, img: torch.Tensor) -> None:
        axes = sampled_axes(img, self.random_axis, self.max_anisotropy)
        self._axis = axes[self.R.randint(len(axes))]
        if img.shape[self._axis + 1] < 3:
            raise ValueError(f"RandSliceTriplet needs 3 slices along axis {self._axis}, got shape {tuple(img.shape)}.")
        plane = [s for a, s in enumerate(img.shape[1:]) if a != self._axis]
        n = img.shape[self._axis + 1]
        self._corner = (
            int(self.R.randint(1, n - 1)),
            *(int(self.R.randint(0, max(d - p, 0) + 1)) for d, p in zip(plane, self.patch_size)),
        )

    def _cut(self, img: torch.Tensor, spline: torch.Tensor | None) -> torch.Tensor:
        """The patch stack: input channels then the target, ``(C + 1, *patch_size)``, a new tensor."""
        i, r0, c0 = self._corner
        vol = torch.movedim(img.as_tensor() if isinstance(img, MetaTensor) else img, self._axis + 1, 1)  # (C, slices, H, W)
        index = reflect_index([i + o for o in self.offsets] + [i], vol.shape[1]).tolist()
        rows, cols = slice(r0, r0 + self.patch_size[0]), slice(c0, c0 + self.patch_size[1])
        stack = vol[0, index, rows, cols].float()
        if spline is not None:
            channel = spline_channel(spline, self._axis, recorded_slice_axis(img))
            estimate = torch.movedim(spline[channel], self._axis, 0)[i : i + 1, rows, cols].float()
            stack = torch.cat([stack[:-1], estimate, stack[-1:]])
        pad = (0, self.patch_size[1] - stack.shape[2], 0, self.patch_size[0] - stack.shape[1])
        return torch.nn.functional.pad(stack, pad) if any(pad) else stack

    def _augment(self, stack: torch.Tensor) -> torch.Tensor:
        flips = [d for d in (-2, -1) if self.R.rand() < 0.5]
        if flips:
            stack = torch.flip(stack, flips)
        if self.R.rand() < 0.5:
            k = int(self.R.randint(1, 4)) if stack.shape[-1] == stack.shape[-2] else 2
            stack = torch.rot90(stack, k, (-2, -1))
        return stack

    def __call__(
        self, img: NdarrayOrTensor, randomize: bool = True, spline: NdarrayOrTensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        img = convert_to_tensor(img, track_meta=True)
        if img.ndim != 4 or min(img.shape[1:]) < 1:
            raise ValueError(f"RandSliceTriplet expects a channel-first 3D volume, got shape {tuple(img.shape)}.")
        if spline is not None:
            spline = spline.as_tensor() if isinstance(spline, MetaTensor) else torch.as_tensor(spline)
            if spline.ndim != 4 or spline.shape[0] not in (1, 3) or spline.shape[1:] != img.shape[1:]:
                raise ValueError(f"spline must be SliceSpline's (3 or 1, X, Y, Z) of the volume, got shape {tuple(spline.shape)}.")
        if not randomize:
            stack = self._cut(img, spline)
        else:
            best, best_fg = None, -1.0
            for _ in range(self.max_tries):
                self.randomize(img)
                stack = self._cut(img, spline)
                fg = float((stack[-1] > FOREGROUND_THRESHOLD).float().mean())
                if fg > best_fg:
                    best, best_fg = stack, fg
                if fg >= self.min_foreground:
                    break
            stack = best
            if self.augment:
                stack = self._augment(stack)
        return stack[:-1], stack[-1:]


class SliceTriplets(Transform):
    """All full-slice triplets of a channel-first volume whose middle slice is odd (1, 3, 5...), as the protocol scores.

    Returns a list of ``(input, target)``: input 2 channels (slices i-1, i+1; 2K with ``context`` K, as
    :py:class:`RandSliceTriplet`), target 1 channel (slice i), for every ``stride``-th odd i along
    ``img.meta["slice_axis"]`` whose target has foreground (maximum >= 0.05 after scaling). Given the volume's
    ``spline`` (:py:class:`SliceSpline`), the input gains it at slice i (the protocol's ``cubic``) as its last channel.

    Args:
        stride: keep every ``stride``-th odd slice (1 keeps all). Defaults to 1.
        context: K, the neighbours on each side. Defaults to 1.

    Example::

        >>> pairs = SliceTriplets()(MetaTensor(torch.ones(1, 8, 8, 7)))
        >>> len(pairs), tuple(pairs[0][0].shape)
        (3, (2, 8, 8))
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, stride: int = 1, context: int = 1) -> None:
        if stride < 1:
            raise ValueError(f"stride must be positive, got {stride}.")
        self.stride = stride
        self.offsets = neighbour_offsets(context)

    def __call__(
        self, img: NdarrayOrTensor, spline: NdarrayOrTensor | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        img = convert_to_tensor(img, track_meta=True)
        axis = recorded_slice_axis(img)
        vol = torch.movedim(img.as_tensor() if isinstance(img, MetaTensor) else img, axis + 1, 1)[0].float()
        estimate = None
        if spline is not None:
            estimate = torch.movedim(torch.as_tensor(spline[spline_channel(spline, axis, axis)]), axis, 0).float()
        out = []
        for i in range(1, vol.shape[0] - 1, 2 * self.stride):
            if float(vol[i].max()) >= FOREGROUND_THRESHOLD:
                x = vol[reflect_index([i + o for o in self.offsets], vol.shape[0]).tolist()]
                x = x if estimate is None else torch.cat([x, estimate[i : i + 1]])
                out.append((x.clone(), vol[i : i + 1].clone()))
        return out


SPLINE_WINDOW = 8
"""Kept slices on each side of a gap through which :py:class:`RandSliceGap` fits the spline: the natural spline's
dependence on a knot decays by 2 - sqrt(3) (0.27) per knot, so 8 give the whole stack's spline to 3e-5 of a knot."""


def gap_input(neighbours: torch.Tensor, position: float, profile: float, spline: torch.Tensor) -> torch.Tensor:
    """A context model's input for one new slice: the 2K kept neighbours ``(2K, H, W)``, the constant maps of its
    position ``t`` in the gap and of the slice profile's width ``w``, and the spline at it ``(1, H, W)``."""
    conditions = neighbours.new_tensor([position, profile]).view(2, 1, 1).expand(2, *neighbours.shape[1:])
    return torch.cat([neighbours, conditions, spline])


class RandSliceGap(Randomizable, Transform):
    """Cut a random training pair for the context models at any factor and slice profile: ``(input, target)``.

    Each draw picks a factor F from ``factors``, a profile width w from ``profiles`` (in kept-slice spacings: 0 thin
    slices with gaps, 1 contiguous thick slices), a target slice i along the axis and its position j in its gap. The
    patch's slices are filtered along the axis by a box ``w F`` slices wide (:py:func:`slice_profile_kernel`, mirrored
    at the volume's ends, as the protocol's thick variant does for w = 1), every F-th slice in the phase of i - j is
    kept, and the input is :py:func:`gap_input`: the 2K kept slices around the gap (mirrored at the kept stack's
    ends, as :py:class:`~misr_monai.predictors.network.NetworkPredictor` does), t = j / F, w, and the natural cubic
    spline through the kept slices at i (fitted over :py:data:`SPLINE_WINDOW` kept slices each side); the target is
    the filtered slice i. F = 2, w = 0 is :py:class:`RandSliceTriplet`'s task. The volume is only read.

    Args:
        factors: the factors drawn from, uniformly (repeat one to weight it). Defaults to (2, 3, 4, 5, 6).
        profiles: the profile widths drawn from, uniformly. Defaults to (0.0, 0.5, 1.0).
        patch_size, min_foreground, random_axis, max_anisotropy, max_tries, context, augment: as
            :py:class:`RandSliceTriplet`.

    Example::

        >>> vol = MetaTensor(torch.rand(1, 40, 40, 30))
        >>> x, y = RandSliceGap(patch_size=(32, 32), context=2).set_random_state(0)(vol)
        >>> tuple(x.shape), tuple(y.shape)  # slices k-1 .. k+2, t, w, the spline
        ((7, 32, 32), (1, 32, 32))
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        factors: Sequence[int] = (2, 3, 4, 5, 6),
        profiles: Sequence[float] = (0.0, 0.5, 1.0),
        patch_size: Sequence[int] = (128, 128),
        min_foreground: float = 0.1,
        random_axis: bool = False,
        max_anisotropy: float = 1.5,
        max_tries: int = 10,
        context: int = 2,
        augment: bool = False,
    ) -> None:
        if not factors or min(factors) < 2:
            raise ValueError(f"factors must be integers from 2 up, got {factors}.")
        if not profiles or min(profiles) < 0:
            raise ValueError(f"profiles must be non-negative widths, got {profiles}.")
        self.factors = [int(f) for f in factors]
        self.profiles = [float(w) for w in profiles]
        self.triplet = RandSliceTriplet(patch_size, min_foreground, random_axis, max_anisotropy, max_tries, context,
                                        augment)
        self.context = context

    def set_random_state(self, seed: int | None = None, state=None) -> RandSliceGap:
        super().set_random_state(seed, state)
        self.triplet.set_random_state(state=self.R)
        return self

    def randomize(self, img: torch.Tensor) -> None:
        self.triplet.randomize(img)  # the axis, the target slice i and the patch's corner
        n = img.shape[self.triplet._axis + 1]
        i = self.triplet._corner[0]
        factor = self.factors[self.R.randint(len(self.factors))]
        factor = min(factor, n - 1)
        low, high = max(1, i + factor - (n - 1)), min(factor - 1, i)
        self._factor = factor
        self._position = int(self.R.randint(low, high + 1)) if low <= high else 1
        self._profile = self.profiles[self.R.randint(len(self.profiles))]

    def _cut(self, img: torch.Tensor) -> torch.Tensor:
        """The pair as one stack: the input channels, then the target."""
        i, r0, c0 = self.triplet._corner
        factor, j, profile = self._factor, self._position, self._profile
        patch = self.triplet.patch_size
        vol = torch.movedim(img.as_tensor() if isinstance(img, MetaTensor) else img, self.triplet._axis + 1, 1)[0]
        n = vol.shape[0]
        phase, k = (i - j) % factor, (i - j) // factor
        m = (n - 1 - phase) // factor + 1
        window = np.arange(max(0, k - SPLINE_WINDOW), min(m, k + SPLINE_WINDOW + 2))
        taps = slice_profile_kernel(profile * factor)
        reach = taps.size // 2
        centres = np.append(phase + factor * window, i)
        index = reflect_index(centres[:, None] + np.arange(-reach, reach + 1)[None], n)
        rows, cols = slice(r0, r0 + patch[0]), slice(c0, c0 + patch[1])
        stack = vol[index.reshape(-1).tolist(), rows, cols].float()
        stack = stack.view(len(centres), taps.size, *stack.shape[1:])
        stack = torch.einsum("ct...,t->c...", stack, stack.new_tensor(taps)) if taps.size > 1 else stack[:, 0]
        knots, target = stack[:-1], stack[-1:]
        local = k - int(window[0])
        spline = natural_spline_second_derivatives(knots)
        t = j / factor
        s = 1 - t
        estimate = knots[local] * s + knots[local + 1] * t
        estimate = estimate + spline[local] * ((s**3 - s) / 6) + spline[local + 1] * ((t**3 - t) / 6)
        around = reflect_index(np.arange(k - self.context + 1, k + self.context + 1), m) - int(window[0])
        pair = torch.cat([gap_input(knots[around.tolist()], t, profile, estimate[None]), target])
        pad = (0, patch[1] - pair.shape[2], 0, patch[0] - pair.shape[1])
        return torch.nn.functional.pad(pair, pad) if any(pad) else pair

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        img = convert_to_tensor(img, track_meta=True)
        if img.ndim != 4 or min(img.shape[1:]) < 1:
            raise ValueError(f"RandSliceGap expects a channel-first 3D volume, got shape {tuple(img.shape)}.")
        if not randomize:
            stack = self._cut(img)
        else:
            best, best_fg = None, -1.0
            for _ in range(self.triplet.max_tries):
                self.randomize(img)
                stack = self._cut(img)
                fg = float((stack[-1] > FOREGROUND_THRESHOLD).float().mean())
                if fg > best_fg:
                    best, best_fg = stack, fg
                if fg >= self.triplet.min_foreground:
                    break
            stack = best
            if self.triplet.augment:
                stack = self.triplet._augment(stack)
        return stack[:-1], stack[-1:]


class SliceGaps(Transform):
    """Every full-slice pair of the protocol at factor F with a slice profile, for validation: ``[(input, target)]``.

    The volume is filtered along ``img.meta["slice_axis"]`` by a box ``w F`` slices wide for each width w of
    ``profiles`` (:py:func:`~misr_monai.interpolation.thick_slices`), every F-th slice from 0 is kept, and every
    ``stride``-th scored slice (not a multiple of F, up to the last kept one) whose target has foreground gives
    :py:func:`gap_input` and its target, for each factor of ``factors``.

    Args:
        factors: the factors. Defaults to (2,).
        profiles: the profile widths. Defaults to (0.0,).
        stride: keep every ``stride``-th scored slice. Defaults to 1.
        context: K, the kept neighbours on each side. Defaults to 2.

    Example::

        >>> pairs = SliceGaps(factors=(3,))(MetaTensor(torch.ones(1, 8, 8, 7)))
        >>> len(pairs), tuple(pairs[0][0].shape)
        (4, (7, 8, 8))
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, factors: Sequence[int] = (2,), profiles: Sequence[float] = (0.0,), stride: int = 1,
                 context: int = 2) -> None:
        if stride < 1:
            raise ValueError(f"stride must be positive, got {stride}.")
        self.factors, self.profiles = [int(f) for f in factors], [float(w) for w in profiles]
        self.stride, self.context = stride, context

    def __call__(self, img: NdarrayOrTensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        img = convert_to_tensor(img, track_meta=True)
        axis = recorded_slice_axis(img)
        volume = torch.movedim(img.as_tensor() if isinstance(img, MetaTensor) else img, axis + 1, 1)[0].float().cpu()
        out = []
        for factor in self.factors:
            for profile in self.profiles:
                vol = torch.from_numpy(thick_slices(volume.numpy(), 0, profile * factor))
                knots = vol[::factor]
                m = knots.shape[0]
                if m < 2:
                    continue
                estimate = natural_spline_at(knots, factor).view(m - 1, factor - 1, *vol.shape[1:])
                scored = [i for i in range(1, (m - 1) * factor + 1) if i % factor][:: self.stride]
                for i in scored:
                    if float(vol[i].max()) < FOREGROUND_THRESHOLD:
                        continue
                    k, j = divmod(i, factor)
                    around = reflect_index(np.arange(k - self.context + 1, k + self.context + 1), m).tolist()
                    x = gap_input(knots[around], j / factor, profile, estimate[k, j - 1][None])
                    out.append((x.to(img.device), vol[i : i + 1].clone().to(img.device)))
        return out
