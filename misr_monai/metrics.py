# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The evaluation protocol's metrics (../shared/EVALUATION.md), implemented once."""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import binary_dilation, convolve
from scipy.stats import pearsonr, spearmanr

from monai.metrics import SSIMMetric

from misr_monai.transforms.utils import FOREGROUND_THRESHOLD, percentile_scale_factor

__all__ = ["METRICS", "SLICE_METRICS", "VOLUME_METRICS", "CALIBRATION_METRICS", "SSIM_WINDOW", "slice_metrics",
           "through_plane_ratio", "sharpness_ratio", "high_frequency_ratio", "score_reconstruction", "score_calibration", "pool_calibration",
           "calibrated_std", "fit_std_calibration", "calibrated_coverage", "error_std_correlations", "image_psnr_ssim"]

SLICE_METRICS = ("psnr", "psnr_fg", "ssim", "mae", "mse", "edge_ratio")
VOLUME_METRICS = ("psnr_vol", "psnr_core", "tp_ratio", "sharpness", "hf_ratio")
"""Metrics of a whole volume rather than means over its slices: foreground squared errors pooled over every scored
slice (``psnr_vol``) or over those of the middle third (``psnr_core``), through-plane continuity, and the sharpness of
the new slices against the original ones (:py:func:`sharpness_ratio`) and their high-frequency power
(:py:func:`high_frequency_ratio`)."""
METRICS = (*SLICE_METRICS, *VOLUME_METRICS)
CALIBRATION_METRICS = ("coverage_2std", "coverage_2std_cal", "spearman_std")
"""A sampling model's spread against its error, over the foreground voxels of the reconstructed slices: the share
whose truth lies within the K-sample mean +- 2 standard deviations (about 0.90 for a calibrated sampler at K = 8,
where mean and std are both estimated from the 8 samples; 0.95 as K grows), the same with the recalibrated std
(:py:func:`calibrated_std`; NaN for a model without a calibration), and the Spearman correlation of the mean's absolute
error with the std (the same for both: the recalibration is monotone)."""
CALIBRATION_SAMPLE = 4096
"""Foreground voxels per volume kept (seeded draw) for a Spearman correlation pooled over volumes."""
_MSE_FLOOR = 1e-10
SSIM_WINDOW = 11


def _psnr(mse: np.ndarray) -> np.ndarray:
    return 10 * np.log10(1.0 / np.maximum(mse, _MSE_FLOOR))


def _gradient_magnitude(slices: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(slices, axis=(1, 2))
    return np.sqrt(gx**2 + gy**2)


def slice_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per-slice metrics of ``pred`` against ``truth``, both ``(k, H, W)`` already scaled to [0, 1].

    Slices whose truth has its maximum below 0.05 are skipped. SSIM is NaN for slices smaller than its 11x11 window. ``psnr_fg`` and ``edge_ratio`` use the foreground
    (truth above 0.05, dilated in-plane by a 5x5 square); ``edge_ratio`` is the mean in-plane gradient magnitude of
    ``pred`` over that of ``truth`` there (1.0 is ideal, blur gives less).

    Returns:
        a dict of 1D arrays, one value per kept slice, keyed by :py:data:`SLICE_METRICS`, and ``sse_fg`` and
        ``fg_voxels``, each slice's foreground squared-error sum and voxel count (for the pooled PSNRs).
    """
    keep = truth.reshape(truth.shape[0], -1).max(axis=1) >= FOREGROUND_THRESHOLD
    truth, pred = truth[keep], pred[keep]
    if truth.shape[0] == 0:
        return {name: np.empty(0) for name in (*SLICE_METRICS, "sse_fg", "fg_voxels")}
    err = pred - truth
    mse = (err**2).mean(axis=(1, 2))
    fg = binary_dilation(truth > FOREGROUND_THRESHOLD, structure=np.ones((1, 5, 5), dtype=bool))
    fg_count = fg.sum(axis=(1, 2))
    sse_fg = (err**2 * fg).sum(axis=(1, 2))
    grad_pred = (_gradient_magnitude(pred) * fg).sum(axis=(1, 2))
    grad_truth = (_gradient_magnitude(truth) * fg).sum(axis=(1, 2))
    if min(truth.shape[1:]) >= SSIM_WINDOW:
        ssim = SSIMMetric(spatial_dims=2, data_range=1.0, reduction="none")(
            torch.from_numpy(pred[:, None]).float(), torch.from_numpy(truth[:, None]).float()
        ).reshape(-1).double().numpy()
    else:  # the protocol's 11x11 window does not fit
        ssim = np.full(truth.shape[0], np.nan)
    return {
        "psnr": _psnr(mse),
        "psnr_fg": _psnr(sse_fg / fg_count),
        "ssim": ssim,
        "mae": np.abs(err).mean(axis=(1, 2)),
        "mse": mse,
        "edge_ratio": grad_pred / np.maximum(grad_truth, 1e-12),
        "sse_fg": sse_fg,
        "fg_voxels": fg_count,
    }


def image_psnr_ssim(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of one 2D image against the truth, both on [0, 1] (a figure's panel title): the protocol's
    formulas, SSIM NaN where the 11x11 window does not fit."""
    psnr = float(_psnr(np.mean((pred - truth) ** 2)))
    if min(truth.shape) < SSIM_WINDOW:
        return psnr, float("nan")
    ssim = SSIMMetric(spatial_dims=2, data_range=1.0)(torch.tensor(pred)[None, None], torch.tensor(truth)[None, None])
    return psnr, float(ssim)


def through_plane_ratio(truth: np.ndarray, pred: np.ndarray) -> float:
    """Through-plane continuity: how much ``pred`` bends from slice to slice, relative to ``truth``.

    Both are ``(n, H, W)`` on the protocol's [0, 1] scale, slices along axis 0, with the reconstructed slices at odd
    indices. At each reconstructed slice i, the second difference along the slice axis ``x[i-1] - 2 x[i] + x[i+1]``
    is taken on the foreground (truth above 0.05, dilated 5x5 in-plane) and the ratio of its mean absolute value,
    prediction over truth, is returned. 1.0 is ideal; below 1 the reconstruction is smoother through-plane than the
    anatomy (``linear`` gives exactly 0); above 1 it jumps from slice to slice (flicker in a sagittal reformat).
    An error of the first difference would say nothing new: next to an exact original slice it is the slice's own
    error, so its mean equals the MAE.
    """
    return _through_plane_ratio(truth, pred, np.arange(1, truth.shape[0] - 1, 2))


def _through_plane_ratio(truth: np.ndarray, pred: np.ndarray, new: np.ndarray) -> float:
    """:py:func:`through_plane_ratio` at the reconstructed slices ``new`` (indices along axis 0, none at the ends)."""
    new = new[(new > 0) & (new < truth.shape[0] - 1)]

    def second_difference(x):
        return np.abs(x[new - 1] - 2 * x[new] + x[new + 1])

    fg = binary_dilation(truth[new] > FOREGROUND_THRESHOLD, structure=np.ones((1, 5, 5), dtype=bool))
    truth_bend = (second_difference(truth) * fg).sum()
    return float((second_difference(pred) * fg).sum() / truth_bend) if truth_bend > 0 else float("nan")


_LAPLACIAN = np.array([[[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]])


def sharpness_ratio(reconstruction: np.ndarray, factor: int = 2) -> float:
    """The mean absolute in-plane Laplacian of the new slices of a reconstruction (indices along axis 0 that are not
    multiples of ``factor``) over that of its original slices (multiples of ``factor``), on the protocol's [0, 1]
    scale.

    1.0: the new slices are as sharp as the acquired ones, so a user scrolling through the volume sees no alternation
    of sharp and soft slices; below 1 they are blurrier. It needs no ground truth, so it applies to real thick-slice
    scans too.

    Example::

        >>> volume = np.random.default_rng(0).random((5, 16, 16))
        >>> volume[1::2] = (volume[0:-2:2] + volume[2::2]) / 2  # linear interpolation: averaging blurs
        >>> sharpness_ratio(volume) < 1
        True
    """
    magnitude = np.abs(convolve(reconstruction, _LAPLACIAN, mode="reflect"))
    original = magnitude[0::factor].mean()
    new = np.arange(magnitude.shape[0]) % factor != 0
    return float(magnitude[new].mean() / original) if original > 0 else float("nan")


def high_frequency_ratio(reconstruction: np.ndarray, factor: int = 2) -> float:
    """The mean in-plane power above half the Nyquist frequency of the new slices of a reconstruction (indices along
    axis 0 that are not multiples of ``factor``) over that of its original slices, on their foreground.

    Each slice is high-passed in the Fourier domain (radial frequency above 0.25 cycles per voxel) and its squared
    values are averaged over the slice's own foreground (above 0.05, dilated in-plane by a 5x5 square). 1.0: the new
    slices carry as much fine detail as the acquired ones; below 1 they are blurred; above 1 they carry more (noise
    or invented texture, which a GAN can add and ``sharpness`` alone would reward). Needs no ground truth.

    Example::

        >>> volume = np.random.default_rng(0).random((5, 16, 16))
        >>> volume[1::2] = (volume[0:-2:2] + volume[2::2]) / 2  # averaging removes fine detail
        >>> high_frequency_ratio(volume) < 1
        True
    """
    fy = np.fft.fftfreq(reconstruction.shape[1])[:, None]
    fx = np.fft.fftfreq(reconstruction.shape[2])[None, :]
    high = np.hypot(fy, fx) > 0.25
    detail = np.fft.ifft2(np.fft.fft2(reconstruction, axes=(1, 2)) * high, axes=(1, 2)).real
    fg = binary_dilation(reconstruction > FOREGROUND_THRESHOLD, structure=np.ones((1, 5, 5), dtype=bool))
    power = (detail**2 * fg).sum(axis=(1, 2))
    count = fg.sum(axis=(1, 2))
    new = np.arange(reconstruction.shape[0]) % factor != 0
    original = power[~new].sum() / max(count[~new].sum(), 1)
    return float(power[new].sum() / max(count[new].sum(), 1) / original) if original > 0 else float("nan")


def score_reconstruction(truth: np.ndarray, reconstruction: np.ndarray, axis: int, factor: int = 2) -> dict[str, float]:
    """Score a reconstruction from every ``factor``-th slice of ``truth`` on its reconstructed slices (the indices
    along ``axis`` that are not multiples of ``factor``).

    ``reconstruction`` has ``(m - 1) factor + 1`` slices along ``axis``; it is compared with as many first slices of
    ``truth``, both in the volume's own units (scaled here by the truth's percentile).

    Returns:
        the per-volume mean of each metric of :py:data:`SLICE_METRICS` over the kept slices, the
        :py:data:`VOLUME_METRICS`, ``slices`` (the number of kept slices), the per-slice profile: ``slice_index``
        (each kept slice's index along ``axis``), ``slice_psnr`` (its PSNR) and ``volume_slices``, and
        ``position_psnr``: the mean per-slice PSNR at each position ``t = j / factor`` (j = 1 ... factor - 1).
    """
    scale = percentile_scale_factor(truth)
    n = reconstruction.shape[axis]
    new = np.arange(n)[np.arange(n) % factor != 0]
    truth_odd = np.clip(np.moveaxis(truth, axis, 0)[new].astype(np.float64) / scale, 0.0, 1.0)
    pred_odd = np.clip(np.moveaxis(reconstruction, axis, 0)[new].astype(np.float64) / scale, 0.0, 1.0)
    per_slice = slice_metrics(truth_odd, pred_odd)
    sse, count = per_slice.pop("sse_fg"), per_slice.pop("fg_voxels")
    scores = {name: float(np.mean(values)) if values.size else float("nan") for name, values in per_slice.items()}
    scores["slices"] = int(per_slice["psnr"].size)
    index = new[truth_odd.reshape(truth_odd.shape[0], -1).max(axis=1) >= FOREGROUND_THRESHOLD]
    scores["position_psnr"] = [float(np.mean(per_slice["psnr"][index % factor == j])) if np.any(index % factor == j)
                               else float("nan") for j in range(1, factor)]
    core = (3 * index >= n) & (3 * index < 2 * n)  # the middle third: n / 3 <= i < 2 n / 3
    scores["psnr_vol"] = float(_psnr(sse.sum() / count.sum())) if count.sum() else float("nan")
    scores["psnr_core"] = float(_psnr(sse[core].sum() / count[core].sum())) if count[core].sum() else float("nan")
    scores["slice_index"], scores["slice_psnr"], scores["volume_slices"] = index.tolist(), per_slice["psnr"].tolist(), n
    truth_all = np.clip(np.moveaxis(truth, axis, 0)[:n].astype(np.float64) / scale, 0.0, 1.0)
    pred_all = np.clip(np.moveaxis(reconstruction, axis, 0).astype(np.float64) / scale, 0.0, 1.0)
    scores["tp_ratio"] = _through_plane_ratio(truth_all, pred_all, new)
    scores["sharpness"] = sharpness_ratio(pred_all, factor)
    scores["hf_ratio"] = high_frequency_ratio(pred_all, factor)
    return scores


def calibrated_std(std, calibration: tuple[float, float], scale: float = 1.0):
    """The recalibrated spread ``sqrt((a * scale)^2 + (b * std)^2)`` of a sampler's ``std`` (Levi et al. 2019's variance
    recalibration with a floor ``a``: the noise of the truth and the base's bias, which sampling does not produce).

    Args:
        std: the samples' standard deviation (array or tensor), in the volume's units.
        calibration: ``(a, b)``, fitted by :py:func:`fit_std_calibration` on intensities scaled to [0, 1].
        scale: the volume's intensity scale (``percentile_scale_factor``), which ``a`` is multiplied by.
    """
    a, b = calibration
    return ((a * scale) ** 2 + (b * std) ** 2) ** 0.5


def fit_std_calibration(error: np.ndarray, std: np.ndarray, method: str = "conformal",
                        coverage: float = 0.9) -> tuple[float, float]:
    """``(a, b)`` of :py:func:`calibrated_std`, fitted on a held-out split.

    ``conformal`` (default): ``a = 0`` and ``b`` half the split-conformal quantile of ``|error| / std`` at
    ``coverage``, so that mean +- 2 calibrated std is the conformal interval: for a new voxel exchangeable with the
    fitted ones its truth lies inside with probability at least ``coverage`` (Vovk et al. 2005; Angelopoulos and Bates
    2021, normalised scores). ``gaussian``: ``(a, b)`` that maximise the Gaussian likelihood of the errors, ``error``
    ~ N(0, a^2 + (b std)^2) voxel by voxel (Levi et al. 2019's variance recalibration with a floor ``a``).

    Args:
        error: the K-sample mean's errors (or their absolute values) on a validation split, scaled to [0, 1].
        std: the samples' standard deviations at the same voxels.
        method: ``conformal`` or ``gaussian``.
        coverage: the conformal interval's coverage.
    """
    if method == "conformal":
        score = np.sort(np.abs(np.asarray(error, np.float64)) / np.maximum(np.asarray(std, np.float64), 1e-12))
        rank = min(int(np.ceil((score.size + 1) * coverage)), score.size)
        return 0.0, float(score[rank - 1] / 2)
    if method != "gaussian":
        raise ValueError(f"method must be conformal or gaussian, got {method!r}.")
    from scipy.optimize import minimize

    e2, s2 = np.square(np.asarray(error, np.float64)), np.square(np.asarray(std, np.float64))

    def nll(log_ab):
        var = np.exp(2 * log_ab[0]) + np.exp(2 * log_ab[1]) * s2
        return float(np.mean(np.log(var) + e2 / var))

    start = np.log([max(float(np.sqrt(e2.mean())) * 0.5, 1e-6), 1.0])
    a, b = np.exp(minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9}).x)
    return float(a), float(b)


def calibrated_coverage(error, std, calibration: tuple[float, float] | None) -> float:
    """The share of ``error`` within 2 recalibrated ``std`` (:py:func:`calibrated_std`); NaN without a
    calibration or voxels."""
    error, std = np.asarray(error, np.float64), np.asarray(std, np.float64)
    if calibration is None or not error.size:
        return float("nan")
    return float(np.mean(error <= 2 * calibrated_std(std, calibration)))


def score_calibration(truth: np.ndarray, mean: np.ndarray, std: np.ndarray, axis: int, seed: int = 0,
                      calibration: tuple[float, float] | None = None) -> dict:
    """:py:data:`CALIBRATION_METRICS` of a sampling model's x2 reconstruction (``mean``) and its per-voxel ``std``,
    raw and, with ``calibration`` (``(a, b)`` of :py:func:`calibrated_std`), recalibrated.

    As :py:func:`score_reconstruction`: odd slices, the truth's percentile scale, truth and mean clipped to [0, 1]
    (the std only scaled); the voxels are those whose truth is above 0.05.

    Returns:
        ``coverage_2std`` (over every voxel), ``coverage_2std_cal`` (over the draw, :py:func:`calibrated_coverage`,
        so that a new calibration rescores a stored row), ``spearman_std``, ``calibration_voxels`` and a seeded draw
        of at most :py:data:`CALIBRATION_SAMPLE` voxels' ``calibration_error`` and ``calibration_std`` (lists), which
        :py:func:`pool_calibration` pools over volumes.
    """
    scale = percentile_scale_factor(truth)
    n = mean.shape[axis]

    def odd(x, clip=True):
        x = np.moveaxis(x, axis, 0)[1:n:2].astype(np.float64) / scale
        return np.clip(x, 0.0, 1.0) if clip else x

    truth_odd = odd(truth)
    fg = truth_odd > FOREGROUND_THRESHOLD
    err, spread = np.abs(odd(mean) - truth_odd)[fg], odd(std, clip=False)[fg]
    pick = np.random.default_rng(seed).choice(err.size, min(CALIBRATION_SAMPLE, err.size), replace=False)
    return {
        "coverage_2std": float(np.mean(err <= 2 * spread)) if err.size else float("nan"),
        "coverage_2std_cal": calibrated_coverage(err[pick], spread[pick], calibration),
        "spearman_std": _spearman(err, spread),
        "calibration_voxels": int(err.size),
        "calibration_error": err[pick].tolist(),
        "calibration_std": spread[pick].tolist(),
    }


def pool_calibration(rows: list[dict]) -> dict[str, float]:
    """:py:data:`CALIBRATION_METRICS` over the volumes of ``rows`` (results of :py:func:`score_calibration`):
    the coverage over all their voxels, the Spearman correlation over their drawn voxels together."""
    voxels = np.array([r["calibration_voxels"] for r in rows])
    err = np.concatenate([r["calibration_error"] for r in rows])
    spread = np.concatenate([r["calibration_std"] for r in rows])
    pooled = {}
    for key in ("coverage_2std", "coverage_2std_cal"):
        coverage = np.array([r.get(key, float("nan")) for r in rows])
        pooled[key] = float((coverage * voxels).sum() / voxels.sum()) if voxels.sum() else float("nan")
    return {**pooled, "spearman_std": _spearman(err, spread)}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def error_std_correlations(err: np.ndarray, std: np.ndarray) -> dict:
    """How a sampler's std tracks its absolute error over the same voxels: their Pearson and Spearman correlations,
    the voxel count, the mean error and the mean std."""
    return {
        "voxels": int(err.size),
        "pearson_r": float(pearsonr(err, std).statistic),
        "spearman_r": float(spearmanr(err, std).statistic),
        "mae": float(err.mean()),
        "mean_std": float(std.mean()),
    }
