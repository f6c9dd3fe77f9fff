# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Dictionary wrappers of :py:mod:`misr_monai.transforms.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch

from monai.config import KeysCollection
from monai.transforms import InvertibleTransform, MapTransform, Randomizable

from misr_monai.transforms.array import (PercentileScale, RandSliceGap, RandSliceTriplet, SliceAxis, SliceGaps, SliceSpline,
                                        SliceTriplets)

__all__ = [
    "SliceAxisd",
    "SliceAxisD",
    "SliceAxisDict",
    "PercentileScaled",
    "PercentileScaleD",
    "PercentileScaleDict",
    "SliceSplined",
    "SliceSplineD",
    "SliceSplineDict",
    "RandSliceTripletd",
    "RandSliceTripletD",
    "RandSliceTripletDict",
    "SliceTripletsd",
    "SliceTripletsD",
    "SliceTripletsDict",
    "RandSliceGapd",
    "RandSliceGapD",
    "RandSliceGapDict",
    "SliceGapsd",
    "SliceGapsD",
    "SliceGapsDict",
]


class SliceAxisd(MapTransform):
    """Dictionary-based :py:class:`SliceAxis`: records ``meta["slice_axis"]`` on each key's MetaTensor."""

    backend = SliceAxis.backend

    def __init__(
        self, keys: KeysCollection, axis: int | None = None, tolerance: float = 0.1, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = SliceAxis(axis, tolerance)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class PercentileScaled(MapTransform, InvertibleTransform):
    """Dictionary-based :py:class:`PercentileScale`, invertible (for example by ``monai.transforms.Invertd``)."""

    backend = PercentileScale.backend

    def __init__(self, keys: KeysCollection, percentile: float = 99.5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = PercentileScale(percentile)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler.inverse(d[key])
        return d


class SliceSplined(MapTransform):
    """Dictionary-based :py:class:`SliceSpline`: the spline of the volume at ``keys`` (one key) goes to ``spline_key``,
    for :py:class:`RandSliceTripletd` and :py:class:`SliceTripletsd` to cut, along the axes ``random_axis`` lets the
    sampler draw. Deterministic: cached with the volume."""

    backend = SliceSpline.backend

    def __init__(self, keys: KeysCollection, spline_key: str = "spline", allow_missing_keys: bool = False,
                 random_axis: bool = False, max_anisotropy: float = 1.5) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"SliceSplined takes exactly one key (the volume), got {self.keys}.")
        self.spline_key = spline_key
        self.transform = SliceSpline(random_axis, max_anisotropy)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.spline_key] = self.transform(d[key])
        return d


class RandSliceTripletd(Randomizable, MapTransform):
    """Dictionary-based :py:class:`RandSliceTriplet`: ``num_samples`` patches per volume.

    Each returned dict is a copy of the input with ``keys`` (one key: the volume) replaced by the 2-channel input
    patch (slices i-1, i+1) and ``label_key`` set to the 1-channel target (slice i).

    Args:
        keys: the key of the channel-first volume (one key).
        label_key: where to put the target slice. Defaults to ``"label"``.
        num_samples: patches per volume. Defaults to 1.
        patch_size, min_foreground, random_axis, max_anisotropy, max_tries: as :py:class:`RandSliceTriplet`.
        allow_missing_keys: don't raise if the key is missing. Defaults to False.
        context: K neighbours on each side, a 2K-channel input (:py:class:`RandSliceTriplet`). Defaults to 1.
        augment: random in-plane flips and 90-degree rotations of each patch (:py:class:`RandSliceTriplet`).
            Defaults to False.
        spline_key: the key of the volume's :py:class:`SliceSplined` output, appended to the input as its last
            channel, and dropped from the returned dicts; None for none. Defaults to None.

    Example::

        >>> t = RandSliceTripletd("image", num_samples=2, patch_size=(32, 32)).set_random_state(0)
        >>> out = t({"image": MetaTensor(torch.rand(1, 40, 40, 9))})
        >>> len(out), tuple(out[0]["image"].shape), tuple(out[0]["label"].shape)
        (2, (2, 32, 32), (1, 32, 32))
    """

    backend = RandSliceTriplet.backend

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "label",
        num_samples: int = 1,
        patch_size: Sequence[int] = (128, 128),
        min_foreground: float = 0.1,
        random_axis: bool = False,
        max_anisotropy: float = 1.5,
        max_tries: int = 10,
        allow_missing_keys: bool = False,
        context: int = 1,
        spline_key: str | None = None,
        augment: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"RandSliceTripletd takes exactly one key (the volume), got {self.keys}.")
        self.spline_key = spline_key
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}.")
        self.label_key = label_key
        self.num_samples = int(num_samples)
        self.sampler = RandSliceTriplet(patch_size, min_foreground, random_axis, max_anisotropy, max_tries, context, augment)

    def set_random_state(self, seed: int | None = None, state=None) -> RandSliceTripletd:
        super().set_random_state(seed, state)
        self.sampler.set_random_state(state=self.R)
        return self

    def randomize(self, data=None) -> None:
        pass  # each draw happens in ``self.sampler``, from the shared ``self.R``

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> list[dict[Hashable, torch.Tensor]]:
        out = []
        for key in self.key_iterator(dict(data)):
            spline = None if self.spline_key is None else data[self.spline_key]
            for _ in range(self.num_samples):
                x, y = self.sampler(data[key], spline=spline)
                sample = {k: v for k, v in data.items() if k != self.spline_key}
                sample[key], sample[self.label_key] = x, y
                out.append(sample)
        return out


class SliceTripletsd(MapTransform):
    """Dictionary-based :py:class:`SliceTriplets`: one dict per kept odd slice, full size, for validation.

    Each dict is a copy of the input with ``keys`` (one key: the volume) replaced by the 2-channel input (2K with
    ``context`` K, 2K + 1 with the spline at ``spline_key``, which is dropped) and ``label_key`` set to the target
    slice; with ``list_data_collate`` a batch of one volume becomes all its slices.
    """

    backend = SliceTriplets.backend

    def __init__(self, keys: KeysCollection, label_key: str = "label", stride: int = 1, allow_missing_keys: bool = False,
                 context: int = 1, spline_key: str | None = None):
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"SliceTripletsd takes exactly one key (the volume), got {self.keys}.")
        self.label_key = label_key
        self.spline_key = spline_key
        self.splitter = SliceTriplets(stride, context)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> list[dict[Hashable, torch.Tensor]]:
        out = []
        for key in self.key_iterator(dict(data)):
            spline = None if self.spline_key is None else data[self.spline_key]
            for x, y in self.splitter(data[key], spline=spline):
                sample = {k: v for k, v in data.items() if k != self.spline_key}
                sample[key], sample[self.label_key] = x, y
                out.append(sample)
        return out


class RandSliceGapd(Randomizable, MapTransform):
    """Dictionary-based :py:class:`RandSliceGap`: ``num_samples`` training pairs per volume, each a copy of the input
    with ``keys`` (one key: the volume) replaced by the input patch and ``label_key`` set to the target.

    Args:
        keys: the key of the channel-first volume (one key).
        label_key: where to put the target slice. Defaults to ``"label"``.
        num_samples: pairs per volume. Defaults to 1.
        factors, profiles, patch_size, min_foreground, random_axis, max_anisotropy, max_tries, context, augment: as
            :py:class:`RandSliceGap`.
    """

    backend = RandSliceGap.backend

    def __init__(self, keys: KeysCollection, label_key: str = "label", num_samples: int = 1,
                 factors: Sequence[int] = (2, 3, 4, 5, 6), profiles: Sequence[float] = (0.0, 0.5, 1.0),
                 patch_size: Sequence[int] = (128, 128), min_foreground: float = 0.1, random_axis: bool = False,
                 max_anisotropy: float = 1.5, max_tries: int = 10, context: int = 2, augment: bool = False,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"RandSliceGapd takes exactly one key (the volume), got {self.keys}.")
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}.")
        self.label_key, self.num_samples = label_key, int(num_samples)
        self.sampler = RandSliceGap(factors, profiles, patch_size, min_foreground, random_axis, max_anisotropy,
                                    max_tries, context, augment)

    def set_random_state(self, seed: int | None = None, state=None) -> RandSliceGapd:
        super().set_random_state(seed, state)
        self.sampler.set_random_state(state=self.R)
        return self

    def randomize(self, data=None) -> None:
        pass  # each draw happens in ``self.sampler``, from the shared ``self.R``

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> list[dict[Hashable, torch.Tensor]]:
        out = []
        for key in self.key_iterator(dict(data)):
            for _ in range(self.num_samples):
                sample = dict(data)
                sample[key], sample[self.label_key] = self.sampler(data[key])
                out.append(sample)
        return out


class SliceGapsd(MapTransform):
    """Dictionary-based :py:class:`SliceGaps`: one dict per scored slice of each factor and profile, for validation."""

    backend = SliceGaps.backend

    def __init__(self, keys: KeysCollection, label_key: str = "label", factors: Sequence[int] = (2,),
                 profiles: Sequence[float] = (0.0,), stride: int = 1, context: int = 2,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"SliceGapsd takes exactly one key (the volume), got {self.keys}.")
        self.label_key = label_key
        self.splitter = SliceGaps(factors, profiles, stride, context)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> list[dict[Hashable, torch.Tensor]]:
        out = []
        for key in self.key_iterator(dict(data)):
            for x, y in self.splitter(data[key]):
                sample = dict(data)
                sample[key], sample[self.label_key] = x, y
                out.append(sample)
        return out


SliceAxisD = SliceAxisDict = SliceAxisd
PercentileScaleD = PercentileScaleDict = PercentileScaled
SliceSplineD = SliceSplineDict = SliceSplined
RandSliceTripletD = RandSliceTripletDict = RandSliceTripletd
SliceTripletsD = SliceTripletsDict = SliceTripletsd
RandSliceGapD = RandSliceGapDict = RandSliceGapd
SliceGapsD = SliceGapsDict = SliceGapsd
