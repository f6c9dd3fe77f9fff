# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""DICOM series in and out: a folder of one series' slice files read with MONAI's ``PydicomReader``, checked first
(one line per problem, naming the file), and an upsampled volume written back as a new, derived series with pydicom.

The voxels and the affine come from MONAI (``LoadImage(reader=PydicomReader())``, RAS world coordinates, as NIfTI), so
the DICOM and the NIfTI path of one scan give the same voxels at the same world positions. pydicom reads the headers
that the checks need and writes the output: each new file is a copy of an original slice's dataset (patient, study,
frame of reference and acquisition tags kept), with new Series and SOP Instance UIDs, ``ImageType`` DERIVED\\SECONDARY,
its own ``ImagePositionPatient`` along the slice normal, halved ``SpacingBetweenSlices`` (``SliceThickness`` kept), and
renumbered instances. highdicom is not needed for this: it writes new objects (segmentations, parametric maps), not a
plain MR image series that keeps the source's own attributes.
"""

from __future__ import annotations

import copy
import os
from collections import Counter
import shutil
import tempfile
from pathlib import Path

import numpy as np

from misr_monai.io import InputError, print_line

__all__ = ["DicomSeries", "has_dicom_marker", "is_dicom_folder", "read_series", "to_frame", "write_series",
           "SERIES_NUMBER_OFFSET"]

SERIES_NUMBER_OFFSET = 1000
"""A derived series' ``SeriesNumber`` is its source's plus this: it sorts next to its source and above the numbers a
scanner gives its own series in one study."""

_GAP_TOLERANCE = 0.1
"""Largest relative deviation of one slice gap from the median gap that still counts as even spacing."""


def _dcmread(path: Path, **kwargs):
    import pydicom

    try:
        return pydicom.dcmread(str(path), **kwargs)
    except Exception as err:  # pydicom raises many types for bad files
        raise InputError(f"{path}: not a readable DICOM file ({type(err).__name__}: {err}).") from None


def has_dicom_marker(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a DICOM file by its preamble: ``DICM`` at byte 128."""
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def is_dicom_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds DICOM files (the ``DICM`` marker at byte 128, or a ``.dcm`` name) and no NIfTI."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")]
    if not files or any(p.name.endswith((".nii", ".nii.gz")) for p in files):
        return False
    return any(p.suffix.lower() == ".dcm" or has_dicom_marker(p) for p in files)


class DicomSeries:
    """One checked series: its files' datasets sorted along the slice normal, and MONAI's volume of it.

    Attributes:
        folder: the series folder.
        datasets: pydicom datasets (with pixel data) sorted by position along the normal, ascending.
        normal: the slice normal in DICOM patient coordinates (LPS), row x column direction.
        positions: each dataset's position along ``normal`` (mm).
        volume: the voxels as MONAI reads them (rescale slope/intercept applied; the stored dtype where they are
            exact in it), laid out (row, column, slice along the normal), as a stack of the slices' pixel arrays.
        affine: RAS affine of ``volume``.
    """

    def __init__(self, folder: Path, datasets: list, normal: np.ndarray, positions: np.ndarray, volume: np.ndarray,
                 affine: np.ndarray) -> None:
        self.folder, self.datasets, self.normal, self.positions = folder, datasets, normal, positions
        self.volume, self.affine = volume, affine

    @property
    def spacing(self) -> float:
        """The slice spacing along the normal (mm)."""
        return float(np.median(np.diff(self.positions)))

    @property
    def slice_thickness(self) -> float | None:
        """The acquired ``SliceThickness`` (mm), None where the header has none."""
        value = self.datasets[0].get("SliceThickness")
        return float(value) if value not in (None, "") and float(value) > 0 else None

    def nifti(self):
        """The volume as a nibabel NIfTI image in scanner coordinates (sform and qform code 1, mm), as a NIfTI
        conversion of the series stores it."""
        import nibabel as nib

        img = nib.Nifti1Image(self.volume, self.affine)
        img.header.set_xyzt_units("mm")
        img.set_sform(self.affine, code=1)
        img.set_qform(self.affine, code=1)
        return img


def read_series(folder: str | os.PathLike) -> DicomSeries:
    """Read and check a folder holding one DICOM series of parallel, evenly spaced slices.

    Files that are not DICOM (no ``DICM`` preamble and no ``.dcm`` name: manifests, text and image files of a PACS or CD
    export) and DICOM files without an image (``DICOMDIR``, reports) are skipped, one line each; hidden files are not
    read.

    Raises:
        InputError: one line naming the folder or file: an unreadable or truncated file, a slice without pixel data or
            position, more than one series, slices that are not parallel or not all the same size, fewer than 3 slices, or an uneven
            slice gap (a missing slice).
    """
    import warnings

    from monai.data import PydicomReader
    from monai.transforms import LoadImage

    folder = Path(folder)
    files, datasets = [], []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.suffix.lower() != ".dcm" and not has_dicom_marker(path):
            print_line(f"{path}: not a DICOM file; skipped")  # a manifest, a text or image file of an export
            continue
        ds = _dcmread(path)
        if "PixelData" not in ds and "ImagePositionPatient" not in ds:  # DICOMDIR, reports, presentation states
            kind = getattr(ds, "SOPClassUID", None) or ds.file_meta.get("MediaStorageSOPClassUID")
            print_line(f"{path}: a DICOM file without an image ({getattr(kind, 'name', kind)}); skipped")
            continue
        files.append(path)
        datasets.append(ds)
    for path, ds in zip(files, datasets):
        if "PixelData" not in ds or "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            kind = getattr(ds, "SOPClassUID", None)
            raise InputError(f"{path}: not an image slice (no pixel data or no position; SOP class "
                             f"{getattr(kind, 'name', kind)}); give a folder of one image series.")
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated) // 8
        if not ds.file_meta.TransferSyntaxUID.is_compressed and len(ds.PixelData) < expected:
            raise InputError(f"{path}: truncated file ({len(ds.PixelData)} of {expected} bytes of pixel data).")
    series = sorted({str(ds.SeriesInstanceUID) for ds in datasets})
    if len(series) > 1:
        counts = Counter(str(d.SeriesInstanceUID) for d in datasets)
        descriptions = {str(d.SeriesInstanceUID): str(d.get("SeriesDescription", "")) for d in datasets}
        names = ", ".join(f"{counts[s]} files of {descriptions[s] or s}" for s in series)
        raise InputError(f"{folder}: {len(series)} series in one folder ({names}); give a folder of one series.")
    if len(datasets) < 3:
        raise InputError(f"{folder}: {len(datasets)} image slices; at least 3 are needed.")
    orientation = np.array([[float(v) for v in ds.ImageOrientationPatient] for ds in datasets])
    if np.abs(orientation - orientation[0]).max() > 1e-4 or len({(ds.Rows, ds.Columns) for ds in datasets}) > 1:
        raise InputError(f"{folder}: the slices are not all parallel and the same size; not one volume.")
    normal = np.cross(orientation[0, :3], orientation[0, 3:])
    positions = np.array([float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])) for ds in datasets])
    order = np.argsort(positions)
    datasets, files, positions = [datasets[i] for i in order], [files[i] for i in order], positions[order]
    gaps = np.diff(positions)
    median = float(np.median(gaps))
    uneven = np.flatnonzero(np.abs(gaps - median) > _GAP_TOLERANCE * median)
    if median <= 0 or uneven.size:
        i = int(uneven[0]) if uneven.size else int(np.argmin(gaps))
        raise InputError(f"{folder}: slice gap of {gaps[i]:.2f} mm between {files[i].name} and {files[i + 1].name}, "
                         f"where the others are {median:.2f} mm: a slice is missing or doubled; give a complete series.")
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as slices:
        warnings.simplefilter("ignore")
        for path in files:  # MONAI reads a folder whole: give it the series' slices alone
            os.symlink(path.resolve(), Path(slices) / path.name)
        image = LoadImage(reader=PydicomReader(), image_only=True, dtype=None)(slices)
    volume = image.numpy()
    stored = datasets[0].pixel_array.dtype
    if np.array_equal(volume, volume.astype(stored)):
        volume = volume.astype(stored)
    # the slices' own layout, so that a network sees the slices as a plain NIfTI conversion stores them
    affine = _frame_affine(datasets[0], normal, median)
    volume = np.ascontiguousarray(to_frame(volume, image.affine.numpy().astype(np.float64), affine))
    return DicomSeries(folder, datasets, normal, positions, volume, affine)


def _lps_to_ras(points: np.ndarray) -> np.ndarray:
    return points * np.array([-1.0, -1.0, 1.0])


def _frame_affine(first, normal: np.ndarray, spacing: float) -> np.ndarray:
    """The RAS affine of a series' own pixel frame, (row, column, slice along ``normal``), from its ``first`` slice's
    dataset and the slice ``spacing``: the layout of a plain stack of the slices' pixel arrays."""
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    affine = np.eye(4)
    affine[:3, 0] = _lps_to_ras(iop[3:] * row_spacing)  # down a column: the next row
    affine[:3, 1] = _lps_to_ras(iop[:3] * column_spacing)  # along a row: the next column
    affine[:3, 2] = _lps_to_ras(normal * spacing)
    affine[:3, 3] = _lps_to_ras(np.array([float(v) for v in first.ImagePositionPatient]))
    return affine


def to_frame(volume: np.ndarray, affine: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``volume`` (with ``affine``) re-indexed onto the grid of ``target``, which must differ from ``affine`` only by a
    permutation and flips of the axes (as MONAI's reader and the DICOM pixel frame do).

    Raises:
        InputError: the two grids are not the same voxels.
    """
    index = np.linalg.inv(affine) @ target  # target index -> volume index
    permutation = np.rint(index[:3, :3])
    if np.abs(index[:3, :3] - permutation).max() > 1e-3 or sorted(np.abs(permutation).sum(0)) != [1, 1, 1]:
        raise InputError("the DICOM reader's grid is not the series' pixel grid; cannot write the series.")
    axes = [int(np.flatnonzero(permutation[:, j])[0]) for j in range(3)]
    out = np.transpose(volume, axes)
    for j in range(3):
        if permutation[axes[j], j] < 0:
            out = np.flip(out, j)
    return out


def write_series(series: DicomSeries, volume: np.ndarray, affine: np.ndarray, out_dir: str | os.PathLike,
                 factor: int, overwrite: bool = False, description: str = "", model: str = "") -> Path:
    """Write ``volume`` (``series.volume`` upsampled ``factor`` times along the slice normal, with ``affine``) as a new
    derived DICOM series in ``out_dir``, one file per slice (``IM_0001.dcm``...), published all at once (a
    temporary folder renamed, then given the permissions of the user's umask, as any new folder).

    The original slices keep their exact pixel values; new slices are stored in the originals' pixel type after
    inverting their rescale slope and intercept. Instance numbers run in the originals' direction. So that a viewer or
    PACS lists it apart from its source: ``SeriesNumber`` is the source's plus :py:data:`SERIES_NUMBER_OFFSET` (1000 when
    the source has none) and ``SeriesDescription`` names the source's description, the factor and ``model`` (64
    characters at most, the VR's limit). ``SliceThickness`` stays the acquired thickness (each slice still has the
    acquired slice profile); ``SpacingBetweenSlices`` is the new spacing.

    Raises:
        InputError: ``out_dir`` exists (without ``overwrite``) or its parent folder does not.
    """
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    out_dir = Path(out_dir)
    frame = to_frame(volume, affine, _frame_affine(series.datasets[0], series.normal, series.spacing / factor))
    n = frame.shape[2]
    series_uid = generate_uid()
    ascending = int(series.datasets[-1].InstanceNumber or 0) >= int(series.datasets[0].InstanceNumber or 0)
    first = np.array([float(v) for v in series.datasets[0].ImagePositionPatient])
    spacing = series.spacing / factor
    source = series.datasets[0]
    number = SERIES_NUMBER_OFFSET + (int(source.SeriesNumber) if source.get("SeriesNumber") not in (None, "") else 0)
    series_description = " ".join(
        p for p in (str(source.get("SeriesDescription", "")).strip(), f"x{factor}", model) if p)[:64]
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{os.getpid()}.", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    try:
        for k in range(n):
            template = series.datasets[k // factor]
            ds = copy.deepcopy(template)
            if k % factor == 0:
                pixels = template.pixel_array
            else:
                slope, intercept = float(template.get("RescaleSlope", 1)), float(template.get("RescaleIntercept", 0))
                stored = np.rint((frame[:, :, k] - intercept) / slope)
                info = np.iinfo(template.pixel_array.dtype)
                pixels = np.clip(stored, info.min, info.max).astype(template.pixel_array.dtype)
            ds.PixelData = np.ascontiguousarray(pixels).tobytes()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.SeriesInstanceUID = series_uid
            ds.ImageType = ["DERIVED", "SECONDARY", *list(template.get("ImageType", []))[2:]]
            ds.ImagePositionPatient = [float(f"{v:.6f}") for v in first + series.normal * spacing * k]
            ds.SpacingBetweenSlices = float(f"{spacing:.6f}")
            ds.SeriesNumber = number
            ds.SeriesDescription = series_description
            if "SliceLocation" in template:
                step = (float(series.datasets[-1].SliceLocation) - float(series.datasets[0].SliceLocation)) / (n - 1)
                ds.SliceLocation = float(f"{float(series.datasets[0].SliceLocation) + step * k:.6f}")
            ds.InstanceNumber = k + 1 if ascending else n - k
            if description:
                ds.DerivationDescription = description
            ds.save_as(tmp / f"IM_{ds.InstanceNumber:04d}.dcm", enforce_file_format=True)
        if out_dir.exists():
            if not overwrite:
                raise InputError(f"{out_dir}: output exists; pass --overwrite to replace it.")
            shutil.rmtree(out_dir)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private (0700); the series is an ordinary folder
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
