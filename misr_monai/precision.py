# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Which precision a network runs in: fp32, or bf16 where the device computes it natively and the model allows it."""

from __future__ import annotations

import torch

from misr_monai.io import InputError

__all__ = ["PRECISIONS", "MAX_BF16_PSNR_CHANGE_DB", "native_bf16", "resolve_precision"]

PRECISIONS = ("fp32", "bf16", "auto")
MAX_BF16_PSNR_CHANGE_DB = 0.01
"""``auto`` takes bf16 only for a model whose measured test-split PSNR change under bf16 is below this."""


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively: a GPU that supports it, a CPU with AVX512-BF16 or AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(precision: str, device: str | torch.device = "cpu", bf16_psnr_change_db: float | None = None,
                      bf16_faster_on: list[str] | None = None) -> str:
    """``fp32`` or ``bf16`` for a requested precision.

    ``auto`` gives bf16 where ``device`` has native bfloat16, the model's measured PSNR change under bf16
    (``bf16_psnr_change_db``, from its bundle config) is below :py:data:`MAX_BF16_PSNR_CHANGE_DB`, and bf16 was
    measured faster on this kind of device (``bf16_faster_on``: device types such as ``["cpu"]``; None: every kind),
    fp32 otherwise.

    Raises:
        InputError: an unknown precision, or bf16 on a device without native bfloat16.
    """
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    native = native_bf16(device)
    if precision == "bf16" and not native:
        raise InputError(f"--precision bf16: {torch.device(device)} has no native bfloat16 (AVX512-BF16 or AMX on a "
                         "CPU); emulated it would be slower than fp32. Use fp32 or auto.")
    if precision == "auto":
        safe = bf16_psnr_change_db is not None and abs(bf16_psnr_change_db) < MAX_BF16_PSNR_CHANGE_DB
        faster = bf16_faster_on is None or torch.device(device).type in bf16_faster_on
        return "bf16" if native and safe and faster else "fp32"
    return precision
