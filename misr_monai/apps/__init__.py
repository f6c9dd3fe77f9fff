# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The experiments on top of the library: the evaluation protocol over datalists (``misr evaluate``), the comparison
of every method (``misr compare``) and its report, the uncertainty study and calibration, figures, result tables,
costs and benchmarks."""
