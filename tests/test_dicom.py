"""DICOM in and out on the shared real series: the same voxels and world positions as the NIfTI path, a new derived
series that other readers (pydicom without MONAI, SimpleITK) read back with halved spacing and the original slices exact,
and one line for each bad series."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import ROOT, SHARED_MRI

DICOM = ROOT.parent / "shared" / "data" / "dicom"
T2 = DICOM / "ProstateX-0000_T2_tra"
NIFTI = SHARED_MRI / "prostatex" / "ProstateX-0000_T2_tra.nii.gz"
pytestmark = pytest.mark.skipif(not T2.is_dir() or not NIFTI.is_file(), reason="../shared/data/dicom is absent")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "misr_monai", "upsample", *args, "--precision", "fp32"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def _assert_same_world_voxels(volume: np.ndarray, affine: np.ndarray, reference: np.ndarray, ref_affine: np.ndarray):
    """Every voxel of ``reference`` has a voxel of ``volume`` at the same world position (rotation and origin of both
    affines), with the same value: the grids differ only by axis order, flips and the corner they start from."""
    index = np.linalg.inv(affine) @ ref_affine  # reference voxel index -> volume voxel index
    np.testing.assert_allclose(index, np.rint(index), atol=1e-3)  # voxel centres on voxel centres
    index = np.rint(index).astype(int)
    grid = np.indices(reference.shape).reshape(3, -1)
    mapped = index[:3, :3] @ grid + index[:3, 3:]
    assert (mapped >= 0).all() and (mapped < np.array(volume.shape)[:, None]).all(), "the grids cover other places"
    np.testing.assert_array_equal(volume[tuple(mapped)].reshape(reference.shape), reference)


def _read_back(folder):
    """The series in ``folder`` as pydicom alone reads it: datasets sorted along the slice normal, and positions."""
    import pydicom

    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    position = np.array([np.dot(normal, [float(v) for v in d.ImagePositionPatient]) for d in datasets])
    order = np.argsort(position)
    return [datasets[i] for i in order], position[order], iop


def test_dicom_reader_matches_the_nifti_conversion():
    from misr_monai.dicom import read_series

    series = read_series(T2)
    nifti = nib.load(NIFTI)
    assert series.volume.dtype == np.uint16 and series.volume.shape == (384, 384, 19)
    # the same voxels at the same world positions: the grids differ only by axis order and flips
    _assert_same_world_voxels(series.volume, series.affine, np.asanyarray(nifti.dataobj), nifti.affine)


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dicom")
    results = {
        "dicom": _run(str(T2), str(out / "series"), "--model", "residual_cnn"),
        "dicom_to_nifti": _run(str(T2), str(out / "from_dicom.nii.gz"), "--model", "residual_cnn", "--output-format",
                               "nifti"),
        "nifti": _run(str(NIFTI), str(out / "from_nifti.nii.gz"), "--model", "residual_cnn"),
    }
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr[-2000:])
    return out


def test_written_series_read_back_by_pydicom(round_trip):
    from misr_monai.dicom import read_series

    original = read_series(T2)
    datasets, position, iop = _read_back(round_trip / "series")
    assert len(datasets) == 2 * 19 - 1
    np.testing.assert_allclose(np.diff(position), original.spacing / 2, atol=1e-4)  # halved spacing
    np.testing.assert_allclose(iop, [float(v) for v in original.datasets[0].ImageOrientationPatient])  # kept
    for i, source in enumerate(original.datasets):  # the original slices, bit for bit
        np.testing.assert_array_equal(datasets[2 * i].pixel_array, source.pixel_array)
    first, source = datasets[0], original.datasets[0]
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID", "Modality"):
        assert first.get(keyword) == source.get(keyword), keyword
    assert len({d.SeriesInstanceUID for d in datasets}) == 1 and first.SeriesInstanceUID != source.SeriesInstanceUID
    assert len({d.SOPInstanceUID for d in datasets}) == 37
    assert not {d.SOPInstanceUID for d in datasets} & {d.SOPInstanceUID for d in original.datasets}
    assert all(list(d.ImageType)[:2] == ["DERIVED", "SECONDARY"] for d in datasets)
    assert float(first.SpacingBetweenSlices) == pytest.approx(original.spacing / 2, abs=1e-5)
    assert float(first.SliceThickness) == float(source.SliceThickness)  # the acquired thickness, kept
    assert int(first.SeriesNumber) == int(source.SeriesNumber) + 1000
    assert first.SeriesDescription == f"{source.SeriesDescription} x2 residual_cnn"[:64]
    umask = os.umask(0)
    os.umask(umask)
    assert (round_trip / "series").stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    assert sorted(int(d.InstanceNumber) for d in datasets) == list(range(1, 38))
    new = np.stack([d.pixel_array for d in datasets[1::2]])
    assert new.min() >= original.volume.min() and new.max() <= original.volume.max()  # within the input's range


def test_written_series_read_back_by_simpleitk(round_trip):
    """A third reader (ITK's GDCM, as 3D Slicer and ITK-SNAP use it) sees one series of 37 slices at half the spacing,
    in the source's orientation and position, with the original slices' voxels where they were."""
    sitk = pytest.importorskip("SimpleITK")
    source = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(T2)))
    assert len(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(round_trip / "series"))) == 1
    image = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(round_trip / "series")))
    assert image.GetSize() == (*source.GetSize()[:2], 2 * source.GetSize()[2] - 1)
    np.testing.assert_allclose(image.GetSpacing(), (*source.GetSpacing()[:2], source.GetSpacing()[2] / 2), atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), source.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), source.GetOrigin(), atol=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image)[::2], sitk.GetArrayFromImage(source))


def test_dicom_and_nifti_paths_give_the_same_volume(round_trip):
    from misr_monai.dicom import read_series

    from_nifti = nib.load(round_trip / "from_nifti.nii.gz")
    from_dicom = nib.load(round_trip / "from_dicom.nii.gz")
    series = read_series(round_trip / "series")  # the written series, read back through MONAI
    for volume, affine in ((np.asanyarray(from_dicom.dataobj), from_dicom.affine), (series.volume, series.affine)):
        _assert_same_world_voxels(volume, affine, np.asanyarray(from_nifti.dataobj), from_nifti.affine)
    np.testing.assert_allclose(from_dicom.affine[:3, 3], read_series(T2).affine[:3, 3])


def test_a_series_at_factor_three_with_the_profile_its_header_implies(tmp_path):
    """x3 by the context model: (m - 1) 3 + 1 slices at a third of the spacing, the acquired slices bit for bit, the
    slice profile read from SliceThickness (3 mm every 3 mm: contiguous, w = 1) and printed."""
    from misr_monai.dicom import read_series

    result = _run(str(T2), str(tmp_path / "x3"), "--factor", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "x3, spacing 3.000 -> 1.000 mm; slice profile w = 1.00 (SliceThickness 3 mm over spacing 3 mm)" in result.stdout
    original = read_series(T2)
    datasets, position, _ = _read_back(tmp_path / "x3")
    assert len(datasets) == 3 * (19 - 1) + 1
    np.testing.assert_allclose(np.diff(position), original.spacing / 3, atol=1e-4)
    for i, source in enumerate(original.datasets):
        np.testing.assert_array_equal(datasets[3 * i].pixel_array, source.pixel_array)
    source, _, _ = _read_back(T2)  # the first slice where the source's first slice was, as pydicom alone reads both
    np.testing.assert_allclose([float(v) for v in datasets[0].ImagePositionPatient],
                               [float(v) for v in source[0].ImagePositionPatient], atol=1e-3)


def _copy(source, target, names=None):
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if names is None or path.name in names:
            shutil.copy(path, target / path.name)
    return target


def test_bad_series_are_one_line_each(tmp_path):
    import pydicom

    mixed = _copy(T2, tmp_path / "mixed")
    _copy(DICOM / "ProstateX-0000_DWI_missing_slice", mixed / "dwi")
    for path in (mixed / "dwi").iterdir():
        path.rename(mixed / f"dwi_{path.name}")
    (mixed / "dwi").rmdir()
    no_image = _copy(T2, tmp_path / "no_image")
    ds = pydicom.dcmread(no_image / "1-05.dcm")
    del ds.PixelData
    ds.save_as(no_image / "1-05.dcm")
    truncated = _copy(T2, tmp_path / "truncated")
    data = (truncated / "1-07.dcm").read_bytes()
    (truncated / "1-07.dcm").write_bytes(data[: len(data) // 2])
    cases = {
        DICOM / "ProstateX-0000_DWI_missing_slice": "slice gap of 6.00 mm between 1-07.dcm and 1-05.dcm, where the "
                                                    "others are 3.00 mm: a slice is missing",
        mixed: "2 series in one folder (",
        no_image: "1-05.dcm: not an image slice",
        truncated: "1-07.dcm: truncated file (",
    }
    for folder, expected in cases.items():
        out = tmp_path / f"out_{folder.name}"
        result = _run(str(folder), str(out))
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], lines
        assert not out.exists() and result.stdout == ""  # checked before the model loads


def test_stray_files_in_a_series_folder_are_skipped_and_a_lone_slice_gets_a_hint(tmp_path):
    import pydicom

    folder = _copy(T2, tmp_path / "export")
    (folder / "manifest.txt").write_text("exported by a PACS\n")
    (folder / "preview.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    dicomdir = pydicom.dcmread(folder / "1-05.dcm")  # a DICOM object without an image, as a DICOMDIR is
    for keyword in ("PixelData", "ImagePositionPatient", "ImageOrientationPatient"):
        delattr(dicomdir, keyword)
    dicomdir.save_as(folder / "DICOMDIR")
    result = _run(str(folder), str(tmp_path / "out"), "--model", "linear")
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("manifest.txt", "preview.png", "DICOMDIR"):
        assert sum(name in line and "skipped" in line for line in result.stdout.splitlines()) == 1, result.stdout
    assert len(list((tmp_path / "out").iterdir())) == 2 * 19 - 1

    lone = _run(str(T2 / "1-05.dcm"), str(tmp_path / "lone.nii.gz"))
    assert lone.returncode == 2 and lone.stderr.strip().splitlines() == [
        f"misr: error: {T2 / '1-05.dcm'}: one DICOM slice; give the folder of its series ({T2})."]
