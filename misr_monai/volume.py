# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Whole-volume x2 through-plane upsampling: one path for ``misr upsample``, ``misr evaluate`` and the bundles.

A *slice predictor* (:py:data:`~misr_monai.interpolation.SlicePredictor`) maps the ``m`` original slices of a volume,
stacked on axis 0 as ``(m, H, W)`` floats in the volume's own intensity units, to the ``m - 1`` slices between them: the
baselines of :py:mod:`misr_monai.interpolation` are predictors, and :py:class:`~misr_monai.predictors.NetworkPredictor`
turns a network into one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from monai.inferers import Inferer

from misr_monai.interpolation import SlicePredictor
from misr_monai.io import NIFTI_SUFFIXES, InputError, check_not_input, check_output_path, load_volume, save_volume
from misr_monai.transforms.utils import find_slice_axis, voxel_spacing

__all__ = ["upsample_array", "SliceInterpolationInferer", "upsampled_affine", "check_slice_axis", "std_path",
           "upsample_file", "check_upsample_outputs", "upsample_image", "cast_like", "describe"]

def _work_dtype(dtype: np.dtype) -> np.dtype:
    """float32 where it holds every value of ``dtype`` exactly (int8/16, uint8/16, float16/32), else float64."""
    return np.result_type(dtype, np.float32)


def upsample_array(volume: np.ndarray, axis: int, predict: SlicePredictor, std: bool = False):
    """Insert a predicted slice between each pair of neighbouring slices along ``axis``: n slices become 2n - 1.

    The original slices are kept exactly (at even indices); the new slices are clipped to the input's value range
    (a network's overshoot at an edge cannot create values the scan does not have, negative ones in a magnitude image
    in particular; the same rule for float input). The result is float32, or float64 where float32 cannot hold the
    input's values exactly. With ``std=True``, ``predict`` must have ``predict_with_std`` (a sampling model): the
    result is ``(upsampled, std)``, the second volume on the same grid, zero at the original slices.
    """
    n = volume.shape[axis]
    if n < 2:
        raise ValueError(f"upsampling needs at least 2 slices along axis {axis}, got {n}.")
    moved = np.moveaxis(volume, axis, 0)
    out = np.empty((2 * n - 1, *moved.shape[1:]), dtype=_work_dtype(volume.dtype))
    out[0::2] = moved
    slices = out[0::2]  # a view: the work copy of the input is the output's even slices
    spread = np.zeros_like(out) if std else None
    if std:
        out[1::2], spread[1::2] = predict.predict_with_std(slices)
    else:
        out[1::2] = predict(slices)
    np.clip(out[1::2], slices.min(), slices.max(), out=out[1::2])
    return np.moveaxis(out, 0, axis) if not std else (np.moveaxis(out, 0, axis), np.moveaxis(spread, 0, axis))


class SliceInterpolationInferer(Inferer):
    """MONAI ``Inferer`` of through-plane upsampling: ``inferer(volume, network, axis)`` applies
    :py:func:`upsample_array` ``log2(factor)`` times along ``axis``, ``network`` (a slice predictor) filling each gap.

    Args:
        factor: 2, 4, 8...: the slice spacing is divided by it. Defaults to 2.

    Raises:
        InputError: ``factor`` is not a power of two.
    """

    def __init__(self, factor: int = 2) -> None:
        if factor < 2 or factor & (factor - 1):
            raise InputError(f"--factor must be a power of two (2, 4, 8...), got {factor}.")
        self.factor = factor

    def __call__(self, inputs: np.ndarray, network: SlicePredictor, axis: int) -> np.ndarray:  # type: ignore[override]
        result = inputs
        for _ in range(int(math.log2(self.factor))):
            result = upsample_array(result, axis, network)
        return result


def upsampled_affine(affine: np.ndarray, axis: int, factor: int = 2) -> np.ndarray:
    """The affine of a volume upsampled ``factor`` times along ``axis``: that column divided, the origin unchanged."""
    affine = np.array(affine, dtype=np.float64)
    affine[:3, axis] /= factor
    return affine


def cast_like(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast back to the input's dtype: integers are rounded and clipped to the dtype's range (in ``data``'s memory)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        high = data.dtype.type(info.max)
        if int(high) > info.max:  # int64's max rounds up to 2**63 in float64, which would overflow
            high = np.nextafter(high, 0)
        np.clip(np.rint(data, out=data), info.min, high, out=data)  # in place: no full-size copies
    return data.astype(dtype, copy=False)


def check_slice_axis(path: str | os.PathLike, shape: tuple[int, ...], axis: int) -> None:
    """Reject an axis that is not 0, 1 or 2, or a volume with fewer than 3 slices along it, naming the file.

    Raises:
        InputError: the bad axis or slice count.
    """
    if axis not in (0, 1, 2):
        raise InputError(f"{path}: the slice axis (--axis) must be 0, 1 or 2, got {axis}.")
    if shape[axis] < 3:
        raise InputError(f"{path}: {shape[axis]} slices along axis {axis}; at least 3 are needed.")


def std_path(output_path: str | os.PathLike) -> Path:
    """Where the uncertainty map of ``output_path`` goes: ``OUT_std.nii.gz`` beside ``OUT.nii.gz``."""
    output_path = Path(output_path)
    name, suffix = (output_path.name[:-7], ".nii.gz") if output_path.name.endswith(".nii.gz") else (output_path.stem, output_path.suffix)
    return output_path.with_name(f"{name}_std{suffix}")


def upsample_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    predict: SlicePredictor,
    axis: int | None = None,
    factor: int = 2,
    overwrite: bool = False,
    std: bool = False,
) -> dict:
    """Upsample a NIfTI volume through-plane by ``factor`` (2, 4, 8...: x2 applied repeatedly) and write it atomically.

    The output keeps the input's dtype, header, units and qform/sform codes; its slice-axis affine column is divided
    by ``factor`` and its origin is unchanged, so every original slice keeps its world position. The input file is
    only read.

    Args:
        input_path: a 3D NIfTI file (a 4D file with one volume is accepted).
        output_path: the NIfTI file to write.
        predict: a slice predictor (see the module docstring).
        axis: the slice axis, or None to detect it from the affine. Defaults to None.
        factor: a power of two. Defaults to 2.
        overwrite: replace an existing output. Defaults to False.
        std: also write the per-voxel standard deviation of a sampling model's samples (``predict`` has
            ``predict_with_std``) as float32 NIfTI on the output's grid, at :py:func:`std_path`. Needs ``factor`` 2.
            Defaults to False.

    Returns:
        a summary: the axis, the input and output shapes and spacings (and ``std_output``), and ``original`` and
        ``upsampled``, each ``(voxels, affine)``.

    Raises:
        InputError: bad input file, axis, factor or output path (nothing is written).
    """
    check_not_input(output_path, input_path)
    check_upsample_outputs(output_path, predict, factor, overwrite, std)
    data, img = load_volume(input_path)
    return upsample_image(data, img, input_path, output_path, predict, axis, factor, overwrite, std)


def check_upsample_outputs(output_path: str | os.PathLike, predict: SlicePredictor, factor: int = 2,
                           overwrite: bool = False, std: bool = False) -> None:
    """The checks of :py:func:`upsample_file` on its outputs, factor and model, before any work.

    Raises:
        InputError: the first problem, in one line.
    """
    SliceInterpolationInferer(factor)
    if std and (factor != 2 or not hasattr(predict, "predict_with_std")):
        raise InputError("an uncertainty map (--samples K > 1) needs a sampling model (fast_ddpm) and --factor 2.")
    check_output_path(output_path, overwrite, NIFTI_SUFFIXES)
    if std:
        check_output_path(std_path(output_path), overwrite, NIFTI_SUFFIXES)


def upsample_image(data: np.ndarray, img, source: str | os.PathLike, output_path: str | os.PathLike,
                   predict: SlicePredictor, axis: int | None = None, factor: int = 2, overwrite: bool = False,
                   std: bool = False) -> dict:
    """:py:func:`upsample_file` of voxels already read: ``data`` with the nibabel image ``img`` whose header and
    affine describe it, read from ``source`` (named in errors)."""
    inferer = SliceInterpolationInferer(factor)
    axis = find_slice_axis(img.affine) if axis is None else axis
    check_slice_axis(source, data.shape, axis)
    affine = upsampled_affine(img.affine, axis, factor)
    summary = {}
    if std:
        result, spread = upsample_array(data, axis, predict, std=True)
        spread = predict.calibrated_std(spread, data)
        np.moveaxis(spread, axis, 0)[::2] = 0  # the acquired slices are certain
        save_volume(std_path(output_path), spread.astype(np.float32), affine, img, overwrite)
        summary["std_output"] = str(std_path(output_path))
    else:
        result = inferer(data, predict, axis)
    result = cast_like(result, data.dtype)
    if np.issubdtype(data.dtype, np.integer) and data.dtype.itemsize == 8:  # float64 cannot hold every (u)int64
        np.moveaxis(result, axis, 0)[::factor] = np.moveaxis(data, axis, 0)
    save_volume(output_path, result, affine, img, overwrite)
    return {
        **summary,
        "axis": axis,
        "input_shape": tuple(data.shape),
        "output_shape": tuple(result.shape),
        "input_spacing": tuple(voxel_spacing(img.affine).tolist()),
        "output_spacing": tuple(voxel_spacing(affine).tolist()),
        "original": (data, img.affine),
        "upsampled": (result, affine),
    }


def describe(summary: dict) -> str:
    """One line of an :py:func:`upsample_file` summary: shapes and slice spacing."""
    axis = summary["axis"]
    return (f"{summary['input_shape']} -> {summary['output_shape']} along axis {axis}, spacing "
            f"{summary['input_spacing'][axis]:.3f} -> {summary['output_spacing'][axis]:.3f} mm")
