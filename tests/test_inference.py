from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from misr_monai.interpolation import cubic_interpolate, linear_interpolate
from misr_monai.predictors.network import NetworkPredictor
from misr_monai.engines.volumes import upsample
from misr_monai.volume import upsample_array
from tests.conftest import smooth_volume, write_nifti


def test_baselines_on_polynomials():
    z = np.arange(7, dtype=np.float64)[:, None, None] * np.ones((1, 3, 3))
    np.testing.assert_allclose(linear_interpolate(2 * z + 1), 2 * (z[:-1] + 0.5) + 1)
    np.testing.assert_allclose(cubic_interpolate(3 * z + 2), 3 * (z[:-1] + 0.5) + 2, atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_upsample_array_keeps_originals(axis):
    vol = smooth_volume((9, 10, 11))
    out = upsample_array(vol, axis, linear_interpolate)
    assert out.shape[axis] == 2 * vol.shape[axis] - 1
    np.testing.assert_array_equal(np.take(out, np.arange(0, out.shape[axis], 2), axis=axis), vol)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x) + x.mean(1, keepdim=True)


def test_network_predictor_independent_of_batch_size():
    slices = smooth_volume((11, 16, 16))
    results = [NetworkPredictor(_Tiny(), batch_size=b)(slices) for b in (1, 3, 16)]
    assert results[0].shape == (10, 16, 16)
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-5, atol=1e-3)


def _oblique_affine():
    a = np.deg2rad(25)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.7, 0.7, 4.0])
    affine[:3, 3] = [-40.0, 12.5, 30.0]
    return affine


AFFINES = [
    (np.diag([0.5, 0.5, 3.0, 1.0]), 2),
    (np.array([[-3.0, 0, 0, 90], [0, 0.8, 0, -100], [0, 0, 0.8, 20], [0, 0, 0, 1]]), 0),
    (np.array([[0.9, 0, 0, 1], [0, 0, -0.9, 2], [0, 5.0, 0, 3], [0, 0, 0, 1]]), 1),  # axis 1 points along world z
    (_oblique_affine(), 2),
]


@pytest.mark.parametrize("affine,axis", AFFINES)
def test_upsample_nifti_geometry(tmp_path, affine, axis):
    vol = smooth_volume((12, 10, 8), dtype=np.int16)
    src = write_nifti(tmp_path / "in.nii.gz", vol, affine, qform_code=1, sform_code=2)
    before = src.read_bytes()
    affine = nib.load(str(src)).affine  # as stored (float32 in the header)
    info = upsample(src, tmp_path / "out.nii.gz", cubic_interpolate)[0]
    assert info["axis"] == axis
    out = nib.load(str(tmp_path / "out.nii.gz"))
    data = np.asanyarray(out.dataobj)
    n = vol.shape[axis]
    assert data.shape[axis] == 2 * n - 1 and data.dtype == np.int16
    np.testing.assert_array_equal(np.take(data, np.arange(0, 2 * n - 1, 2), axis=axis), vol)  # bit-exact originals
    expected = affine.copy()
    expected[:3, axis] /= 2
    np.testing.assert_allclose(out.affine, expected, atol=1e-6)
    np.testing.assert_allclose(out.header.get_qform(), expected, atol=1e-5)
    assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 2
    assert out.header.get_xyzt_units() == ("mm", "sec")
    # every original slice j sits at its old world position, as new slice 2j
    for j in range(n):
        old = np.zeros(3)
        old[axis] = j
        new = np.zeros(3)
        new[axis] = 2 * j
        np.testing.assert_allclose(nib.affines.apply_affine(out.affine, new), nib.affines.apply_affine(affine, old))
    assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(affine)
    assert src.read_bytes() == before  # input untouched


@pytest.mark.parametrize("factor", [4, 8])
def test_factor_applies_x2_repeatedly(tmp_path, factor):
    vol = smooth_volume((6, 6, 5))
    src = write_nifti(tmp_path / "in.nii", vol)
    upsample(src, tmp_path / "out.nii", linear_interpolate, factor=factor)
    out = nib.load(str(tmp_path / "out.nii"))
    assert out.shape[2] == factor * (5 - 1) + 1
    np.testing.assert_allclose(out.header.get_zooms()[2], 3.0 / factor, rtol=1e-6)
    np.testing.assert_array_equal(np.asanyarray(out.dataobj)[..., ::factor], vol)


def test_float64_and_4d_single_volume(tmp_path):
    vol = smooth_volume((6, 6, 5)).astype(np.float64) + 1e-9
    src = write_nifti(tmp_path / "in.nii.gz", vol[..., None])
    upsample(src, tmp_path / "out.nii.gz", cubic_interpolate, axis=2)
    out = np.asanyarray(nib.load(str(tmp_path / "out.nii.gz")).dataobj)
    assert out.dtype == np.float64 and out.shape == (6, 6, 9)
    np.testing.assert_array_equal(out[..., ::2], vol)


def test_torch_spline_equals_scipys_natural_spline_on_random_and_smooth_stacks():
    from scipy.interpolate import CubicSpline

    stacks = [np.random.default_rng(m).uniform(0, 1000, (m, 7, 5)).astype(np.float32) for m in (2, 3, 4, 5, 8, 129)]
    stacks.append(smooth_volume((9, 14, 12), seed=2) * 900)
    for slices in stacks:
        m = slices.shape[0]
        scipy = CubicSpline(2 * np.arange(m), slices.astype(np.float64), axis=0, bc_type="natural")(2 * np.arange(m - 1) + 1)
        before = slices.copy()
        ours = cubic_interpolate(slices)
        assert ours.dtype == np.float32 and ours.shape == scipy.shape
        np.testing.assert_array_equal(slices, before)  # the input is only read
        assert np.abs(ours - scipy).max() <= 1e-5 * np.abs(scipy).max()  # ends included
        tensor = cubic_interpolate(torch.from_numpy(slices))
        assert isinstance(tensor, torch.Tensor)
        np.testing.assert_array_equal(tensor.numpy(), ours)
    assert cubic_interpolate(np.ones((1, 3, 3), np.float32)).shape == (0, 3, 3)


def test_new_slices_stay_within_the_input_range():
    """A network that overshoots (negative voxels in a magnitude image) is clipped to the input's range; the
    original slices are untouched."""

    volume = np.random.default_rng(0).uniform(10, 100, (6, 5, 4)).astype(np.float32)
    overshoot = lambda slices: np.where(np.arange(slices.shape[1])[None, :, None] % 2, -50.0, 500.0) + 0 * slices[1:]
    out = upsample_array(volume, 2, overshoot)
    np.testing.assert_array_equal(out[..., ::2], volume)
    assert set(np.unique(out[..., 1::2])) == {volume.min(), volume.max()}


def test_slice_interpolation_inferer_on_a_batch_of_meta_tensors():
    """The inferer keeps each volume's acquired slices bit-exact and its dtype, divides the slice column of each affine
    by the factor (origin unchanged), and gives what the numpy path gives."""
    from monai.data import MetaTensor

    from misr_monai.inferers import SliceInterpolationInferer
    from misr_monai.volume import upsample_volume

    rng = np.random.default_rng(0)
    volumes = (rng.random((2, 1, 9, 8, 6)) * 1000).astype(np.int16)
    affine = np.array([[0.0, 0.0, 3.0, -7.0], [0.9, 0.0, 0.0, 2.0], [0.0, 0.8, 0.0, 5.0], [0.0, 0.0, 0.0, 1.0]])
    inputs = MetaTensor(torch.from_numpy(volumes), affine=torch.as_tensor(np.stack([affine, affine])))
    out = SliceInterpolationInferer(factor=3)(inputs, cubic_interpolate)  # the slice axis found from the affine: 2
    assert isinstance(out, MetaTensor) and out.shape == (2, 1, 9, 8, 16) and out.dtype == torch.int16
    expected_affine = affine.copy()
    expected_affine[:3, 2] /= 3
    for b in range(2):
        np.testing.assert_array_equal(out.affine[b].numpy(), expected_affine)
        np.testing.assert_array_equal(out[b, 0].numpy()[..., ::3], volumes[b, 0])
        reference = np.rint(upsample_volume(volumes[b, 0], 2, cubic_interpolate, 3, profile=1.0)).astype(np.int16)
        np.testing.assert_array_equal(out[b, 0].numpy(), reference)
    single = SliceInterpolationInferer(factor=2, axis=0)(inputs[0], cubic_interpolate)
    assert single.shape == (1, 17, 8, 6) and float(single.affine[1, 0]) == 0.45
