# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""PNG figures: protocol comparisons (the slice plane and a reformat through the slice axis), an upsampling preview,
training curves, uncertainty panels and per-volume gain plots, every image panel in the radiological convention."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from misr_monai.io import atomic_write
from misr_monai.metrics import image_psnr_ssim
from misr_monai.transforms.utils import percentile_scale_factor, voxel_spacing

__all__ = [
    "PLANE_NAMES",
    "reformat_figure",
    "PLANE_LETTERS",
    "display_plane",
    "column_spacing",
    "label_panel",
    "demo_figure",
    "calibration_figure",
    "busiest_slice",
    "reformat_axis",
    "comparison_figure",
    "upsample_figure",
    "scalar_curve_figure",
    "uncertainty_figure",
    "gain_figure",
]

PLANE_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}
"""The anatomical plane normal to each world axis (x: left-right, y: anterior-posterior, z: inferior-superior)."""
_LPS = nib.orientations.axcodes2ornt(("L", "P", "S"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    _pyplot().close(fig)


def display_plane(volume: np.ndarray, affine, axis: int, index: int) -> tuple[np.ndarray, float, str]:
    """The plane at ``index`` along array ``axis``, as a radiologist reads it, whatever the volume's storage order.

    Axial: anterior at the top, the patient's right on the left of the image. Coronal: superior at the top, the
    patient's right on the left. Sagittal: superior at the top, anterior on the left. The orientation comes from
    ``affine`` (nibabel's ``io_orientation``, so oblique volumes go to their closest axes).

    Returns:
        ``(image, aspect, plane)``: the 2D image (rows top to bottom), the pixel height over width for ``imshow``,
        and the plane's name.
    """
    ornt = nib.orientations.io_orientation(affine)
    world = int(ornt[axis, 0])
    lps = nib.orientations.apply_orientation(np.take(volume, [index], axis=axis), nib.orientations.ornt_transform(ornt, _LPS))
    image = lps.take(0, axis=world)  # the two remaining world axes, in L, P, S order
    spacing = np.empty(3)
    spacing[ornt[:, 0].astype(int)] = voxel_spacing(affine)
    rows, cols = (1, 0) if world == 2 else (2, 0) if world == 1 else (2, 1)
    image = image.T if world == 2 else image[:, ::-1].T
    return np.ascontiguousarray(image), float(spacing[rows] / spacing[cols]), PLANE_NAMES[world]


PLANE_LETTERS = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"), "sagittal": ("S", "I", "A", "P")}
"""The patient directions at the top, bottom, left and right of a :py:func:`display_plane` image."""


def column_spacing(affine, axis: int) -> float:
    """The width in mm of a pixel of :py:func:`display_plane`'s image of a plane normal to array ``axis``."""
    ornt = nib.orientations.io_orientation(affine)
    spacing = np.empty(3)
    spacing[ornt[:, 0].astype(int)] = voxel_spacing(affine)
    return float(spacing[0 if int(ornt[axis, 0]) in (1, 2) else 1])


def label_panel(ax, plane: str, mm_per_pixel: float, width: int) -> None:
    """Draw the orientation letters of ``plane`` at the edges of an image panel and a scale bar of 5, 10, 20 or 50 mm
    (the longest under a quarter of the ``width``-pixel image) at its bottom left."""
    top, bottom, left, right = PLANE_LETTERS[plane]
    style = {"color": "yellow", "fontsize": 8, "fontweight": "bold", "transform": ax.transAxes}
    for text, x, y, ha, va in ((top, 0.5, 0.99, "center", "top"), (bottom, 0.5, 0.01, "center", "bottom"),
                               (left, 0.01, 0.5, "left", "center"), (right, 0.99, 0.5, "right", "center")):
        ax.text(x, y, text, ha=ha, va=va, **style)
    length = max([mm for mm in (5, 10, 20, 50) if mm / mm_per_pixel <= width / 4] or [5])
    x0, x1 = 0.06, 0.06 + length / mm_per_pixel / width
    ax.plot([x0, x1], [0.06, 0.06], color="white", linewidth=2, transform=ax.transAxes)
    ax.text((x0 + x1) / 2, 0.08, f"{length} mm", color="white", fontsize=7, ha="center", va="bottom",
            transform=ax.transAxes)


def busiest_slice(truth: np.ndarray, axis: int, factor: int = 2) -> int:
    """The reconstructed index along ``axis`` in the middle of its gap (``F k + F // 2``) whose slice has the most
    foreground."""
    middle = factor // 2
    fg = (np.moveaxis(truth, axis, 0)[middle::factor] > 0.05 * percentile_scale_factor(truth)).sum(axis=(1, 2))
    return factor * int(np.argmax(fg)) + middle


def reformat_axis(affine, axis: int) -> int:
    """The array axis to cut for a reformat through slice ``axis``: sagittal where it can be, otherwise coronal."""
    world = nib.orientations.io_orientation(affine)[:, 0].astype(int)
    others = [a for a in range(3) if a != axis]
    return min(others, key=lambda a: world[a])


def _zoom_box(image: np.ndarray, aspect: float | None = None) -> tuple[slice, slice]:
    """A box a third of the image's size, centred where the in-plane gradient of ``image`` is strongest on average;
    with ``aspect`` (pixel height over width) a third of its width and as tall in mm, at most the image's height."""
    from scipy.ndimage import uniform_filter

    h, w = image.shape
    bh, bw = max(h // 3, 1), max(w // 3, 1)
    if aspect is not None:
        bh = min(h, max(bh, round(bw / aspect)))
    gy, gx = np.gradient(image)
    energy = uniform_filter(np.hypot(gx, gy), size=(bh, bw), mode="constant")
    r, c = np.unravel_index(int(np.argmax(energy)), energy.shape)
    r0, c0 = min(max(r - bh // 2, 0), h - bh), min(max(c - bw // 2, 0), w - bw)
    return slice(r0, r0 + bh), slice(c0, c0 + bw)


def reformat_figure(rows: list[dict], path: str | os.PathLike, title: str) -> None:
    """Zoomed reformats through the slice axis, one row per volume and one column per method: what a reader scrolling
    sagittally or coronally sees of the new slices (soft ones between sharp ones show as bands).

    Args:
        rows: each ``{"name", "truth", "reconstructions": {method: volume}, "affine", "axis", "scores": {method:
            {metric: value}}}``, volumes on the protocol's [0, 1] scale, the truth cut to the reconstructions' extent.
        path: the PNG to write.
        title: the figure's title.
    """
    plt = _pyplot()
    columns = ["truth", *rows[0]["reconstructions"]]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(3.2 * len(columns), 3.6 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        cut = reformat_axis(row["affine"], row["axis"])
        index = row["truth"].shape[cut] // 2
        planes = {name: display_plane(volume, row["affine"], cut, index)
                  for name, volume in {"truth": row["truth"], **row["reconstructions"]}.items()}
        truth, aspect, plane = planes["truth"]
        box = _zoom_box(truth, aspect)
        for c, name in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(planes[name][0][box], cmap="gray", vmin=0, vmax=1, aspect=aspect, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            score = row["scores"].get(name)
            label = name if score is None else (f"{name}\nPSNR {score['psnr']:.2f} dB, sharpness "
                                                f"{score['sharpness']:.2f}, hf {score['hf_ratio']:.2f}")
            ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{row['name']}\n{plane}, zoomed", fontsize=8)
                label_panel(ax, plane, column_spacing(row["affine"], cut), box[1].stop - box[1].start)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def comparison_figure(
    truth: np.ndarray,
    reconstructions: dict[str, np.ndarray],
    axis: int,
    affine,
    path: str | os.PathLike,
    title: str,
    plane: str = "slice",
    index: int | None = None,
    zoom: tuple[int, int, int, int] | None = None,
) -> None:
    """Ground truth, each method, their absolute-error maps (one shared colour scale) and a zoomed box, for one plane.

    Args:
        truth: the ground-truth volume, cropped to the reconstructions' extent along ``axis``.
        reconstructions: method name -> reconstructed volume, in the truth's units.
        axis: the slice axis.
        affine: the truth's affine: the panels' orientation (:py:func:`display_plane`) and aspect ratio.
        path: the PNG to write.
        title: the volume's name.
        plane: ``"slice"`` (a reconstructed slice) or ``"reformat"`` (a sagittal or coronal plane through the slice
            axis, :py:func:`reformat_axis`).
        index: the plane's index along its array axis; by default the reconstructed slice with the most foreground,
            or the middle of the reformat's axis.
        zoom: the zoomed box ``(row0, row1, col0, col1)`` in the displayed image; by default a third of the image
            where the truth has the most edges.
    """
    scale = percentile_scale_factor(truth)
    if plane == "slice":
        cut, index = axis, busiest_slice(truth, axis) if index is None else index
    else:
        cut = reformat_axis(affine, axis)
        index = truth.shape[cut] // 2 if index is None else index
    images = {}
    for name, volume in {"truth": truth, **reconstructions}.items():
        image, aspect, plane_name = display_plane(volume, affine, cut, index)
        images[name] = np.clip(image / scale, 0, 1)
    where = f"{plane_name}, index {index} of array axis {cut}" + (" (reconstructed slice)" if plane == "slice" else "")
    plt = _pyplot()
    names = list(reconstructions)
    rows, cols = _zoom_box(images["truth"]) if zoom is None else (slice(*zoom[:2]), slice(*zoom[2:]))
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
        psnr, ssim = image_psnr_ssim(images["truth"], images[name])
        axes[0, col].imshow(images[name], cmap="gray", vmin=0, vmax=1, aspect=aspect)
        axes[0, col].set_title(f"{name}\nPSNR {psnr:.2f} dB, SSIM {ssim:.4f}", fontsize=9)
        err_im = axes[1, col].imshow(errors[name], cmap="magma", vmin=0, vmax=emax, aspect=aspect)
        axes[1, col].set_title(f"|{name} - truth|", fontsize=9)
        axes[2, col].imshow(images[name][rows, cols], cmap="gray", vmin=0, vmax=1, aspect=aspect)
        axes[2, col].set_title(f"{name}, zoomed", fontsize=9)
    fig.colorbar(err_im, ax=axes[1, 0], fraction=0.8, label="absolute error (scaled intensity)")
    for a in axes.ravel():
        a.axis("off")
    fig.suptitle(f"{title}: {where}; radiological view")
    _save(fig, path)


def upsample_figure(original: np.ndarray, upsampled: np.ndarray, axis: int, affines, path, title: str) -> None:
    """A plane through the slice axis (sagittal or coronal, radiological view, orientation letters and scale bar): the
    input (nearest neighbour) beside the upsampled volume. ``affines`` are the input's and the output's."""
    cut = reformat_axis(affines[0], axis)
    index = original.shape[cut] // 2
    scale = percentile_scale_factor(original)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, volume, affine, name in zip(axes, (original, upsampled), affines, ("input", "upsampled")):
        image, aspect, plane = display_plane(volume, affine, cut, index)
        ax.imshow(np.clip(image / scale, 0, 1), cmap="gray", vmin=0, vmax=1, aspect=aspect, interpolation="nearest")
        ax.set_title(f"{name}: {volume.shape[axis]} slices at {voxel_spacing(affine)[axis]:.2f} mm", fontsize=9)
        ax.axis("off")
        label_panel(ax, plane, column_spacing(affine, cut), image.shape[1])
    fig.suptitle(f"{title}: {plane} plane through slice axis {axis}")
    _save(fig, path)


def demo_figure(truth: np.ndarray, reconstructions: dict[str, np.ndarray], axis: int, affine, path,
                title: str, factor: int = 2) -> dict[str, float]:
    """What xF slice interpolation does, on a volume decimated xF: the input (every F-th slice, each shown until the
    next), each reconstruction and the truth; a plane through the slice axis with a zoomed box, the box enlarged,
    one new (odd) slice, and each method's absolute error in the plane on one colour scale (so that the gain over cubic
    shows at a glance); each image panel with orientation letters and a scale bar, each method with its PSNR.

    Args:
        truth: the full volume, cropped to the reconstructions' ``(m - 1) F + 1`` slices along ``axis``.
        reconstructions: name -> the reconstruction from every F-th slice, in the truth's units.
        axis: the slice axis; affine: the truth's.
        factor: F. Defaults to 2.

    Returns:
        name -> the protocol's per-slice PSNR of the reconstruction (``misr_monai.metrics``), the input's included.
    """
    from misr_monai.metrics import score_reconstruction

    n = truth.shape[axis]
    nearest = np.take(truth, np.arange(n) // factor * factor, axis=axis)
    volumes = {f"input (every slice {factor})": nearest, **reconstructions, "truth": truth}
    psnr = {name: score_reconstruction(truth, v, axis, factor)["psnr"] for name, v in volumes.items() if name != "truth"}
    scale = percentile_scale_factor(truth)
    cut = reformat_axis(affine, axis)
    reformat = {n: display_plane(v, affine, cut, truth.shape[cut] // 2) for n, v in volumes.items()}
    new_slice = busiest_slice(truth, axis, factor)
    slices = {n: display_plane(v, affine, axis, new_slice) for n, v in volumes.items()}
    rows, cols = _zoom_box(np.clip(reformat["truth"][0] / scale, 0, 1))
    truth_plane = np.clip(reformat["truth"][0] / scale, 0, 1)
    errors = {n: np.abs(np.clip(reformat[n][0] / scale, 0, 1) - truth_plane) for n in volumes if n != "truth"}
    # one colour scale for every error panel, set by the reconstructions (the input's errors saturate it)
    vmax = max(float(np.percentile(errors[n], 99)) for n in reconstructions) or 1.0
    plt = _pyplot()
    fig, axes = plt.subplots(4, len(volumes), figsize=(3.2 * len(volumes), 13), squeeze=False)
    for col, name in enumerate(volumes):
        label = name if name == "truth" else f"{name}\nPSNR {psnr[name]:.2f} dB"
        (image, aspect, plane), (cross, cross_aspect, cross_plane) = reformat[name], slices[name]
        image, cross = np.clip(image / scale, 0, 1), np.clip(cross / scale, 0, 1)
        panels = ((image, aspect, plane, f"{label}\n{plane} plane", cut),
                  (image[rows, cols], aspect, plane, "zoomed box", cut),
                  (cross, cross_aspect, cross_plane, f"new slice {new_slice} ({cross_plane})", axis))
        for row, (shown, ratio, name_of_plane, text, normal) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(shown, cmap="gray", vmin=0, vmax=1, aspect=ratio, interpolation="nearest")
            ax.set_title(text, fontsize=9)
            ax.axis("off")
            label_panel(ax, name_of_plane, column_spacing(affine, normal), shown.shape[1])
        axes[0, col].add_patch(plt.Rectangle((cols.start, rows.start), cols.stop - cols.start, rows.stop - rows.start,
                                             fill=False, edgecolor="yellow", linewidth=1))
        ax = axes[3, col]
        ax.axis("off")
        if name == "truth":
            fig.colorbar(shown_error, ax=ax, fraction=0.5, label="|error| on [0, 1]")
            continue
        shown_error = ax.imshow(errors[name], cmap="magma", vmin=0, vmax=vmax, aspect=aspect, interpolation="nearest")
        ax.set_title(f"|error|, {reformat[name][2]} plane: mean {errors[name].mean():.4f}", fontsize=9)
    fig.suptitle(title)
    _save(fig, path)
    return psnr


def scalar_curve_figure(log_dir: str | os.PathLike, tags: list[str], path: str | os.PathLike, title: str = "",
                        by_run: bool = False) -> dict:
    """Plot scalars logged by ``TensorBoardStatsHandler`` (all event files under ``log_dir``, merged: a resumed run's
    files repeat steps) against their step; with ``by_run``, one line per folder of event files, so that several runs
    compare in one figure. Series of over 100 points (per-iteration losses) are drawn as a running mean over 2% of
    their length.

    Returns:
        tag -> ``(steps, values)`` as plotted (of the first run); tags with no events are left out.

    Raises:
        InputError: no event file under ``log_dir``, or none with any of ``tags``.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from misr_monai.io import InputError

    runs: dict[str, dict[str, dict[int, float]]] = {}
    for events in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        run = runs.setdefault(events.parent.relative_to(log_dir).as_posix() if by_run else ".", {})
        for tag in set(tags) & set(acc.Tags()["scalars"]):
            run.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})  # resumed runs overlap
    present = [t for t in tags if any(t in r for r in runs.values())]
    if not present:
        found = "no TensorBoard event files" if not runs else f"no scalars {', '.join(tags)} in its event files"
        raise InputError(f"{log_dir}: {found}.")
    plt = _pyplot()
    fig, axes = plt.subplots(len(present) or 1, 1, figsize=(7, 3 * max(len(present), 1)), squeeze=False)
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for ax, tag in zip(axes[:, 0], present):
        for name, run in runs.items():
            if tag in run:
                steps = sorted(run[tag])
                values = [run[tag][k] for k in steps]
                curves.setdefault(tag, (steps, values))
                if len(values) > 100:  # per-iteration losses: a running mean over 2% of the run
                    width = len(values) // 50
                    values = list(np.convolve(values, np.ones(width) / width, mode="same"))
                label = None if len(runs) == 1 else (name if name != "." else Path(log_dir).name)
                ax.plot(steps, values, marker="o" if len(steps) < 50 else None, label=label, linewidth=1)
        ax.set_xlabel("epoch" if tag.startswith("val") else "iteration")
        ax.set_ylabel(tag)
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend(fontsize=8)
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


def gain_figure(rows: list[dict], reference: str, path: str | os.PathLike, metric: str = "psnr") -> None:
    """One point per volume and method: its ``metric`` minus ``reference``'s on the same volume, coloured by dataset."""
    ref = {(r["dataset"], r["volume"]): r[metric] for r in rows if r["method"] == reference}
    methods = list(dict.fromkeys(r["method"] for r in rows if r["method"] != reference))
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 * len(methods) + 2.5, 4))
    rng = np.random.default_rng(0)
    for colour, dataset in enumerate(datasets):
        for x, method in enumerate(methods):
            gains = [r[metric] - ref[r["dataset"], r["volume"]] for r in rows if r["dataset"] == dataset and r["method"] == method]
            jitter = rng.uniform(-0.15, 0.15, len(gains))
            ax.scatter(x + jitter, gains, color=f"C{colour}", s=22, label=dataset if x == 0 else None)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel(f"{metric} - {reference} ({'dB' if metric.startswith('psnr') else 'difference'})")
    ax.set_title(f"per-volume {metric} against {reference}")
    ax.legend(fontsize=8, loc="best")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def slice_profile_figure(rows: list[dict], reference: str, path: str | os.PathLike, title: str) -> None:
    """Where each method wins, along the slice axis of one volume: its per-slice PSNR minus ``reference``'s, against
    the slice index, the middle third (``psnr_core``'s slices) shaded. ``rows`` are one volume's rows of every method,
    with the ``slice_index`` / ``slice_psnr`` / ``volume_slices`` profile of
    :py:func:`~misr_monai.metrics.score_reconstruction`."""
    ref = next(r for r in rows if r["method"] == reference)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    length = ref["volume_slices"]
    ax.axvspan(length / 3, 2 * length / 3, color="0.92", label="middle third (psnr_core)")
    for colour, row in enumerate(r for r in rows if r["method"] != reference):
        gain = np.array(row["slice_psnr"]) - np.array(ref["slice_psnr"])
        ax.plot(row["slice_index"], gain, color=f"C{colour}", linewidth=1.2, label=row["method"])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlim(0, length - 1)
    ax.set_xlabel(f"reconstructed slice index (axis {ref.get('axis', '?')})")
    ax.set_ylabel(f"PSNR - {reference} (dB)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    _save(fig, path)


def calibration_figure(rows: list[dict], samples: int, path: str | os.PathLike, title: str, bins: int = 10,
                       calibration: tuple[float, float] | None = None) -> None:
    """Is a sampler's spread where its error is? Over the voxels drawn by
    :py:func:`~misr_monai.metrics.score_calibration` from each row (one per volume): the RMS error of the K-sample
    mean against the mean std, in ``bins`` equal-count bins of the std, beside the line of a calibrated sampler
    (RMS error = std x sqrt(1 + 1/K): the truth is one more draw from the distribution the K samples come from).
    One line per dataset; with ``calibration`` ``(a, b)`` a dashed one more per dataset, against the recalibrated std
    (:py:func:`~misr_monai.metrics.calibrated_std`)."""
    from misr_monai.metrics import calibrated_std

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = 0.0
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        err = np.concatenate([r["calibration_error"] for r in rows if r["dataset"] == dataset])
        std = np.concatenate([r["calibration_std"] for r in rows if r["dataset"] == dataset])
        spreads = {"raw": std} if calibration is None else {"raw": std, "calibrated": calibrated_std(std, calibration)}
        colour = None
        for kind, spread in spreads.items():
            groups = np.array_split(np.argsort(spread), bins)
            x = [float(spread[g].mean()) for g in groups]
            y = [float(np.sqrt((err[g] ** 2).mean())) for g in groups]
            line = ax.plot(x, y, marker="o" if kind == "raw" else "s", linestyle="-" if kind == "raw" else ":",
                           color=colour, label=dataset if calibration is None else f"{dataset}, {kind}")
            colour = line[0].get_color()
            top = max(top, *x, *y)
    ax.plot([0, top], [0, top * np.sqrt(1 + 1 / samples)], "k--", linewidth=1, label=f"calibrated (K = {samples})")
    if calibration is not None:  # the recalibrated std stands for the error's own spread
        ax.plot([0, top], [0, top], "k:", linewidth=1, label="RMS error = recalibrated std")
    ax.set_xlabel("std of the samples (binned)")
    ax.set_ylabel("RMS error of their mean")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    _save(fig, path)
