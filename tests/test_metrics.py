from __future__ import annotations

import numpy as np
import pytest

from misr_monai.metrics import score_reconstruction, slice_metrics


def test_hand_computed_case():
    truth = np.zeros((1, 20, 20))
    truth[0, 5:15, 5:15] = 0.5  # 100 foreground voxels; dilated 5x5 -> 14x14 = 196 voxels of 400
    pred = truth.copy()
    pred[0, 5:15, 5:15] = 0.6  # error 0.1 on the square only
    m = slice_metrics(truth, pred)
    assert m["mse"][0] == pytest.approx(100 * 0.01 / 400)
    assert m["mae"][0] == pytest.approx(100 * 0.1 / 400)
    assert m["psnr"][0] == pytest.approx(10 * np.log10(400 / 1.0))
    assert m["psnr_fg"][0] == pytest.approx(10 * np.log10(1 / (100 * 0.01 / 196)))
    assert m["edge_ratio"][0] == pytest.approx(1.2)  # edges scale with the step height 0.6 / 0.5
    assert m["ssim"][0] < 1.0


def test_perfect_prediction_and_psnr_floor():
    truth = np.random.default_rng(0).random((2, 16, 16))
    m = slice_metrics(truth, truth.copy())
    np.testing.assert_allclose(m["ssim"], 1.0, atol=1e-5)
    np.testing.assert_allclose(m["psnr"], 100.0)  # MSE floored at 1e-10
    np.testing.assert_allclose(m["edge_ratio"], 1.0)


def test_ssim_is_nan_for_slices_smaller_than_its_window():
    truth = np.ones((2, 8, 8))
    m = slice_metrics(truth, truth)
    assert np.isnan(m["ssim"]).all() and np.isfinite(m["psnr"]).all()


def test_background_slices_are_skipped():
    truth = np.zeros((3, 16, 16))
    truth[1] = 0.04  # below 0.05: background
    truth[2, 4:12, 4:12] = 1.0
    m = slice_metrics(truth, truth * 0.5)
    assert m["psnr"].shape == (1,)
    # the scored slice is slice 2: its error is 0.5 on a quarter of it (slice 0 would give the PSNR floor, slice 1 34 dB)
    assert m["psnr"][0] == pytest.approx(10 * np.log10(1 / (0.25 * 0.25)))
    assert m["mae"][0] == pytest.approx(0.5 * 0.25)


def test_blur_lowers_edge_ratio():
    truth = np.zeros((1, 32, 32))
    truth[0, 8:24, 8:24] = 1.0
    from scipy.ndimage import uniform_filter

    blurred = uniform_filter(truth, size=(1, 5, 5))
    assert slice_metrics(truth, blurred)["edge_ratio"][0] < 0.9


def test_score_reconstruction_uses_odd_slices_and_volume_scale():
    truth = np.ones((8, 8, 7)) * 200.0
    truth[..., 1::2] = 100.0
    recon = truth[..., :7].copy()
    recon[..., 1::2] = 110.0  # error 10 on odd slices = 0.05 after scaling by 200
    s = score_reconstruction(truth, recon, axis=2)
    assert s["slices"] == 3
    assert s["mae"] == pytest.approx(0.05)
    assert s["psnr"] == pytest.approx(10 * np.log10(1 / 0.0025))


def test_through_plane_ratio_hand_computed():
    from misr_monai.metrics import through_plane_ratio

    truth = np.zeros((5, 6, 6))
    truth[0::2] = 0.5
    truth[1::2] = 0.8  # second difference at slices 1 and 3: |0.5 - 1.6 + 0.5| = 0.6
    linear = truth.copy()
    linear[1::2] = 0.5
    assert through_plane_ratio(truth, truth) == pytest.approx(1.0)
    assert through_plane_ratio(truth, linear) == 0.0  # linear interpolation never bends
    flicker = truth.copy()
    flicker[1::2] = 1.1  # |0.5 - 2.2 + 0.5| = 1.2: twice the truth's bend
    assert through_plane_ratio(truth, flicker) == pytest.approx(2.0)
    assert np.isnan(through_plane_ratio(np.zeros((3, 4, 4)), np.zeros((3, 4, 4))))


def test_psnr_vol_pools_foreground_errors_and_psnr_core_takes_the_middle_third():
    n = 19  # 2m - 1 reconstructed slices: odd indices 1..17; the middle third is 19/3 <= i < 38/3, i.e. 7, 9, 11
    truth = np.zeros((20, 20, n + 1))
    truth[5:15, 5:15, :] = 1.0  # every slice: 100 voxels of tissue, 196 foreground after the 5x5 dilation
    truth[:, :, 9] = 0.0  # one background slice in the core: not scored
    recon = truth[..., :n].copy()
    errors = {i: 0.01 * (i + 1) for i in range(1, n, 2)}
    for i, e in errors.items():
        recon[5:15, 5:15, i] -= e  # an error on the square only: squared error 100 e^2 per slice
    s = score_reconstruction(truth, recon, axis=2)
    scored = [i for i in errors if i != 9]
    assert s["slices"] == len(scored) and s["slice_index"] == scored and s["volume_slices"] == n
    assert s["psnr_vol"] == pytest.approx(10 * np.log10(196 * len(scored) / sum(100 * errors[i] ** 2 for i in scored)))
    core = [7, 11]  # 9 is background
    assert s["psnr_core"] == pytest.approx(10 * np.log10(196 * len(core) / sum(100 * errors[i] ** 2 for i in core)))
    assert s["slice_psnr"][0] == pytest.approx(10 * np.log10(400 / (100 * errors[1] ** 2)))


def test_calibration_of_a_sampler_with_known_spread():
    """Truth = mean + Gaussian noise of the stated std: 95.4% within 2 std, and the error ranks with the std."""
    from misr_monai.metrics import pool_calibration, score_calibration

    rng = np.random.default_rng(0)
    spread = np.repeat(np.linspace(0.005, 0.05, 40)[:, None], 40, axis=1)  # (40, 40), varying along rows
    shape = (40, 40, 21)
    mean = np.full(shape, 0.5)
    std = np.zeros(shape)
    std[..., 1::2] = spread[..., None]
    truth = mean + rng.normal(size=shape) * std
    rows = [score_calibration(truth * 100, mean * 100, std * 100, axis=2, seed=s) for s in (0, 1)]
    for row in rows:  # the 99.5th percentile scale is the same for truth, mean and std
        assert row["calibration_voxels"] == 40 * 40 * 10
        assert row["coverage_2std"] == pytest.approx(0.9545, abs=0.01)
        assert row["spearman_std"] > 0.5 and len(row["calibration_error"]) == 4096
    pooled = pool_calibration(rows)
    assert pooled["coverage_2std"] == pytest.approx(np.mean([r["coverage_2std"] for r in rows]))
    narrow = score_calibration(truth, mean, std / 4, axis=2)  # a spread 4x too narrow covers far less
    assert narrow["coverage_2std"] < 0.5


def test_std_calibration_fit_recovers_the_floor_and_the_slope():
    """Errors drawn with variance a^2 + (b std)^2 give back (a, b); the calibrated coverage is then about 0.95."""
    from misr_monai.metrics import calibrated_std, fit_std_calibration

    rng = np.random.default_rng(0)
    std = rng.uniform(0.0, 0.05, 50_000)
    error = rng.normal(0.0, calibrated_std(std, (0.02, 2.0)))
    a, b = fit_std_calibration(np.abs(error), std, "gaussian")
    assert abs(a - 0.02) < 0.002 and abs(b - 2.0) < 0.1
    assert np.mean(np.abs(error) <= 2 * std) < 0.75  # the raw std understates the errors
    assert abs(np.mean(np.abs(error) <= 2 * calibrated_std(std, (a, b))) - 0.954) < 0.01


def test_conformal_calibration_covers_new_voxels_at_its_level():
    """The conformal fit (a = 0, b from the quantile of |error| / std) covers 90% of fresh voxels of the same kind,
    where the raw std, 3x too narrow, covers half of them."""
    from misr_monai.metrics import calibrated_coverage, fit_std_calibration

    rng = np.random.default_rng(0)

    def draw(n):
        std = rng.uniform(0.005, 0.05, n)
        return np.abs(rng.standard_t(4, n)) * 3 * std, std  # heavy tails: a Gaussian fit would miss the level

    a, b = fit_std_calibration(*draw(20_000))
    error, std = draw(50_000)
    assert a == 0.0 and calibrated_coverage(error, std, (1e-9, 1.0)) < 0.55
    assert calibrated_coverage(error, std, (a, b)) == pytest.approx(0.90, abs=0.01)
    with pytest.raises(ValueError):
        fit_std_calibration(error, std, "isotonic")


def test_high_frequency_ratio_tells_blur_from_invented_detail():
    from scipy.ndimage import gaussian_filter

    from misr_monai.metrics import high_frequency_ratio

    rng = np.random.default_rng(0)
    volume = np.clip(gaussian_filter(rng.random((9, 48, 48)), 1.0) * 4 - 1.5, 0, 1)  # foreground with fine texture
    assert high_frequency_ratio(volume) == pytest.approx(1.0, abs=0.25)  # slices of one texture
    soft = volume.copy()
    soft[1::2] = gaussian_filter(volume[1::2], (0, 1.5, 1.5))
    noisy = volume.copy()
    noisy[1::2] += rng.normal(0, 0.1, noisy[1::2].shape) * (volume[1::2] > 0.05)
    assert high_frequency_ratio(soft) < 0.3 < 2.0 < high_frequency_ratio(noisy)
    background = volume.copy()
    background[1::2] += rng.normal(0, 0.01, background[1::2].shape) * (volume[1::2] <= 0.05)  # outside the foreground
    assert high_frequency_ratio(background) == pytest.approx(high_frequency_ratio(volume), rel=0.05)
