# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""What a method costs: its parameters and multiply-adds per output voxel, and the machine's same-run matmul ceiling."""

from __future__ import annotations

import time

import numpy as np

__all__ = ["count_macs", "matmul_ceiling"]


def count_macs(predictor, size: int = 64) -> tuple[int, float]:
    """Parameters and multiply-adds per output voxel of a slice predictor (0, 0 for an interpolation).

    ``torch.utils.flop_counter.FlopCounterMode`` counts every convolution, matrix multiply and attention while the
    predictor reconstructs one ``size`` x ``size`` slice, so a sampling model's every network pass and sample counts.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from misr_monai.adaptation import AdaptingPredictor
    from misr_monai.predictors.network import NetworkPredictor

    predictor = predictor.predictor if isinstance(predictor, AdaptingPredictor) else predictor  # adapted: the same net
    module = predictor.trained_module if isinstance(predictor, NetworkPredictor) else None
    if module is None:
        return 0, 0.0
    slices = np.random.default_rng(0).uniform(0, 1000, (2, size, size)).astype(np.float32)
    with FlopCounterMode(display=False) as counter:
        predictor(slices)
    return sum(p.numel() for p in module.parameters()), counter.get_total_flops() / 2 / size**2


def matmul_ceiling(dtype: str = "fp32", device: str = "cpu", n: int = 2048, seconds: float = 1.5) -> float:
    """Multiply-adds per second of the fastest of repeated ``n`` x ``n`` matrix multiplies in ``dtype``."""
    import torch

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    a = torch.randn(n, n, device=device).to(torch_dtype)
    b = torch.randn(n, n, device=device).to(torch_dtype)
    best, spent = float("inf"), 0.0
    a @ b  # warm-up: kernel selection and first-touch
    while spent < seconds:
        start = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return n**3 / best
