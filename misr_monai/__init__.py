# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""MRI slice super-resolution on MONAI: reconstruct slice i from slices i-1 and i+1."""

from __future__ import annotations

import logging

__version__ = "0.11.0"

# MONAI says at import, on every CPU machine with pydicom, that an optional GPU DICOM decoder is missing: not ours to act on.
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)

__all__ = ["__version__"]
