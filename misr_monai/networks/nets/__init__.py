# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from .refinement import RefinedInterpolationNet
from .residual_interpolation import ResidualInterpolationNet, warm_start
