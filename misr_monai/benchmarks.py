# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Speed and memory of each method on a synthetic volume: ``misr benchmark`` or ``python -m misr_monai.benchmarks``.

Each method runs in a fresh process, so its peak resident memory is its own.
"""

from __future__ import annotations

import multiprocessing
import resource
import time

import numpy as np

__all__ = ["synthetic_volume", "run_benchmarks"]


def synthetic_volume(shape=(256, 256, 128), seed: int = 0) -> np.ndarray:
    """A smooth, head-like float32 volume: a bright ellipsoid with low-frequency texture."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    axes = np.ogrid[tuple(slice(-1, 1, complex(0, s)) for s in shape)]
    radius2 = sum(a.astype(np.float32) ** 2 for a in axes)
    volume = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 3)
    volume *= 4000
    volume += 600
    volume *= radius2 < 0.8
    return np.clip(volume, 0, None, out=volume)


def _measure(method: str, shape, device: str, batch_size: int, queue) -> None:
    import torch

    from misr_monai.inference import load_predictor, upsample_array

    volume = synthetic_volume(shape)
    predict = load_predictor(method, device, batch_size)
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = upsample_array(volume, 2, predict)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    queue.put((method, seconds, out.shape[2] - shape[2], peak_kb / 1024, (peak_kb - baseline_kb) / 1024, gpu))


def run_benchmarks(methods, shape=(256, 256, 128), device: str = "cpu", batch_size: int = 8) -> list[tuple]:
    """Print and return ``(method, seconds, new slices, slices/s, peak RSS MiB, added MiB, peak GPU MiB)`` per method."""
    ctx = multiprocessing.get_context("spawn")
    print(f"synthetic volume {shape[0]}x{shape[1]}x{shape[2]} float32, slice axis 2, device {device}, batch {batch_size}")
    print(f"{'method':<14}{'seconds':>9}{'slices/s':>10}{'peak RSS MiB':>14}{'added MiB':>11}{'peak GPU MiB':>14}")
    results = []
    for method in methods:
        queue = ctx.Queue()
        proc = ctx.Process(target=_measure, args=(method, shape, device, batch_size, queue))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            print(f"{method:<14}failed (exit code {proc.exitcode})")
            continue
        name, seconds, slices, peak, added, gpu = queue.get()
        results.append((name, seconds, slices, slices / seconds, peak, added, gpu))
        print(f"{name:<14}{seconds:>9.2f}{slices / seconds:>10.1f}{peak:>14.0f}{added:>11.0f}{gpu:>14.0f}")
    return results


if __name__ == "__main__":
    import sys

    from misr_monai.cli import main

    sys.exit(main(["benchmark", *sys.argv[1:]]))
