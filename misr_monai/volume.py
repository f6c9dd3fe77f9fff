# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Whole-volume through-plane upsampling by a factor from 2 to 8: one path for ``misr upsample``, ``misr evaluate`` and
the bundles.

A *slice predictor* (:py:class:`~misr_monai.predictors.base.SlicePredictor`) maps the ``m`` original slices of a
volume, stacked on axis 0 as ``(m, H, W)`` floats in the volume's own intensity units, to the ``m - 1`` slices between
them, or, if it predicts any factor, to the ``F - 1`` slices of every gap: the baselines of
:py:mod:`misr_monai.interpolation` are predictors, and :py:class:`~misr_monai.predictors.network.NetworkPredictor`
turns a network into one.

:py:func:`upsample_volume` is the numpy step under :py:class:`~misr_monai.inferers.SliceInterpolationInferer`;
:py:func:`check_upsample` and :py:func:`upsampling_items` check and list what
:py:func:`misr_monai.engines.volumes.upsample` (the one call for a volume on disk) reads and writes.
"""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path

import numpy as np

from misr_monai.predictors.base import SlicePredictor, any_factor, is_sampling
from misr_monai.io import NIFTI_SUFFIXES, InputError, check_not_input, check_output_path, std_path

__all__ = ["upsample_volume", "upsample_array", "check_factor", "check_model_factor", "factor_for_spacing",
           "slice_profile", "MAX_FACTOR", "upsampled_affine", "check_slice_axis",
           "cast_like", "describe", "source_kind", "check_upsample", "nifti_files", "DEFAULT_PROFILE",
           "loaded_predictor", "upsampling_items"]


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """float32 where it holds every value of ``dtype`` exactly (int8/16, uint8/16, float16/32), else float64."""
    return np.result_type(dtype, np.float32)


def upsample_array(volume: np.ndarray, axis: int, predict: SlicePredictor, std: bool = False, factor: int = 2,
                   profile: float | None = None):
    """Insert ``factor - 1`` predicted slices between each pair of neighbouring slices along ``axis``: n slices become
    ``(n - 1) factor + 1``, in one pass of ``predict`` (a factor other than 2 needs a predictor of any factor,
    :py:func:`~misr_monai.predictors.base.any_factor`; ``profile``, the slice profile's width, goes to it).

    The original slices are kept exactly (at multiples of ``factor``); the new slices are clipped to the input's value
    range (a network's overshoot at an edge cannot create values the scan does not have, negative ones in a magnitude
    image in particular; the same rule for float input). The result is float32, or float64 where float32 cannot hold
    the input's values exactly. With ``std=True``, ``predict`` must have ``predict_with_std`` (a sampling model, x2):
    the result is ``(upsampled, std)``, the second volume on the same grid, zero at the original slices.
    """
    n = volume.shape[axis]
    if n < 2:
        raise ValueError(f"upsampling needs at least 2 slices along axis {axis}, got {n}.")
    moved = np.moveaxis(volume, axis, 0)
    out = np.empty(((n - 1) * factor + 1, *moved.shape[1:]), dtype=_work_dtype(volume.dtype))
    out[0::factor] = moved
    slices = out[0::factor]  # a view: the work copy of the input is the output's acquired slices
    new = np.delete(np.arange(out.shape[0]), np.arange(0, out.shape[0], factor))
    spread = np.zeros_like(out) if std else None
    if std:
        out[1::2], spread[1::2] = predict.predict_with_std(slices)
    elif any_factor(predict):
        out[new] = predict(slices, factor=factor, profile=profile)
    else:
        out[new] = predict(slices)
    out[new] = np.clip(out[new], slices.min(), slices.max())
    return np.moveaxis(out, 0, axis) if not std else (np.moveaxis(out, 0, axis), np.moveaxis(spread, 0, axis))


MAX_FACTOR = 8
"""The largest ``--factor``."""


def check_factor(factor: int) -> int:
    """``factor`` if it is an integer from 2 to :py:data:`MAX_FACTOR`.

    Raises:
        InputError: any other value.
    """
    if int(factor) != factor or not 2 <= factor <= MAX_FACTOR:
        raise InputError(f"--factor must be an integer from 2 to {MAX_FACTOR}, got {factor}.")
    return int(factor)


def check_model_factor(predict: SlicePredictor, factor: int, model: str = "") -> int:
    """``factor`` if ``predict`` can give it: any factor for a predictor told the position of the new slice
    (:py:func:`~misr_monai.predictors.base.any_factor`), powers of two (x2 passes) for the others.

    Raises:
        InputError: a factor the model cannot give, in one line.
    """
    if not any_factor(predict) and factor & (factor - 1):
        name = f"{model}: " if model else ""
        raise InputError(f"{name}this model predicts the midpoint of a gap only, so --factor must be 2, 4 or 8 (x2 "
                         f"passes), got {factor}; context_cnn, context_cnn_brain and cubic take any factor.")
    return factor


def upsample_volume(volume: np.ndarray, axis: int, predict: SlicePredictor, factor: int = 2,
                    profile: float | None = None) -> np.ndarray:
    """The slice spacing along ``axis`` divided by ``factor``: one :py:func:`upsample_array` pass for a predictor of any
    factor, else x2 passes ``log2(factor)`` times (:py:func:`check_model_factor`)."""
    check_model_factor(predict, check_factor(factor))
    if any_factor(predict):
        return upsample_array(volume, axis, predict, factor=factor, profile=profile)
    for _ in range(int(math.log2(factor))):
        volume = upsample_array(volume, axis, predict)
    return volume


def factor_for_spacing(spacing: float, target: float) -> int:
    """The integer factor from 2 to :py:data:`MAX_FACTOR` that brings a slice ``spacing`` nearest ``target`` (mm).

    Example::

        >>> factor_for_spacing(3.6, 0.6), factor_for_spacing(3.0, 1.0), factor_for_spacing(1.5, 1.0)
        (6, 3, 2)
    """
    if not target > 0:
        raise InputError(f"--spacing must be a positive number of millimetres, got {target}.")
    return int(min(range(2, MAX_FACTOR + 1), key=lambda f: (abs(spacing / f - target), f)))


def slice_profile(thickness: float | None, spacing: float) -> float | None:
    """The slice profile's width ``w``: the slice ``thickness`` over the slice ``spacing``, clipped to [0, 1] (thin
    slices with gaps to contiguous ones; overlapping slices count as contiguous); None when the thickness is unknown."""
    if thickness is None:
        return None
    if not thickness > 0:
        raise InputError(f"--slice-thickness must be a positive number of millimetres, got {thickness}.")
    return float(min(max(thickness / spacing, 0.0), 1.0))


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


def check_slice_axis(path: str | os.PathLike, shape: tuple[int, ...], axis: int, min_slices: int = 3) -> None:
    """Reject an axis that is not 0, 1 or 2, or a volume with fewer than ``min_slices`` slices along it, naming the file.

    Raises:
        InputError: the bad axis or slice count.
    """
    if axis not in (0, 1, 2):
        raise InputError(f"{path}: the slice axis (--axis) must be 0, 1 or 2, got {axis}.")
    if shape[axis] < min_slices:
        raise InputError(f"{path}: {shape[axis]} slices along axis {axis}; at least {min_slices} are needed.")


def nifti_files(folder: Path) -> list[Path]:
    """The ``.nii``/``.nii.gz`` files of ``folder``, hidden ones aside, sorted.

    Raises:
        InputError: none there.
    """
    files = sorted(p for p in folder.iterdir() if p.name.endswith(NIFTI_SUFFIXES) and not p.name.startswith("."))
    if not files:
        raise InputError(f"{folder}: no .nii or .nii.gz files.")
    return files


def source_kind(source: Path) -> str:
    """What ``source`` is: ``"nifti"`` (a file), ``"folder"`` (of NIfTI volumes) or ``"dicom"`` (one series' folder).

    Raises:
        InputError: it does not exist, or is one DICOM slice.
    """
    from misr_monai.dicom import has_dicom_marker, is_dicom_folder

    if not source.exists():
        raise InputError(f"{source}: no such file or folder.")
    if source.is_file():
        if source.suffix.lower() == ".dcm" or has_dicom_marker(source):
            raise InputError(f"{source}: one DICOM slice; give the folder of its series ({source.parent}).")
        return "nifti"
    return "dicom" if is_dicom_folder(source) else "folder"


def check_upsample(source: str | os.PathLike, destination: str | os.PathLike, axis: int | None = None,
                   factor: int = 2, overwrite: bool = False, std: bool = False, output_format: str = "dicom",
                   spacing: float | None = None, slice_thickness: float | None = None) -> str:
    """Every check of :py:func:`~misr_monai.engines.volumes.upsample`'s arguments that needs neither voxels nor the
    model; return the source's kind (:py:func:`source_kind`). ``upsample`` runs it first; a caller that loads a model
    can run it before the load.

    Raises:
        InputError: the first problem, in one line.
    """
    source, destination = Path(source), Path(destination)
    check_factor(factor)
    if spacing is not None and not spacing > 0:
        raise InputError(f"--spacing must be a positive number of millimetres, got {spacing}.")
    if slice_thickness is not None and not slice_thickness > 0:
        raise InputError(f"--slice-thickness must be a positive number of millimetres, got {slice_thickness}.")
    if axis is not None and axis not in (0, 1, 2):
        raise InputError(f"--axis must be 0, 1 or 2, got {axis}.")
    if output_format not in ("dicom", "nifti"):
        raise InputError(f"--output-format must be dicom or nifti, got {output_format!r}.")
    if std and (factor != 2 or spacing is not None):
        raise InputError("an uncertainty map (--samples K > 1) needs a sampling model (fast_ddpm) and --factor 2.")
    outputs = _nifti_outputs(destination, std)
    kind = source_kind(source)
    check_not_input(destination, source)
    if kind == "dicom" and output_format == "dicom":
        if destination.name.endswith(NIFTI_SUFFIXES):
            raise InputError(f"{destination}: a DICOM series is written to a folder; give a folder name, or "
                             "--output-format nifti for a NIfTI file.")
        if std:
            raise InputError("--samples K > 1 writes a standard deviation map as NIfTI; add --output-format nifti.")
        if destination.exists() and not overwrite:
            raise InputError(f"{destination}: output exists; pass --overwrite to replace it.")
        if not destination.parent.is_dir():
            raise InputError(f"{destination}: output folder {destination.parent} does not exist.")
    elif kind == "folder":
        if destination.is_file():
            raise InputError(f"{destination}: is a file; a folder of volumes is written to a folder.")
        if destination.resolve() == source.resolve():
            raise InputError(f"{destination}: the output folder must differ from the input folder (inputs are never "
                             "modified).")
    else:
        for path in outputs:
            check_output_path(path, overwrite, NIFTI_SUFFIXES)
    return kind


def _nifti_outputs(destination: Path, std: bool) -> tuple[Path, ...]:
    """The NIfTI files an upsampling to ``destination`` writes: it, and with ``std`` its std map."""
    return (destination, std_path(destination)) if std else (destination,)


def upsampling_items(source: str | os.PathLike, destination: str | os.PathLike, overwrite: bool = False,
                     output_format: str = "dicom", std: bool = False) -> list[dict]:
    """The scans of ``source`` and where each goes (``{"image": path, "output": path}``): a NIfTI file or a DICOM
    series to ``destination``, each NIfTI file of a folder to its own name in the folder ``destination`` (created).
    The dataset of the bundles' ``inference.json`` and of :py:func:`~misr_monai.engines.volumes.upsample`.

    Raises:
        InputError: what :py:func:`check_upsample` rejects of the paths; an empty folder.
    """
    kind = check_upsample(source, destination, overwrite=overwrite, std=std, output_format=output_format)
    source, destination = Path(source), Path(destination)
    if kind != "folder":
        return [{"image": str(source), "output": str(destination)}]
    files = nifti_files(source)
    try:
        destination.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{destination}: cannot create the output folder ({err.strerror}).") from None
    return [{"image": str(path), "output": str(destination / path.name)} for path in files]


DEFAULT_PROFILE = 1.0
"""The slice profile's width assumed for a volume whose header does not say its slice thickness (a NIfTI file
without ``--slice-thickness``): contiguous thick slices. Measured (``scripts/profile_mismatch.py``, the ``context_cnn``
README): told w = 1 on thin slices, ``context_cnn`` stays above ``cubic`` (0.2-1.1 dB below what the right w gives);
told w = 0 on thick slices it falls up to 3.1 dB below ``cubic``."""


def loaded_predictor(predict, std: bool = False) -> SlicePredictor:
    """``predict``, or the predictor it loads when it is a function of no arguments; with ``std``, a sampling one.

    Raises:
        InputError: ``std`` and not a sampling model.
    """
    try:
        required = [p for p in inspect.signature(predict).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):  # a callable without a signature: a predictor
        required = [None]
    predict = predict if required else predict()
    if std and not is_sampling(predict):
        raise InputError("an uncertainty map (--samples K > 1) needs a sampling model (fast_ddpm) and --factor 2.")
    return predict


def describe(summary: dict) -> str:
    """One line of an :py:func:`~misr_monai.engines.volumes.upsample` summary: shapes, factor, slice spacing and the
    slice profile assumed."""
    axis = summary["axis"]
    line = (f"{summary['input_shape']} -> {summary['output_shape']} along axis {axis}, x{summary['factor']}, spacing "
            f"{summary['input_spacing'][axis]:.3f} -> {summary['output_spacing'][axis]:.3f} mm")
    if summary.get("profile") is None:  # a model that is not told the slice profile
        return line
    return f"{line}; slice profile w = {summary['profile']:.2f} ({summary['profile_source']})"
