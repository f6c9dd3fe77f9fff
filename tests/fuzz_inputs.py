"""Good and bad NIfTI inputs, one file per case, for the bad-input tests (``write_cases``)."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.conftest import smooth_volume, write_nifti

AFFINE = np.diag([1.0, 1.0, 3.0, 1.0])
SHAPE = (16, 14, 5)


def _int_extremes(dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    data = (smooth_volume(SHAPE, dtype=np.float64) / 1000 * min(info.max, 2**52)).astype(dtype)
    data[0, 0, :] = info.min
    data[-1, -1, :] = info.max
    return data


def _valid_bytes(folder: Path) -> bytes:
    path = write_nifti(folder / ".valid.nii.gz", smooth_volume(SHAPE), AFFINE)
    data = path.read_bytes()
    path.unlink()
    return data


def _with_sform(path: Path, sform: np.ndarray) -> None:
    """Rewrite the header of an uncompressed ``.nii`` with a (broken) sform that nibabel refuses to write itself."""
    data = bytearray(path.read_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(data[:348])))
    header["srow_x"], header["srow_y"], header["srow_z"] = sform[:3]
    header["sform_code"], header["qform_code"] = 1, 0
    data[:348] = header.binaryblock
    path.write_bytes(bytes(data))


def _huge_header(path: Path) -> None:
    """A header declaring 30000^3 float32 voxels (108 TB) over a file of a few bytes."""
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.float32)
    header.set_qform(AFFINE, code=1)
    header.set_sform(AFFINE, code=1)
    header["vox_offset"] = 352
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 64)


def write_cases(folder: Path) -> dict[str, str]:
    """Write every case into ``folder``; return ``{file name: "ok" or the words its one-line error must contain}``."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, str] = {}

    def volume(name, data, affine=AFFINE, expect="ok"):
        write_nifti(folder / name, data, affine)
        cases[name] = expect

    volume("ok_float32.nii.gz", smooth_volume(SHAPE))
    volume("ok_float64.nii", smooth_volume(SHAPE, dtype=np.float64))
    volume("ok_zeros.nii.gz", np.zeros(SHAPE, np.float32))
    for dtype in (np.uint8, np.int16, np.uint16, np.int32, np.int64):
        volume(f"ok_{np.dtype(dtype).name}_extremes.nii.gz", _int_extremes(dtype))
    volume("ok_negative_spacing.nii.gz", smooth_volume(SHAPE), np.diag([-1.0, 1.0, -3.0, 1.0]))
    sheared = AFFINE.copy()
    sheared[0, 2] = 1.5  # slices shifted sideways: non-orthogonal, still a valid grid
    volume("ok_sheared_affine.nii.gz", smooth_volume(SHAPE), sheared)
    oblique = AFFINE.copy()
    oblique[:3, :3] = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]]) @ AFFINE[:3, :3]
    volume("ok_oblique_affine.nii.gz", smooth_volume(SHAPE), oblique)
    volume("ok_4d_one_volume.nii.gz", smooth_volume(SHAPE)[..., None])
    volume("ok_three_slices.nii.gz", smooth_volume((16, 14, 3)))

    volume("bad_2d.nii.gz", smooth_volume((16, 14, 1))[..., 0], expect="expected a 3D volume")
    volume("bad_4d.nii.gz", np.stack([smooth_volume(SHAPE)] * 3, axis=-1), expect="expected a 3D volume")
    volume("bad_one_slice.nii.gz", smooth_volume((16, 14, 1)), expect="1 slices along axis 2")
    volume("bad_two_slices.nii.gz", smooth_volume((16, 14, 2)), expect="2 slices along axis 2")
    nan = smooth_volume(SHAPE)
    nan[3, 3, 2] = np.nan
    volume("bad_nan.nii.gz", nan, expect="NaN or Inf voxels")
    inf = smooth_volume(SHAPE)
    inf[3, 3, 2] = -np.inf
    volume("bad_inf.nii.gz", inf, expect="NaN or Inf voxels")
    for name, sform, expect in (
        ("bad_zero_spacing.nii", np.diag([1.0, 0.0, 3.0, 1.0]), "zero voxel spacing"),
        ("bad_singular_affine.nii", np.array([[1.0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]]), "singular"),
        ("bad_nan_affine.nii", np.diag([1.0, np.nan, 3.0, 1.0]), "NaN or Inf entries"),
    ):
        _with_sform(write_nifti(folder / name, smooth_volume(SHAPE), AFFINE), sform)
        cases[name] = expect

    valid = _valid_bytes(folder)
    for name, data, expect in (
        ("bad_empty.nii.gz", b"", "not a readable NIfTI file"),
        ("bad_truncated.nii.gz", valid[: len(valid) // 2], "truncated"),
        ("bad_corrupt.nii.gz", valid[:200] + bytes(255 - b for b in valid[200:400]) + valid[400:], "corrupt"),
        ("bad_not_nifti.nii", os.urandom(2000), "not a readable NIfTI file"),
        ("bad_gzip_of_text.nii.gz", gzip.compress(b"hello, world\n" * 100), "not a readable NIfTI file"),
    ):
        (folder / name).write_bytes(data)
        cases[name] = expect
    _huge_header(folder / "bad_huge_header.nii")
    cases["bad_huge_header.nii"] = "GiB; this machine has"
    (folder / "bad_missing.nii.gz").symlink_to(folder / "nowhere.nii.gz")  # a dangling link: listed, not there
    cases["bad_missing.nii.gz"] = "no such file"
    return cases
