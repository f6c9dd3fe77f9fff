# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""What a slice predictor is: the contract of every method the volume path and the protocol run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SlicePredictor", "SamplingSlicePredictor", "is_sampling", "samples_of", "any_factor"]


@runtime_checkable
class SlicePredictor(Protocol):
    """Maps the ``m`` original slices of a volume, stacked on axis 0 as ``(m, H, W)``, to the ``m - 1`` slices between
    them, in the volume's own intensity units: the baselines of :py:mod:`misr_monai.interpolation` (plain functions),
    :py:class:`~misr_monai.predictors.network.NetworkPredictor` and
    :py:class:`~misr_monai.predictors.sampling.SamplingPredictor`.

    A predictor whose ``any_factor`` attribute is true (the baselines, a context network told the position of the new
    slice) also takes ``factor=F`` and ``profile=w`` and returns the ``F - 1`` new slices of every gap in order,
    ``((m - 1) (F - 1), H, W)``, at positions ``t = j / F``; ``profile`` is the slice profile's width over the spacing
    (0 thin slices with gaps, 1 contiguous thick slices)."""

    def __call__(self, slices: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class SamplingSlicePredictor(SlicePredictor, Protocol):
    """A slice predictor that samples: its result is the mean of ``num_samples`` samples per slice, and it also gives
    their per-voxel standard deviation, raw and recalibrated."""

    std_calibration: tuple[float, float] | None

    @property
    def num_samples(self) -> int: ...

    def predict_with_std(self, slices: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def calibrated_std(self, std: np.ndarray, slices: np.ndarray) -> np.ndarray: ...


def is_sampling(predictor: SlicePredictor) -> bool:
    """Whether ``predictor`` samples (:py:class:`SamplingSlicePredictor`)."""
    return isinstance(predictor, SamplingSlicePredictor)


def samples_of(predictor: SlicePredictor) -> int:
    """Samples per slice: ``num_samples`` of a sampling predictor, else 1."""
    return predictor.num_samples if is_sampling(predictor) else 1


def any_factor(predictor: SlicePredictor) -> bool:
    """Whether ``predictor`` predicts the new slices of any factor in one pass (its ``any_factor`` attribute)."""
    return bool(getattr(predictor, "any_factor", False))
