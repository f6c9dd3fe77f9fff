# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""PNG figures: protocol comparisons (axial and through-plane reformat) and an upsampling preview."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from monai.metrics import SSIMMetric

from misr_monai.io import atomic_write
from misr_monai.metrics import SSIM_WINDOW
from misr_monai.transforms.utils import percentile_scale_factor

__all__ = ["comparison_figure", "upsample_figure", "scalar_curve_figure", "uncertainty_figure"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    _pyplot().close(fig)


def _psnr_ssim(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    mse = max(float(np.mean((pred - truth) ** 2)), 1e-10)
    if min(truth.shape) < SSIM_WINDOW:
        return 10 * np.log10(1 / mse), float("nan")
    ssim = SSIMMetric(spatial_dims=2, data_range=1.0)(torch.tensor(pred)[None, None], torch.tensor(truth)[None, None])
    return 10 * np.log10(1 / mse), float(ssim)


def _zoom_box(image: np.ndarray) -> tuple[slice, slice]:
    """A box a third of the image's size, centred where the in-plane gradient of ``image`` is strongest on average."""
    from scipy.ndimage import uniform_filter

    h, w = image.shape
    bh, bw = max(h // 3, 1), max(w // 3, 1)
    gy, gx = np.gradient(image)
    energy = uniform_filter(np.hypot(gx, gy), size=(bh, bw), mode="constant")
    r, c = np.unravel_index(int(np.argmax(energy)), energy.shape)
    r0, c0 = min(max(r - bh // 2, 0), h - bh), min(max(c - bw // 2, 0), w - bw)
    return slice(r0, r0 + bh), slice(c0, c0 + bw)


def comparison_figure(
    truth: np.ndarray,
    reconstructions: dict[str, np.ndarray],
    axis: int,
    spacing,
    path: str | os.PathLike,
    title: str,
    plane: str = "axial",
) -> None:
    """Ground truth, each method, their absolute-error maps (one shared colour scale) and a zoomed box, for one plane.

    Args:
        truth: the ground-truth volume, cropped to the reconstructions' extent along ``axis``.
        reconstructions: method name -> reconstructed volume, in the truth's units.
        axis: the slice axis.
        spacing: the truth's voxel sizes, for the reformat's aspect ratio.
        path: the PNG to write.
        title: the volume's name.
        plane: ``"axial"`` (the reconstructed slice with the most foreground) or ``"sagittal"`` (a plane through the
            slice axis, at the middle of the first in-plane axis).
    """
    scale = percentile_scale_factor(truth)
    moved = {k: np.clip(np.moveaxis(v, axis, 0) / scale, 0, 1) for k, v in {"truth": truth, **reconstructions}.items()}
    if plane == "axial":
        fg = (moved["truth"][1::2] > 0.05).sum(axis=(1, 2))
        index = 2 * int(np.argmax(fg)) + 1
        images = {k: v[index] for k, v in moved.items()}
        aspect, where = 1.0, f"slice {index} (axis {axis})"
    else:
        in_plane = [a for a in range(3) if a != axis]
        index = moved["truth"].shape[1] // 2
        images = {k: v[:, index, :] for k, v in moved.items()}
        aspect, where = spacing[axis] / spacing[in_plane[1]], f"reformat at axis-{in_plane[0]} index {index}"
    plt = _pyplot()
    names = list(reconstructions)
    rows, cols = _zoom_box(images["truth"])
    fig, axes = plt.subplots(3, len(names) + 1, figsize=(3 * (len(names) + 1), 9.6), squeeze=False)
    axes[0, 0].imshow(images["truth"], cmap="gray", vmin=0, vmax=1, aspect=aspect)
    axes[0, 0].add_patch(plt.Rectangle((cols.start, rows.start), cols.stop - cols.start, rows.stop - rows.start,
                                       fill=False, edgecolor="yellow", linewidth=1))
    axes[0, 0].set_title("ground truth (yellow: zoomed box)", fontsize=9)
    axes[2, 0].imshow(images["truth"][rows, cols], cmap="gray", vmin=0, vmax=1, aspect=aspect)
    axes[2, 0].set_title("ground truth, zoomed", fontsize=9)
    errors = {k: np.abs(images[k] - images["truth"]) for k in names}
    emax = max(float(np.percentile(e, 99.5)) for e in errors.values()) or 1.0
    for col, name in enumerate(names, start=1):
        psnr, ssim = _psnr_ssim(images["truth"], images[name])
        axes[0, col].imshow(images[name], cmap="gray", vmin=0, vmax=1, aspect=aspect)
        axes[0, col].set_title(f"{name}\nPSNR {psnr:.2f} dB, SSIM {ssim:.4f}", fontsize=9)
        err_im = axes[1, col].imshow(errors[name], cmap="magma", vmin=0, vmax=emax, aspect=aspect)
        axes[1, col].set_title(f"|{name} - truth|", fontsize=9)
        axes[2, col].imshow(images[name][rows, cols], cmap="gray", vmin=0, vmax=1, aspect=aspect)
        axes[2, col].set_title(f"{name}, zoomed", fontsize=9)
    fig.colorbar(err_im, ax=axes[1, 0], fraction=0.8, label="absolute error (scaled intensity)")
    for a in axes.ravel():
        a.axis("off")
    fig.suptitle(f"{title}: {where}")
    _save(fig, path)


def upsample_figure(original: np.ndarray, upsampled: np.ndarray, axis: int, spacing, path, title: str) -> None:
    """A plane through the slice axis: the input (nearest neighbour) beside the x2 upsampled volume."""
    factor = upsampled.shape[axis] // max(original.shape[axis] - 1, 1)
    in_plane = [a for a in range(3) if a != axis]
    index = original.shape[in_plane[0]] // 2
    scale = percentile_scale_factor(original)
    before = np.clip(np.take(np.moveaxis(original, axis, 0), index, axis=1) / scale, 0, 1)
    after = np.clip(np.take(np.moveaxis(upsampled, axis, 0), index, axis=1) / scale, 0, 1)
    aspect = spacing[axis] / spacing[in_plane[1]]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    axes[0].imshow(before, cmap="gray", vmin=0, vmax=1, aspect=aspect, interpolation="nearest")
    axes[0].set_title(f"input: {original.shape[axis]} slices at {spacing[axis]:.2f} mm", fontsize=9)
    axes[1].imshow(after, cmap="gray", vmin=0, vmax=1, aspect=aspect / factor, interpolation="nearest")
    axes[1].set_title(f"upsampled: {upsampled.shape[axis]} slices at {spacing[axis] / factor:.2f} mm", fontsize=9)
    for a in axes:
        a.axis("off")
    fig.suptitle(f"{title}: plane through slice axis {axis}")
    _save(fig, path)


def scalar_curve_figure(log_dir: str | os.PathLike, tags: list[str], path: str | os.PathLike, title: str = "") -> dict:
    """Plot scalars logged by ``TensorBoardStatsHandler`` (all event files under ``log_dir``) against their step.

    Returns:
        tag -> ``(steps, values)`` as plotted; tags with no events are left out.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, dict[int, float]] = {}
    for events in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in set(tags) & set(acc.Tags()["scalars"]):
            series.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})  # resumed runs overlap
    curves = {tag: (sorted(s), [s[k] for k in sorted(s)]) for tag, s in series.items()}
    plt = _pyplot()
    fig, axes = plt.subplots(len(curves) or 1, 1, figsize=(7, 3 * max(len(curves), 1)), squeeze=False)
    for ax, (tag, (steps, values)) in zip(axes[:, 0], curves.items()):
        ax.plot(steps, values, marker="o" if len(steps) < 50 else None)
        ax.set_xlabel("epoch" if tag.startswith("val") else "iteration")
        ax.set_ylabel(tag)
        ax.grid(alpha=0.3)
    fig.suptitle(title or str(log_dir))
    _save(fig, path)
    return curves


def uncertainty_figure(truth: np.ndarray, mean: np.ndarray, std: np.ndarray, path: str | os.PathLike, title: str) -> None:
    """One slice on the [0, 1] scale: truth, the K-sample mean, its absolute error and the samples' standard
    deviation, the last two on one colour scale."""
    plt = _pyplot()
    err = np.abs(mean - truth)
    vmax = max(float(np.percentile(err, 99.5)), float(np.percentile(std, 99.5))) or 1.0
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    panels = [(truth, "ground truth", "gray", 1.0), (mean, "mean of the samples", "gray", 1.0),
              (err, "|mean - truth|", "magma", vmax), (std, "standard deviation of the samples", "magma", vmax)]
    for ax, (image, name, cmap, top) in zip(axes, panels):
        im = ax.imshow(image, cmap=cmap, vmin=0, vmax=top)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.colorbar(im, ax=axes[2:], fraction=0.05, label="scaled intensity")
    fig.suptitle(title)
    _save(fig, path)
