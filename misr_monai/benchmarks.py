# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Speed and memory of each method on a synthetic volume: ``misr benchmark`` or ``python -m misr_monai.benchmarks``.

Absolute times on a shared machine drift by 30% or more from one minute to the next, so each method's achieved
multiply-adds per second is reported as a ratio to a ceiling measured in the same run: a large matrix multiply in
fp32 (and in bf16 where the device has it). Each method runs in a fresh process, so its peak resident memory is its
own.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time

import numpy as np

from misr_monai.costs import count_macs, matmul_ceiling

__all__ = ["synthetic_volume", "run_benchmarks", "add_arguments", "run_from_args", "main"]


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


def _measure(method: str, shape, device: str, batch_size: int, precision: str, queue) -> None:
    import torch

    from misr_monai.bundles import load_predictor
    from misr_monai.volume import upsample_array

    volume = synthetic_volume(shape)
    predict = load_predictor(method, device, batch_size, precision=precision)
    params, macs = count_macs(predict)
    upsample_array(volume[..., :3], 2, predict)  # warm-up: oneDNN primitive creation
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = upsample_array(volume, 2, predict)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    new_voxels = (out.shape[2] - shape[2]) * shape[0] * shape[1]
    used = getattr(predict, "precision", "-")
    queue.put((method, used, seconds, out.shape[2] - shape[2], macs * new_voxels, params, peak_kb / 1024,
               (peak_kb - baseline_kb) / 1024, gpu))


def run_benchmarks(methods, shape=(256, 256, 128), device: str = "cpu", batch_size: int = 8,
                   precisions=("fp32",)) -> dict:
    """Print and return the same-run matmul ceilings and, per method and precision, its time, slices/s, achieved
    multiply-adds per second, their ratio to the ceilings, and peak memory."""
    from misr_monai.interpolation import BASELINES
    from misr_monai.precision import native_bf16

    ctx = multiprocessing.get_context("spawn")
    half = "bf16" if not device.startswith("cuda") or native_bf16(device) else "fp16"
    kinds = ["fp32", half] if device.startswith("cuda") or native_bf16(device) else ["fp32"]
    ceilings = {k: matmul_ceiling(k, device) for k in kinds}
    print(f"synthetic volume {shape[0]}x{shape[1]}x{shape[2]} float32, slice axis 2, device {device}, batch {batch_size}")
    print("ceilings (2048x2048 matmul, same run): " + ", ".join(f"{k} {v / 1e9:.1f} GMAC/s" for k, v in ceilings.items()))
    width = max(14, *(len(m) + 2 for m in methods))
    header = f"{'method':<{width}}{'precision':>10}{'seconds':>9}{'slices/s':>10}{'MACs/voxel':>12}{'GMAC/s':>9}"
    header += "".join(f"{'/' + k + ' ceil':>12}" for k in ceilings) + f"{'peak RSS MiB':>14}{'added MiB':>11}{'peak GPU MiB':>14}"
    print(header)
    results = []
    for method in methods:
        for precision in precisions[:1] if method in BASELINES else precisions:  # no network: precision is moot
            queue = ctx.Queue()
            proc = ctx.Process(target=_measure, args=(method, shape, device, batch_size, precision, queue))
            proc.start()
            proc.join()
            if proc.exitcode != 0:
                print(f"{method:<{width}}{precision:>10}  failed (exit code {proc.exitcode})")
                continue
            name, used, seconds, slices, macs, params, peak, added, gpu = queue.get()
            rate = macs / seconds
            row = {"method": name, "precision": used, "seconds": seconds, "slices_per_s": slices / seconds,
                   "macs_per_voxel": macs / (slices * shape[0] * shape[1]), "macs_per_s": rate,
                   **{f"ratio_{k}": rate / v for k, v in ceilings.items()}, "peak_mib": peak, "added_mib": added,
                   "gpu_mib": gpu}
            results.append(row)
            ratios = "".join(f"{row[f'ratio_{k}']:>12.2f}" if macs else f"{'-':>12}" for k in ceilings)
            print(f"{name:<{width}}{used:>10}{seconds:>9.2f}{row['slices_per_s']:>10.1f}{row['macs_per_voxel']:>12,.0f}"
                  f"{rate / 1e9:>9.1f}{ratios}{peak:>14.0f}{added:>11.0f}{gpu:>14.0f}")
    after = {k: matmul_ceiling(k, device) for k in kinds}
    print("ceilings after: " + ", ".join(f"{k} {v / 1e9:.1f} GMAC/s" for k, v in after.items())
          + " (the ratios use the ceilings before; a large change means the machine's load changed)")
    return {"ceilings": ceilings, "ceilings_after": after, "results": results}


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``misr benchmark`` and ``python -m misr_monai.benchmarks``."""
    parser.add_argument("--methods", default="linear,cubic", help="comma-separated methods (default: linear,cubic)")
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 128), help="volume shape (default: 256 256 128)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batch-size", type=int, default=8, help="slice pairs per forward pass (default: 8)")
    parser.add_argument("--precision", default="fp32", help="comma-separated precisions to time: fp32, bf16 (autocast; "
                        "needs native bfloat16), auto (default: fp32)")
    return parser


def run_from_args(args: argparse.Namespace) -> dict:
    """Run the benchmark that :py:func:`add_arguments`'s options describe.

    Raises:
        InputError: an unknown precision.
    """
    import torch

    from misr_monai.io import InputError
    from misr_monai.precision import PRECISIONS

    precisions = args.precision.split(",")
    if not set(precisions) <= set(PRECISIONS):
        raise InputError(f"--precision takes a comma-separated list of {', '.join(PRECISIONS)}, got {args.precision!r}.")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return run_benchmarks(args.methods.split(","), tuple(args.shape), device, args.batch_size, precisions)


def main(argv: list[str] | None = None) -> int:
    """``python -m misr_monai.benchmarks``: the same command as ``misr benchmark``; returns the exit code."""
    from misr_monai.io import InputError

    parser = add_arguments(argparse.ArgumentParser(prog="python -m misr_monai.benchmarks", description=__doc__.splitlines()[0]))
    try:
        run_from_args(parser.parse_args(argv))
    except InputError as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
