"""The training data pipeline: the cache is never written, thick-slice volumes cache one spline axis, augmentation
is the patch's own flip or rotation, warm starts, and the training benchmark."""

from __future__ import annotations


import numpy as np
import torch

from monai.data import MetaTensor

from misr_monai.networks.nets import ResidualInterpolationNet, warm_start
from misr_monai.transforms import RandSliceTriplet, SliceSpline
from tests.conftest import ROOT, smooth_volume

CONTEXT_BUNDLE = ROOT / "bundles" / "mri_slice_interpolation_context_cnn"


def test_many_draws_through_the_bundles_loader_leave_the_cache_bitwise_unchanged(synthetic, tmp_path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONTEXT_BUNDLE / "configs" / "train.json"))
    parser.update({"bundle_root": str(CONTEXT_BUNDLE), "dataset_dir": str(synthetic / "data"),
                   "datalist_file": str(synthetic / "datalist.json"), "output_dir": str(tmp_path),
                   "patch_size": [16, 16], "batch_size": 16})
    dataset = parser.get_parsed_content("train#dataset")
    assert dataset.copy_cache is False
    assert all(item is None for item in dataset._cache)  # cached at run time: resolving the config loads no volume
    for index in range(len(dataset)):
        dataset[index]
    before = [{k: v.clone() for k, v in item.items() if isinstance(v, torch.Tensor)} for item in dataset._cache]
    patches = 0
    for _ in range(3):
        for batch in parser.get_parsed_content("train#dataloader"):
            assert batch["image"].shape[1:] == (7, 16, 16) and batch["label"].shape[1:] == (1, 16, 16)
            assert type(batch["image"]) is torch.Tensor  # no MetaTensor bookkeeping per patch
            batch["image"].add_(1)  # a consumer writing into its batch must not reach the cache
            patches += len(batch["image"])
    assert patches >= 40
    for item, saved in zip(dataset._cache, before):
        for key, value in saved.items():
            assert torch.equal(item[key], value), key


def test_thick_slice_volumes_cache_the_spline_of_the_slice_axis_only():
    thick = MetaTensor(torch.rand(1, 12, 10, 7), affine=torch.diag(torch.tensor([0.5, 0.5, 3.0, 1.0])))
    thick.meta["slice_axis"] = 2
    spline = SliceSpline(random_axis=True)(thick)
    assert spline.shape == (1, 12, 10, 7)  # anisotropic: only the axis the sampler can draw
    iso = MetaTensor(torch.rand(1, 12, 10, 7))
    assert SliceSpline(random_axis=True)(iso).shape == (3, 12, 10, 7)
    np.testing.assert_array_equal(SliceSpline(random_axis=True)(iso)[2], SliceSpline()(iso)[0])
    sampler = RandSliceTriplet(patch_size=(6, 6), context=2, random_axis=True).set_random_state(0)
    for _ in range(5):
        x, _ = sampler(thick, spline=spline)
        i, r0, c0 = sampler._corner
        np.testing.assert_array_equal(x[4].numpy(), spline[0, r0 : r0 + 6, c0 : c0 + 6, i].numpy())


def test_augmentation_moves_input_and_target_together():
    vol = MetaTensor(torch.from_numpy(smooth_volume((20, 20, 9), seed=3))[None])
    vol.meta["slice_axis"] = 2
    sampler = RandSliceTriplet(patch_size=(12, 12), augment=True).set_random_state(5)
    seen = set()
    for _ in range(30):
        x1, y1 = sampler(vol)
        x0, y0 = sampler(vol, randomize=False)  # the same draw, not augmented
        stack0, stack1 = torch.cat([x0, y0]), torch.cat([x1, y1])
        matches = [(f, k) for f in ([], [-2], [-1], [-2, -1]) for k in range(4)
                   if torch.equal(torch.rot90(torch.flip(stack0, f) if f else stack0, k, (-2, -1)), stack1)]
        assert matches, "the augmented patch is not a flip/rotation of the same input and target"
        seen.add(torch.equal(stack0, stack1))
    assert seen == {True, False}


def test_a_context_network_warm_started_from_the_four_slice_cnn_refines_the_spline_with_its_body():
    four = ResidualInterpolationNet(in_channels=4, channels=8, num_res_blocks=2)
    torch.nn.init.normal_(four.tail.conv.weight, std=0.1)
    context = warm_start(ResidualInterpolationNet(in_channels=5, channels=8, num_res_blocks=2, spline_skip=True),
                         four.state_dict())
    x = torch.rand(3, 5, 16, 16)
    four_tap = (9 * (x[:, 1:2] + x[:, 2:3]) - (x[:, 0:1] + x[:, 3:4])) / 16
    torch.testing.assert_close(context(x) - x[:, 4:], four(x[:, :4]) - four_tap)  # same residual, over the spline
    assert (context.head.conv.weight[:, 4] == 0).all()


def test_training_benchmark_reports_data_step_and_end_to_end(synthetic, capsys):
    from misr_monai.apps.benchmarks import run_training_benchmark

    result = run_training_benchmark(str(CONTEXT_BUNDLE), str(synthetic / "data"), "cpu", batches=4, steps=2, iterations=3,
                                    overrides={"datalist_file": str(synthetic / "datalist.json"), "batch_size": 4,
                                               "channels": 8, "num_res_blocks": 1, "patch_size": [16, 16],
                                               "pretrained": ""})
    out = capsys.readouterr().out
    for line in ("7 training entries", "data alone:", "step alone:", "of the same-run bf16 matmul ceiling", "end to end:",
                 "waiting for data"):
        assert line in out
    assert result["data_patches_per_s"] > 0 and result["step_macs"] > 0 and 0 <= result["data_wait_share"] <= 1


def test_the_self_ensemble_is_equivariant_to_flips_rotations_and_slice_order():
    from misr_monai.predictors.network import NetworkPredictor
    from misr_monai.volume import upsample_array

    torch.manual_seed(0)
    net = ResidualInterpolationNet(in_channels=5, channels=8, num_res_blocks=1, spline_skip=True)
    torch.nn.init.normal_(net.tail.conv.weight, std=0.05)
    volume = smooth_volume((12, 12, 9), seed=4) * 500 + 20
    single, ensemble = NetworkPredictor(net), NetworkPredictor(net, self_ensemble=True)
    out = upsample_array(volume, 2, ensemble)
    assert np.abs(out - upsample_array(volume, 2, single)).max() > 1e-3  # a random network is not equivariant
    for transform in (lambda v: v[::-1], lambda v: v[:, ::-1], lambda v: np.rot90(v, 1, (0, 1)), lambda v: v[..., ::-1]):
        moved = np.ascontiguousarray(transform(volume))
        np.testing.assert_allclose(upsample_array(moved, 2, ensemble), transform(out), rtol=1e-5, atol=1e-3)
    untrained = ResidualInterpolationNet(in_channels=5, channels=8, num_res_blocks=1, spline_skip=True)
    np.testing.assert_allclose(upsample_array(volume, 2, NetworkPredictor(untrained, self_ensemble=True)),
                               upsample_array(volume, 2, NetworkPredictor(untrained)), rtol=1e-6)


def test_every_batch_size_gives_batches_of_exactly_that_many_patches(synthetic, tmp_path):
    from monai.bundle import ConfigParser

    for batch_size in (4, 6, 10, 16, 18):
        parser = ConfigParser()
        parser.read_config(str(CONTEXT_BUNDLE / "configs" / "train.json"))
        parser.update({"bundle_root": str(CONTEXT_BUNDLE), "batch_size": batch_size})
        fetch = parser.get_parsed_content("patches_per_fetch")
        assert fetch * parser.get_parsed_content("train#dataloader#batch_size") == batch_size
        assert fetch == (4 if batch_size >= 16 and batch_size % 4 == 0 else 2 if batch_size in (10, 18) else 1)
