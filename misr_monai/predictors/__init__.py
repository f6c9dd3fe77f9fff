# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Slice predictors: what one is (:py:mod:`.base`), a network over every gap of a volume (:py:mod:`.network`), a
diffusion model's K samples (:py:mod:`.sampling`), and the registry of the shipped models (:py:mod:`.registry`).

Importing the package is light (no torch), so that ``misr --help`` can list the models; the network and sampling
predictors are imported from their modules."""

from __future__ import annotations

from .base import SamplingSlicePredictor, SlicePredictor, is_sampling, samples_of
from .registry import BUNDLES, DEFAULT_MODEL, bundle_folder, load_predictor, read_calibration, write_calibration

__all__ = ["BUNDLES", "DEFAULT_MODEL", "SamplingSlicePredictor", "SlicePredictor", "bundle_folder", "is_sampling",
           "load_predictor", "read_calibration", "samples_of", "write_calibration"]
