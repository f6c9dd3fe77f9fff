from __future__ import annotations

import numpy as np
import pytest
import torch

from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged

from misr_monai.transforms import (
    PercentileScale,
    PercentileScaled,
    RandSliceTriplet,
    RandSliceTripletd,
    SliceAxis,
    SliceAxisd,
    find_slice_axis,
)
from tests.conftest import write_nifti


def _rotation(angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


AXIS_CASES = [
    (np.diag([0.5, 0.5, 3.0, 1.0]), 2),
    (np.diag([3.0, 0.5, 0.5, 1.0]), 0),
    (np.diag([0.9, 4.0, 0.9, 1.0]), 1),
    (np.diag([1.0, 1.33, 1.33, 1.0]), 1),  # ds011 T1w: ties go to the first
    (np.diag([1.0, 1.05, 0.98, 1.0]), 2),  # isotropic within 10%: the last axis
]


@pytest.mark.parametrize("affine,expected", AXIS_CASES)
def test_find_slice_axis(affine, expected):
    assert find_slice_axis(affine) == expected


def test_find_slice_axis_oblique_uses_column_norms():
    affine = np.eye(4)
    affine[:3, :3] = _rotation(40) @ np.diag([0.5, 3.0, 0.5])  # thick axis 1, spread over x and y
    assert np.all(np.abs(np.diag(affine)[:3]) < 3.0)  # the diagonal alone would not find it
    assert find_slice_axis(affine) == 1


def test_slice_axis_transform_records_axis_and_override():
    img = MetaTensor(torch.zeros(1, 8, 8, 4), affine=torch.diag(torch.tensor([3.0, 1.0, 1.0, 1.0])))
    assert SliceAxis()(img).meta["slice_axis"] == 0
    assert SliceAxisd("image", axis=2)({"image": img})["image"].meta["slice_axis"] == 2
    with pytest.raises(ValueError):
        SliceAxis(axis=3)


def test_percentile_scale_inverts_exactly():
    data = MetaTensor(torch.arange(0.0, 400.0).reshape(1, 20, 20))
    t = PercentileScale()
    scaled = t(data)
    expected = np.percentile(np.arange(1.0, 400.0), 99.5)
    assert float(scaled.max()) == pytest.approx(399.0 / expected)
    torch.testing.assert_close(t.inverse(scaled), data)
    td = PercentileScaled("image")
    torch.testing.assert_close(td.inverse(td({"image": data}))["image"], data)
    with pytest.raises(ValueError):
        PercentileScale(percentile=0)


def _indexed_volume(shape=(1, 40, 36, 12)) -> MetaTensor:
    """Voxel value = 1 + slice index along the last axis (+ a tiny in-plane code), so a cut can be checked exactly."""
    vol = torch.zeros(shape)
    vol += (1 + torch.arange(shape[3]).float()).view(1, 1, 1, -1)
    vol += torch.arange(shape[1]).float().view(1, -1, 1, 1) * 1e-3
    img = MetaTensor(vol, affine=torch.diag(torch.tensor([1.0, 1.0, 3.0, 1.0])))
    img.meta["slice_axis"] = 2
    return img


def test_triplet_target_is_exactly_the_middle_slice():
    img = _indexed_volume()
    sampler = RandSliceTriplet(patch_size=(16, 16), min_foreground=0.0).set_random_state(3)
    for _ in range(20):
        x, y = sampler(img)
        i, r0, c0 = sampler._corner
        expected = img[0, r0 : r0 + 16, c0 : c0 + 16, i]
        torch.testing.assert_close(y[0], expected.as_tensor())
        torch.testing.assert_close(x[0], img[0, r0 : r0 + 16, c0 : c0 + 16, i - 1].as_tensor())
        torch.testing.assert_close(x[1], img[0, r0 : r0 + 16, c0 : c0 + 16, i + 1].as_tensor())
        assert 1 <= i <= img.shape[3] - 2


def test_triplet_pads_small_slices_and_uses_the_slice_axis():
    # 5 slices of 10x12 along axis 0 (3 mm apart), slice i filled with i + 1: a triplet cut along another axis would
    # mix values within a slice and have another in-plane shape
    vol = torch.arange(1.0, 6.0).view(1, 5, 1, 1).expand(1, 5, 10, 12).clone()
    img = SliceAxis()(MetaTensor(vol, affine=torch.diag(torch.tensor([3.0, 1.0, 1.0, 1.0]))))
    for seed in range(4):
        x, y = RandSliceTriplet(patch_size=(16, 16), min_foreground=0.0).set_random_state(seed)(img)
        assert x.shape == (2, 16, 16) and y.shape == (1, 16, 16)
        middle = float(y[0, 0, 0])
        assert middle in (2.0, 3.0, 4.0)  # an inner slice along axis 0
        torch.testing.assert_close(y[0, :10, :12], torch.full((10, 12), middle))  # the whole 10x12 slice
        torch.testing.assert_close(x[:, :10, :12], torch.stack([torch.full((10, 12), middle - 1),
                                                                 torch.full((10, 12), middle + 1)]))
        assert float(y[0, 10:].abs().sum()) == 0.0 and float(y[0, :, 12:].abs().sum()) == 0.0  # zero padding


def test_seeded_sampling_replays():
    img = _indexed_volume()
    t1 = RandSliceTripletd("image", num_samples=4, patch_size=(16, 16)).set_random_state(7)
    t2 = RandSliceTripletd("image", num_samples=4, patch_size=(16, 16)).set_random_state(7)
    for a, b in zip(t1({"image": img}), t2({"image": img})):
        torch.testing.assert_close(a["image"], b["image"])
        torch.testing.assert_close(a["label"], b["label"])
    other = RandSliceTripletd("image", num_samples=4, patch_size=(16, 16)).set_random_state(8)({"image": img})
    assert any(not torch.equal(a["label"], b["label"]) for a, b in zip(t1({"image": img}), other))


def test_mostly_background_patches_are_rejected():
    vol = torch.zeros(1, 64, 64, 9)
    vol[0, 40:60, 40:60, :] = 1.0  # tissue in one corner only
    img = MetaTensor(vol, affine=torch.eye(4))
    sampler = RandSliceTriplet(patch_size=(16, 16), min_foreground=0.5, max_tries=50).set_random_state(0)
    fractions = [float((sampler(img)[1] > 0.05).float().mean()) for _ in range(10)]
    assert min(fractions) >= 0.5
    blind = RandSliceTriplet(patch_size=(16, 16), min_foreground=0.0).set_random_state(0)
    assert min(float((blind(img)[1] > 0.05).float().mean()) for _ in range(10)) < 0.5


def test_random_axis_only_for_near_isotropic_volumes():
    iso = MetaTensor(torch.rand(1, 20, 20, 20), affine=torch.eye(4))
    sampler = RandSliceTriplet(patch_size=(8, 8), random_axis=True, min_foreground=0.0).set_random_state(0)
    axes = set()
    for _ in range(30):
        sampler(iso)
        axes.add(sampler._axis)
    assert axes == {0, 1, 2}
    thick = SliceAxis()(MetaTensor(torch.rand(1, 20, 20, 20), affine=torch.diag(torch.tensor([0.5, 0.5, 3.0, 1.0]))))
    for _ in range(10):
        sampler(thick)
        assert sampler._axis == 2


@pytest.mark.parametrize("kwargs", [{"patch_size": (16,)}, {"patch_size": (0, 16)}, {"min_foreground": 2.0}])
def test_triplet_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        RandSliceTriplet(**kwargs)


def test_triplet_rejects_too_few_slices():
    with pytest.raises(ValueError, match="3 slices"):
        RandSliceTriplet(patch_size=(8, 8))(MetaTensor(torch.rand(1, 10, 10, 2), affine=torch.eye(4)))


def test_pipeline_from_nifti(tmp_path):
    path = write_nifti(tmp_path / "v.nii.gz", np.random.default_rng(0).random((30, 30, 7)).astype(np.float32) + 0.5)
    pipeline = Compose([
        LoadImaged("image", ensure_channel_first=True),
        SliceAxisd("image"),
        PercentileScaled("image"),
        RandSliceTripletd("image", num_samples=3, patch_size=(16, 16)),
    ]).set_random_state(0)
    out = pipeline({"image": str(path)})
    assert len(out) == 3 and out[0]["image"].shape == (2, 16, 16) and out[0]["label"].shape == (1, 16, 16)
