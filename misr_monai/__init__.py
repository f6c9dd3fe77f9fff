# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""MRI slice super-resolution on MONAI: reconstruct slice i from slices i-1 and i+1."""

from __future__ import annotations

__version__ = "0.3.0"

__all__ = ["__version__"]
