# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Checked NIfTI reading and atomic NIfTI writing for the command line and volume inference."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["InputError", "load_volume", "save_volume", "check_output_path", "atomic_write"]


class InputError(ValueError):
    """Bad user input; the command line prints ``str(err)`` as one line and exits with code 2."""


def load_volume(path: str | os.PathLike) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Load a 3D NIfTI volume (a 4D file with one volume is accepted) and validate it.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.

    Returns:
        ``(data, image)``: the voxels with header scaling applied, in their own dtype (integers stay integers), and the
        nibabel image whose header and affine describe them.

    Raises:
        InputError: missing, unreadable, corrupt or truncated file; not NIfTI; not 3D; NaN or Inf voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for bad files
        raise InputError(f"{path}: not a readable NIfTI file ({type(err).__name__}: {err}).") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI file (read as {type(img).__name__}); give a .nii or .nii.gz volume.")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{path}: expected a 3D volume, got shape {tuple(img.shape)}.")
    try:
        data = np.asanyarray(img.dataobj).reshape(shape)
    except Exception as err:
        raise InputError(f"{path}: corrupt or truncated voxel data ({type(err).__name__}: {err}).") from None
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise InputError(f"{path}: {bad} NaN or Inf voxels; fix or mask them before upsampling.")
    return data, img


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Reject an output that exists (without ``overwrite``) or whose folder cannot be written, before any work."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: output exists; pass --overwrite to replace it.")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{path}: output folder {folder} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: output folder {folder} is not writable.")
    return path


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path`` in one step."""
    path = Path(path)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_volume(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray, template: nib.Nifti1Image) -> None:
    """Write ``data`` atomically as NIfTI, with ``template``'s header (units, intent, qform/sform codes) and ``affine``.

    The data are stored unscaled in their own dtype, so values written are exactly the values read back.
    """
    header = template.header.copy()
    header.set_data_dtype(data.dtype)
    img = type(template)(data, affine, header)
    img.set_sform(affine, code=int(template.header["sform_code"]))
    img.set_qform(affine, code=int(template.header["qform_code"]))
    atomic_write(path, lambda tmp: nib.save(img, tmp))
