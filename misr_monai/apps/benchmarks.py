# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Speed and memory of each method on a synthetic volume, and the speed of a bundle's training (``--training``):
``misr benchmark`` or ``python -m misr_monai.apps.benchmarks``.

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

from misr_monai.apps.costs import count_macs, matmul_ceiling

__all__ = ["synthetic_volume", "run_benchmarks", "run_training_benchmark", "add_arguments", "run_from_args", "main"]


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


def _measure(method: str, shape, device: str, batch_size: int, precision: str, factor: int, queue) -> None:
    import torch

    from monai.data import MetaTensor

    from misr_monai.inferers import SliceInterpolationInferer
    from misr_monai.predictors.registry import load_predictor

    volume = MetaTensor(torch.from_numpy(synthetic_volume(shape))[None])  # in memory, as a bundle's loader gives it
    predict = load_predictor(method, device, batch_size, precision=precision)
    params, macs = count_macs(predict)
    inferer = SliceInterpolationInferer(factor, axis=2, profile=0.0)  # the one path of misr upsample and the bundles
    inferer(volume[..., :3], predict)  # warm-up: oneDNN primitive creation
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = inferer(volume, predict)[0]
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
                   precisions=("fp32",), factor: int = 2) -> dict:
    """Print and return the same-run matmul ceilings and, per method and precision, its time, slices/s, achieved
    multiply-adds per second, their ratio to the ceilings, and peak memory."""
    from misr_monai.interpolation import BASELINES
    from misr_monai.precision import native_bf16

    ctx = multiprocessing.get_context("spawn")
    half = "bf16" if not device.startswith("cuda") or native_bf16(device) else "fp16"
    kinds = ["fp32", half] if device.startswith("cuda") or native_bf16(device) else ["fp32"]
    ceilings = {k: matmul_ceiling(k, device) for k in kinds}
    print(f"synthetic volume {shape[0]}x{shape[1]}x{shape[2]} float32, slice axis 2, x{factor}, device {device}, "
          f"batch {batch_size}")
    print("ceilings (2048x2048 matmul, same run): " + ", ".join(f"{k} {v / 1e9:.1f} GMAC/s" for k, v in ceilings.items()))
    width = max(14, *(len(m) + 2 for m in methods))
    header = f"{'method':<{width}}{'precision':>10}{'seconds':>9}{'slices/s':>10}{'MACs/voxel':>12}{'GMAC/s':>9}"
    header += "".join(f"{'/' + k + ' ceil':>12}" for k in ceilings) + f"{'peak RSS MiB':>14}{'added MiB':>11}{'peak GPU MiB':>14}"
    print(header)
    results = []
    for method in methods:
        for precision in precisions[:1] if method in BASELINES else precisions:  # no network: precision is moot
            queue = ctx.Queue()
            proc = ctx.Process(target=_measure, args=(method, shape, device, batch_size, precision, factor, queue))
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
    """The options of ``misr benchmark`` and ``python -m misr_monai.apps.benchmarks``."""
    parser.add_argument("--methods", default="linear,cubic", help="comma-separated methods (default: linear,cubic)")
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 128), help="volume shape (default: 256 256 128)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="slice pairs per forward pass (default: 8); with --training, patches per iteration (default: "
                        "the bundle's)")
    parser.add_argument("--precision", default="fp32", help="comma-separated precisions to time: fp32, bf16 (autocast; "
                        "needs native bfloat16), auto (default: fp32)")
    parser.add_argument("--factor", type=int, default=2, help="upsampling factor, 2 to 8 (default: 2)")
    parser.add_argument("--training", metavar="BUNDLE", default=None,
                        help="instead: time BUNDLE's own training (a short name or folder): its data pipeline alone, one "
                        "step alone, and end to end with the share of time waiting for data")
    parser.add_argument("--dataset-dir", default="../shared/data/mri",
                        help="with --training: where the datalist's volumes are (default: ../shared/data/mri)")
    parser.add_argument("--datalist", default=None,
                        help="with --training: a datalist to use instead of the bundle's (default: the bundle's)")
    parser.add_argument("--iterations", type=int, default=40,
                        help="with --training: batches timed for the data alone and iterations end to end (default: 40)")
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
    if args.training:
        overrides = {**({"batch_size": args.batch_size} if args.batch_size else {}),
                     **({"datalist_file": args.datalist} if args.datalist else {})}
        return run_training_benchmark(args.training, args.dataset_dir, device, args.iterations, 10, args.iterations,
                                      overrides)
    return run_benchmarks(args.methods.split(","), tuple(args.shape), device, args.batch_size or 8, precisions,
                          args.factor)


def main(argv: list[str] | None = None) -> int:
    """``python -m misr_monai.apps.benchmarks``: the same command as ``misr benchmark``; returns the exit code."""
    from misr_monai.io import InputError

    parser = add_arguments(argparse.ArgumentParser(prog="python -m misr_monai.apps.benchmarks", description=__doc__.splitlines()[0]))
    try:
        run_from_args(parser.parse_args(argv))
    except InputError as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    return 0


def _training_parser(bundle: str, overrides: dict):
    """The bundle's ``configs/train.json`` parsed with ``overrides`` (a short name or a bundle folder)."""
    from pathlib import Path

    from monai.bundle import ConfigParser

    from misr_monai.predictors.registry import bundle_folder
    from misr_monai.io import InputError

    folder = bundle_folder(bundle)
    if folder is None or not (folder / "configs" / "train.json").is_file():
        raise InputError(f"--training: {bundle!r} is not a shipped bundle's name or a bundle folder with configs/train.json.")
    parser = ConfigParser()
    parser.read_config(str(Path(folder) / "configs" / "train.json"))
    parser.update({"bundle_root": str(folder), **overrides})
    return parser


def run_training_benchmark(bundle: str, dataset_dir: str, device: str = "cpu", batches: int = 40, steps: int = 10,
                           iterations: int = 40, overrides: dict | None = None) -> dict:
    """Print and return how fast the bundle's own training runs, in three parts of one process:

    - ``data``: patches/s of ``train#dataloader`` alone (after its first batch);
    - ``step``: seconds per training iteration on one batch already on the device (``train#trainer``'s own
      iteration: forward, loss, backward, optimizer), its multiply-adds per second and their ratio to the same-run
      matmul ceiling of the config's precision;
    - ``end_to_end``: iterations/s and patches/s of ``train#trainer.run()`` over ``iterations`` iterations, with the
      share of that time spent waiting for data (``DataWaitHandler``'s ``data_wait_share``).

    ``dataset_dir`` holds the volumes the bundle's datalist names; ``overrides`` replace config ids (for example
    ``{"batch_size": 16}``). No checkpoint or validation is written (a temporary output folder).
    """
    import tempfile

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with tempfile.TemporaryDirectory() as tmp:
        parser = _training_parser(bundle, {
            "dataset_dir": dataset_dir, "output_dir": tmp, "ckpt_dir": tmp, "device": torch.device(device),
            "max_epochs": 1, "epoch_length": iterations, "val_interval": 10**6,
            "train#dataset#runtime_cache": False,  # cached before the clock starts, as in 0.10.0
            **(overrides or {})})
        parser.get_parsed_content("initialize")
        trainer = parser.get_parsed_content("train#trainer")
        loader = parser.get_parsed_content("train#dataloader")
        batch_size = parser.get_parsed_content("batch_size")
        print(f"bundle {bundle}, device {device}, batch {batch_size}, "
              f"{len(parser.get_parsed_content('train#dataset'))} training entries (cached)")

        batches_iter, patches = iter(loader), 0
        batch = next(batches_iter)  # the first fetch starts the loader's thread
        start = time.perf_counter()
        for _ in range(batches):
            fetched = next(batches_iter, None)
            if fetched is None:  # an epoch of the loader is shorter than ``batches``
                batches_iter = iter(loader)
                fetched = next(batches_iter)
            patches += len(fetched["image"])
        data_seconds = time.perf_counter() - start
        data_rate = patches / data_seconds
        print(f"data alone: {data_rate:.0f} patches/s ({patches} patches in {data_seconds:.2f} s)")

        on_device = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        step = trainer._process_function
        step(trainer, on_device)  # warm-up: kernel selection, optimizer state
        with FlopCounterMode(display=False) as counter:
            step(trainer, on_device)
        macs = counter.get_total_flops() / 2
        sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            step(trainer, on_device)
        sync()
        step_seconds = (time.perf_counter() - start) / steps
        kind = "bf16" if parser.get("bf16", False) else "fp32"
        ceiling = matmul_ceiling(kind, str(device))
        ratio = macs / step_seconds / ceiling
        print(f"step alone: {step_seconds * 1000:.1f} ms/iteration ({len(on_device['image'])} patches), "
              f"{macs / 1e9:.1f} GMAC, {macs / step_seconds / 1e9:.1f} GMAC/s = {ratio:.2f} of the same-run {kind} "
              f"matmul ceiling ({ceiling / 1e9:.1f} GMAC/s)")

        trainer.state.iteration = trainer.state.epoch = 0
        start = time.perf_counter()
        trainer.run()
        metrics = trainer.state.metrics
        rate, share = metrics.get("iterations_per_s", float("nan")), metrics.get("data_wait_share", float("nan"))
        print(f"end to end: {rate:.2f} iterations/s = {rate * batch_size:.0f} patches/s, "
              f"{100 * share:.1f}% of the time waiting for data ({time.perf_counter() - start:.1f} s in all)")
    return {"data_patches_per_s": data_rate, "step_seconds": step_seconds, "step_macs": macs,
            f"step_ratio_{kind}": ratio, "iterations_per_s": rate, "patches_per_s": rate * batch_size,
            "data_wait_share": share}


if __name__ == "__main__":
    sys.exit(main())
