"""Any factor and any slice profile: the spline at every position, the thick-slice simulation, one network told the
position t and the profile w (cubic exactly when untrained, the x2 model exactly when warm-started), the training
pairs, the volume path's geometry at factor F, and what a midpoint-only model refuses."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy.interpolate import CubicSpline
from scipy.ndimage import convolve1d

from misr_monai.interpolation import cubic_interpolate, linear_interpolate, slice_profile_kernel, thick_slices
from misr_monai.io import InputError
from misr_monai.networks.nets import ResidualInterpolationNet, warm_start
from misr_monai.predictors.network import NetworkPredictor
from misr_monai.transforms import RandSliceGap, SliceGaps
from misr_monai.engines.volumes import upsample
from misr_monai.volume import DEFAULT_PROFILE, factor_for_spacing, slice_profile, upsample_volume
from tests.conftest import ROOT, smooth_volume, write_nifti


def _context_net(conditions: int = 2, seed: int = 0) -> ResidualInterpolationNet:
    torch.manual_seed(seed)
    return ResidualInterpolationNet(in_channels=5 + conditions, channels=8, num_res_blocks=1, spline_skip=True,
                                    conditions=conditions)


def _trained(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with a random (non-zero) last layer: its residual counts."""
    torch.manual_seed(1)
    torch.nn.init.normal_(net.tail.conv.weight, std=0.05)
    return net


@pytest.mark.parametrize("factor", [2, 3, 4, 5, 6, 8])
def test_the_spline_at_every_position_is_scipys_natural_spline(factor):
    knots = np.random.default_rng(factor).random((11, 5, 4))
    positions = np.arange(10 * factor + 1)
    reference = CubicSpline(factor * np.arange(11), knots, axis=0, bc_type="natural")(positions)
    reference = reference[positions % factor != 0]
    np.testing.assert_allclose(cubic_interpolate(knots, factor), reference, atol=1e-12)
    np.testing.assert_allclose(cubic_interpolate(knots.astype(np.float32), factor), reference, atol=1e-5)
    t = (positions[positions % factor != 0] % factor / factor)[:, None, None]
    k = positions[positions % factor != 0] // factor
    np.testing.assert_allclose(linear_interpolate(knots, factor), (1 - t) * knots[k] + t * knots[k + 1], atol=1e-12)


def test_the_profile_kernel_is_the_protocols_box():
    for factor in (3, 5):
        np.testing.assert_allclose(slice_profile_kernel(factor), np.ones(factor) / factor)
    for factor in (2, 4, 6):
        expected = np.ones(factor + 1)
        expected[[0, -1]] = 0.5
        np.testing.assert_allclose(slice_profile_kernel(factor), expected / factor)
    np.testing.assert_allclose(slice_profile_kernel(1.5), np.array([0.25, 1, 0.25]) / 1.5)  # EVALUATION.md's between
    assert slice_profile_kernel(0).tolist() == [1.0]
    volume = smooth_volume((6, 7, 12))
    np.testing.assert_allclose(thick_slices(volume, 2, 3), convolve1d(volume, np.ones(3, np.float32) / 3, axis=2,
                                                                      mode="mirror"), rtol=1e-6)


@pytest.mark.parametrize("factor", [2, 3, 5])
def test_an_untrained_context_network_is_cubic_at_every_position_and_profile(factor):
    slices = smooth_volume((9, 16, 16)).transpose(2, 0, 1) * 100
    predictor = NetworkPredictor(_context_net())
    assert predictor.any_factor and predictor.context == 2
    for profile in (0.0, 1.0):
        np.testing.assert_allclose(predictor(slices, factor, profile), cubic_interpolate(slices, factor), rtol=1e-5,
                                   atol=1e-3)


def test_a_warm_start_from_the_x2_network_is_it_at_every_profile_and_the_position_counts():
    x2 = _trained(_context_net(conditions=0))
    anywhere = warm_start(_context_net(), x2.state_dict())
    slices = smooth_volume((8, 16, 16)).transpose(2, 0, 1)
    old, new = NetworkPredictor(x2), NetworkPredictor(anywhere)
    for profile in (0.0, 0.5, 1.0):
        np.testing.assert_array_equal(new(slices, 2, profile), old(slices))
    torch.nn.init.normal_(anywhere.head.conv.weight[:, 4:6], std=0.5)  # once trained, t and w change the output
    assert np.abs(new(slices, 2, 0.0) - new(slices, 2, 1.0)).max() > 1e-3
    with pytest.raises(ValueError, match="midpoint"):
        old(slices, 3)


def test_the_self_ensemble_reverses_the_position():
    slices = smooth_volume((8, 16, 16)).transpose(2, 0, 1)
    net = _trained(_context_net())
    torch.nn.init.normal_(net.head.conv.weight[:, 4:5], std=0.5)  # t matters
    plain = NetworkPredictor(net)(slices, 3)
    ensemble = NetworkPredictor(net, self_ensemble=True)(slices, 3)
    # a mirror image along the slices: the slice at t in gap k is the one at 1 - t in the reversed stack's gap
    mirrored = NetworkPredictor(net, self_ensemble=True)(slices[::-1].copy(), 3)
    np.testing.assert_allclose(ensemble, mirrored[::-1], rtol=1e-4, atol=1e-4)
    assert np.abs(plain - ensemble).max() > 1e-4


def test_training_pairs_are_the_protocols_kept_slices_spline_and_thick_target():
    data = np.random.default_rng(0).random((1, 24, 20, 30)).astype(np.float32)
    volume = MetaTensor(torch.from_numpy(data))
    sampler = RandSliceGap(patch_size=(24, 20), context=2, min_foreground=0,
                           profiles=(0.0, 0.5, 1.0)).set_random_state(0)
    drawn = set()
    for _ in range(60):
        x, y = sampler(volume)
        factor, j, profile, (i, r0, c0) = sampler._factor, sampler._position, sampler._profile, sampler.triplet._corner
        drawn.add((factor, profile))
        thick = thick_slices(np.moveaxis(data[0], 2, 0), 0, profile * factor)
        kept, k = thick[(i - j) % factor :: factor], (i - j) // factor
        spline = cubic_interpolate(kept, factor).reshape(len(kept) - 1, factor - 1, 24, 20)[k, j - 1]
        np.testing.assert_allclose(y[0].numpy(), thick[i], atol=1e-5)
        np.testing.assert_allclose(x[1].numpy(), kept[k], atol=1e-5)
        np.testing.assert_allclose(x[2].numpy(), kept[k + 1], atol=1e-5)
        np.testing.assert_allclose(x[6].numpy(), spline, atol=1e-4)
        assert x[4].unique().tolist() == pytest.approx([j / factor]) and x[5].unique().tolist() == pytest.approx([profile])
    assert len({f for f, _ in drawn}) >= 4 and len({w for _, w in drawn}) == 3
    pairs = SliceGaps(factors=(3,), profiles=(1.0,))(volume)
    assert len(pairs) == 18 and pairs[0][0].shape == (7, 24, 20)  # 10 kept slices (0 ... 27), 9 gaps of 2 new ones


@pytest.mark.parametrize("factor", [3, 5])
def test_upsample_at_factor_f_keeps_every_acquired_slice_and_divides_the_slice_column(tmp_path, factor):
    vol = (smooth_volume((12, 10, 6)) * 1000).astype(np.int16)
    affine = np.array([[0.0, 0.9, 0.1, 4.0], [0.8, 0.0, 0.2, -3.0], [0.0, -0.1, 2.9, 12.0], [0, 0, 0, 1]])
    src = write_nifti(tmp_path / "in.nii.gz", vol, affine)
    before = src.read_bytes()
    predictor = NetworkPredictor(_trained(_context_net()))
    [info] = upsample(src, tmp_path / "out.nii.gz", predictor, factor=factor)
    out = nib.load(str(tmp_path / "out.nii.gz"))
    assert out.shape == (12, 10, (6 - 1) * factor + 1) and out.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asanyarray(out.dataobj)[..., ::factor], vol)
    expected = affine.copy()
    expected[:3, 2] /= factor
    np.testing.assert_allclose(out.affine, expected, atol=1e-6)
    assert info["factor"] == factor and info["profile"] == DEFAULT_PROFILE and src.read_bytes() == before
    [info] = upsample(src, tmp_path / "thick.nii.gz", predictor, spacing=1.0, slice_thickness=3.5)
    assert info["factor"] == 3 and info["profile"] == pytest.approx(1.0)


def test_spacing_and_thickness_choose_the_factor_and_profile():
    assert [factor_for_spacing(s, t) for s, t in ((3.6, 0.6), (3.0, 1.0), (5.0, 1.0), (1.5, 0.5), (20, 1))] == \
        [6, 3, 5, 3, 8]
    assert slice_profile(3.0, 3.6) == pytest.approx(3 / 3.6) and slice_profile(4.0, 3.0) == 1.0
    assert slice_profile(None, 3.0) is None
    with pytest.raises(InputError):
        factor_for_spacing(3.0, 0.0)


def test_a_midpoint_model_takes_powers_of_two_only_and_says_so_in_one_line(tmp_path):
    x2 = NetworkPredictor(_trained(_context_net(conditions=0)))
    volume = smooth_volume((6, 6, 5))
    assert upsample_volume(volume, 2, x2, 4).shape == (6, 6, 17)
    with pytest.raises(InputError, match="2, 4 or 8"):
        upsample_volume(volume, 2, x2, 3)
    src = write_nifti(tmp_path / "in.nii.gz", volume)
    result = subprocess.run([sys.executable, "-m", "misr_monai", "upsample", str(src), str(tmp_path / "o.nii.gz"),
                             "--model", "residual_cnn", "--factor", "3"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and not (tmp_path / "o.nii.gz").exists()
    assert [line for line in result.stderr.splitlines() if "error" in line] == [
        f"misr: error: {src}: this model predicts the midpoint of a gap only, so --factor must be 2, 4 or 8 (x2 "
        "passes), got 3; context_cnn, context_cnn_brain and cubic take any factor."]
