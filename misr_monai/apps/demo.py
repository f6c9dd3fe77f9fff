# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""``misr demo``: the embedded demo volume decimated xF, reconstructed by a model and by cubic, beside the truth."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from misr_monai.apps.figures import demo_figure
from misr_monai.interpolation import cubic_interpolate
from misr_monai.io import load_volume, make_output_folder, save_volume
from misr_monai.transforms.utils import find_slice_axis, voxel_spacing
from misr_monai.engines.volumes import upsample
from misr_monai.volume import check_factor, check_model_factor, upsample_volume

__all__ = ["DEMO_VOLUME", "run_demo"]

DEMO_VOLUME = Path(__file__).resolve().parents[1] / "data" / "sub-53_T1w.nii.gz"
"""The small demo volume that ships in the package (ds002748 sub-53, T1w)."""


def run_demo(predict, model: str, out: str | os.PathLike, factor: int = 2) -> dict:
    """Keep every ``factor``-th slice of :py:data:`DEMO_VOLUME` (written as ``*_decimated.nii.gz``), upsample it with
    ``predict`` through :py:func:`~misr_monai.engines.volumes.upsample` (``*_xF_MODEL.nii.gz``) and draw it beside
    cubic and the truth (``*_xF.png``).

    Returns:
        the upsampling's summary, with ``result`` and ``figure`` (paths) and ``psnr`` (method -> PSNR of the new
        slices).
    """
    factor = check_factor(factor)
    check_model_factor(predict, factor, model)
    out = make_output_folder(out)
    truth, img = load_volume(DEMO_VOLUME)
    axis = find_slice_axis(img.affine)
    stem = DEMO_VOLUME.name.split(".nii")[0]
    decimated = np.take(truth, np.arange(0, truth.shape[axis], factor), axis=axis)
    coarse = np.array(img.affine, dtype=np.float64)
    coarse[:3, axis] *= factor  # every F-th slice: F times the spacing, the first slice where it was
    save_volume(out / f"{stem}_decimated.nii.gz", decimated, coarse, img)
    result = out / f"{stem}_x{factor}_{Path(model).name}.nii.gz"
    thickness = float(voxel_spacing(img.affine)[axis])  # thin slices: each as thick as the original spacing
    info = upsample(out / f"{stem}_decimated.nii.gz", result, predict, axis, factor, overwrite=True,
                    slice_thickness=thickness)[0]
    crop = np.take(truth, np.arange(info["output_shape"][axis]), axis=axis)
    reconstructions = {"cubic": upsample_volume(decimated, axis, cubic_interpolate, factor),
                       model: info["upsampled"][0]}
    figure = out / f"{stem}_x{factor}.png"
    psnr = demo_figure(crop, reconstructions, axis, img.affine, figure,
                       f"{DEMO_VOLUME.name}: x{factor} through-plane, {model} against cubic "
                       f"(every slice {factor} kept, the others reconstructed)", factor)
    return {**info, "result": result, "figure": figure, "psnr": psnr}
