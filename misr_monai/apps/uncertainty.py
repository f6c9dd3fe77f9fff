# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Does a sampling model know where it is wrong? Error against the per-voxel standard deviation of K samples."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from misr_monai.apps.evaluation import protocol_volumes, read_protocol_volume, run_protocol
from misr_monai.apps.tables import write_table
from misr_monai.metrics import error_std_correlations
from misr_monai.transforms.utils import FOREGROUND_THRESHOLD, percentile_scale_factor

__all__ = ["UNCERTAINTY_COLUMNS", "uncertainty_study", "fit_calibration"]

UNCERTAINTY_COLUMNS = ("dataset", "volume", "samples", "slices", "voxels", "pearson_r", "spearman_r", "mae", "mean_std")


def uncertainty_study(
    datalists: list[str | os.PathLike],
    split: str,
    predictor,
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    slab: int = 8,
) -> list[dict]:
    """Sample a slab of ``slab`` reconstructed slices at the middle of each volume and correlate error with spread.

    As in the protocol, the odd slices are reconstructed from the even ones; ``predictor`` has
    ``predict_with_std`` (a ``SamplingPredictor`` with K > 1 samples). Per volume, over foreground voxels (truth above
    0.05 on the protocol's [0, 1] scale): the Pearson and Spearman correlations of the absolute error of the K-sample
    mean with the K-sample standard deviation. Writes ``uncertainty.{csv,md}`` (a last row ``all`` pools every
    voxel) and, per volume, a PNG of the slab's slice with the most foreground (radiological view): truth, mean, absolute
    error, std.

    Returns:
        the table's rows.
    """
    from misr_monai.apps.figures import display_plane, uncertainty_figure

    pooled_err, pooled_std = [], []

    def score(item: dict) -> list[dict]:
        truth, img, axis = read_protocol_volume(item)
        scale = percentile_scale_factor(truth)
        moved = np.moveaxis(truth, axis, 0).astype(np.float32)
        m = moved.shape[0] // 2  # even slices available
        start = max(0, m // 2 - slab // 2) * 2
        even = moved[start : start + 2 * slab + 1 : 2]
        odd = moved[start + 1 : start + 2 * len(even) - 1 : 2]
        mean, std = predictor.predict_with_std(even)
        truth01, mean01 = np.clip(odd / scale, 0, 1), np.clip(mean / scale, 0, 1)
        err, std01 = np.abs(mean01 - truth01), std / scale
        fg = truth01 > FOREGROUND_THRESHOLD
        e, s = err[fg].astype(np.float64), std01[fg].astype(np.float64)
        pooled_err.append(e)
        pooled_std.append(s)
        row = {"dataset": item["dataset"], "volume": item["volume"], "samples": predictor.num_samples,
               "slices": len(odd), **error_std_correlations(e, s)}
        best = int(np.argmax(fg.sum(axis=(1, 2))))
        stem = item["volume"].replace("/", "_").split(".nii")[0]
        panels = [display_plane(np.expand_dims(x[best], axis), img.affine, axis, 0)[0] for x in (truth01, mean01, std01)]
        uncertainty_figure(*panels, Path(out_dir) / f"{stem}_uncertainty.png",
                           f"{item['volume']}: slice {start + 2 * best + 1} (axis {axis}), r = {row['pearson_r']:.2f}")
        return [row]

    rows, skipped = run_protocol(protocol_volumes(datalists, split, dataset_dir), score)
    rows.append({"dataset": "all", "volume": "all", "samples": rows[0]["samples"] if rows else 0,
                 "slices": sum(r["slices"] for r in rows),
                 **error_std_correlations(np.concatenate(pooled_err), np.concatenate(pooled_std))})
    for suffix in (".csv", ".md"):
        write_table(rows, UNCERTAINTY_COLUMNS, Path(out_dir) / f"uncertainty{suffix}")
    skipped.raise_if_any()
    return rows


def fit_calibration(datalists: list[str | os.PathLike], split: str, predictor, dataset_dir: str | os.PathLike,
                    name: str = "model", method: str = "conformal") -> dict:
    """Fit a sampling model's std recalibration (:py:func:`~misr_monai.metrics.fit_std_calibration`) on one split
    (the validation split: the test split stays unseen) through the protocol, on the seeded draw of foreground voxels
    of every volume.

    Returns:
        ``a``, ``b``, the volumes and drawn voxels it used, the share of those voxels within 2 std, raw
        (``coverage_2std``) and calibrated (``coverage_2std_cal``), and the K mean's ``psnr`` and ``psnr_core``
        averaged over the volumes.
    """
    from misr_monai.apps.evaluation import evaluate
    from misr_monai.metrics import calibrated_coverage, fit_std_calibration

    rows, _ = evaluate(datalists, split, {name: predictor}, dataset_dir, None, figures=False)
    rows = [r for r in rows if r["method"] == name]
    error = np.concatenate([r["calibration_error"] for r in rows])
    std = np.concatenate([r["calibration_std"] for r in rows])
    a, b = fit_std_calibration(error, std, method)
    return {"a": a, "b": b, "volumes": len(rows), "voxels": int(error.size),
            "coverage_2std": float(np.mean(error <= 2 * std)),
            "coverage_2std_cal": calibrated_coverage(error, std, (a, b)),
            "psnr": float(np.mean([r["psnr"] for r in rows])), "psnr_core": float(np.mean([r["psnr_core"] for r in rows]))}
