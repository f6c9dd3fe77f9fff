"""Wider context (K = 2: slices i-3, i-1, i+1, i+3): the network's skip, the stacks the transforms cut, the end gaps of
a volume, and the four-slice bundle's config."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor

from misr_monai.cli import main
from misr_monai.predictors.network import NetworkPredictor
from misr_monai.networks.nets import ResidualInterpolationNet
from misr_monai.transforms import RandSliceTriplet, SliceTriplets
from misr_monai.transforms.utils import neighbour_offsets, reflect_index
from tests.conftest import bundle_workflow, smooth_volume, write_nifti

CONTEXT_BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "mri_slice_interpolation_context_cnn"


def test_offsets_and_mirrored_ends():
    assert neighbour_offsets(1) == [-1, 1] and neighbour_offsets(2) == [-3, -1, 1, 3]
    assert reflect_index([-3, -1, 0, 4, 6, 7], 5).tolist() == [3, 1, 0, 4, 2, 1]


def test_k1_is_unchanged_and_a_zero_initialised_k2_network_is_the_four_tap_filter():
    torch.manual_seed(0)
    x2 = torch.rand(3, 2, 16, 16)
    np.testing.assert_array_equal(ResidualInterpolationNet(channels=8, num_res_blocks=1)(x2).detach(), x2.mean(1, keepdim=True))
    x4 = torch.rand(3, 4, 16, 16)
    expected = (-x4[:, 0] + 9 * x4[:, 1] + 9 * x4[:, 2] - x4[:, 3]) / 16
    out = ResidualInterpolationNet(in_channels=4, channels=8, num_res_blocks=1)(x4).detach()
    torch.testing.assert_close(out[:, 0], expected)


def test_stacks_cut_from_a_hand_made_volume():
    n = 9
    vol = MetaTensor(torch.arange(n, dtype=torch.float32).view(1, 1, 1, n).expand(1, 40, 40, n).clone() / 10 + 0.1)
    pairs = SliceTriplets(context=2)(vol)  # odd targets 1, 3, 5, 7
    for (x, y), i in zip(pairs, (1, 3, 5, 7)):
        index = reflect_index([i - 3, i - 1, i + 1, i + 3], n)
        np.testing.assert_allclose(x[:, 0, 0].numpy(), index / 10 + 0.1, rtol=1e-6)
        assert float(y[0, 0, 0]) == np.float32(i / 10 + 0.1)
    x, y = RandSliceTriplet(patch_size=(16, 16), context=2).set_random_state(0)(vol)
    i = round(float(y[0, 0, 0]) * 10 - 1)
    assert x.shape == (4, 16, 16)
    np.testing.assert_allclose(x[:, 0, 0].numpy(), reflect_index([i - 3, i - 1, i + 1, i + 3], n) / 10 + 0.1, rtol=1e-6)


def test_the_end_gaps_of_a_five_slice_volume_are_predicted(tmp_path):
    net = ResidualInterpolationNet(in_channels=4)  # the bundle's network; zero last layer: the filter alone
    slices = smooth_volume((5, 12, 10), seed=3)
    out = NetworkPredictor(net)(slices)
    s = slices.astype(np.float64)
    mirrored = [s[1], *s, s[3]]  # index -1 -> 1, index 5 -> 3
    expected = [(-mirrored[j] + 9 * mirrored[j + 1] + 9 * mirrored[j + 2] - mirrored[j + 3]) / 16 for j in range(4)]
    np.testing.assert_allclose(out, np.stack(expected), rtol=1e-5)

    from misr_monai.interpolation import cubic_interpolate

    bundle = tmp_path / "bundle"  # the context bundle, untrained: the spline through all slices, ends included
    shutil.copytree(CONTEXT_BUNDLE / "configs", bundle / "configs")
    (bundle / "models").mkdir()
    untrained = ResidualInterpolationNet(in_channels=7, spline_skip=True, conditions=2)
    torch.save(untrained.state_dict(), bundle / "models" / "model.pt")
    out = cubic_interpolate(slices)
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 20.0]
    src = write_nifti(tmp_path / "five.nii.gz", np.moveaxis(slices, 0, 2), affine)
    assert main(["upsample", str(src), str(tmp_path / "x2.nii.gz"), "--model", str(bundle), "--precision", "fp32"]) == 0
    img = nib.load(str(tmp_path / "x2.nii.gz"))
    data = np.moveaxis(np.asanyarray(img.dataobj), 2, 0)
    assert data.shape[0] == 9
    np.testing.assert_allclose(data[1::2], out, rtol=1e-6)  # both end gaps predicted, none skipped
    np.testing.assert_array_equal(data[0::2], slices)
    world = img.affine @ np.array([0, 0, 8, 1])  # the last slice keeps its world position
    np.testing.assert_allclose(world[:3], affine[:3, 3] + [0, 0, 4 * 3.0])




def test_the_spline_skip_of_an_untrained_context_network_is_the_protocol_cubic_exactly():
    from misr_monai.interpolation import cubic_interpolate
    from misr_monai.volume import upsample_array

    volume = smooth_volume((11, 14, 12), seed=5) * 700 + 30
    for context in (2, 3):
        net = ResidualInterpolationNet(in_channels=2 * context + 1, channels=8, num_res_blocks=1, spline_skip=True)
        out = upsample_array(volume, 0, NetworkPredictor(net))  # the volume path, both end gaps included
        np.testing.assert_allclose(out, upsample_array(volume, 0, cubic_interpolate), rtol=1e-6, atol=1e-4)
        trained = ResidualInterpolationNet(in_channels=2 * context + 1, channels=8, num_res_blocks=1, spline_skip=True)
        torch.nn.init.normal_(trained.tail.conv.weight)
        assert np.abs(upsample_array(volume, 0, NetworkPredictor(trained)) - out).max() > 1  # the body does count


def test_the_training_spline_is_cubic_of_the_other_parity_on_every_axis():
    from misr_monai.interpolation import cubic_interpolate
    from misr_monai.transforms import SliceSpline

    data = np.random.default_rng(1).random((9, 10, 8)).astype(np.float32)
    spline = SliceSpline(random_axis=True)(MetaTensor(torch.from_numpy(data)[None])).numpy()
    for axis in range(3):
        stack, along = np.moveaxis(data, axis, 0), np.moveaxis(spline[axis], axis, 0)
        np.testing.assert_allclose(along[1:-1:2][: stack.shape[0] // 2], cubic_interpolate(stack[0::2]), rtol=1e-6)
        np.testing.assert_allclose(along[2:-1:2], cubic_interpolate(stack[1::2]), rtol=1e-6)
    vol = MetaTensor(torch.from_numpy(data)[None])
    vol.meta["slice_axis"] = 2
    sampler = RandSliceTriplet(patch_size=(6, 6), context=2).set_random_state(3)
    x, y = sampler(vol, spline=torch.from_numpy(spline))
    i, r0, c0 = sampler._corner
    assert x.shape == (5, 6, 6)
    np.testing.assert_array_equal(y[0].numpy(), data[r0 : r0 + 6, c0 : c0 + 6, i])
    np.testing.assert_array_equal(x[4].numpy(), spline[2][r0 : r0 + 6, c0 : c0 + 6, i])  # the spline at i, last channel
    pairs = SliceTriplets(context=2)(vol, spline=torch.from_numpy(spline))
    np.testing.assert_allclose(pairs[0][0][4].numpy(), cubic_interpolate(data[..., 0::2].transpose(2, 0, 1))[0], rtol=1e-6)


def test_one_training_iteration_of_the_context_bundle(synthetic, tmp_path):
    workflow = bundle_workflow(CONTEXT_BUNDLE, {
        "dataset_dir": str(synthetic / "data"), "datalist_file": str(synthetic / "datalist.json"),
        "output_dir": str(tmp_path), "ckpt_dir": str(tmp_path), "max_epochs": 1, "epoch_length": 1, "val_interval": 1,
        "cache_rate": 0.0, "patch_size": [32, 32], "channels": 8, "num_res_blocks": 1, "pretrained": "",
    })
    workflow.run()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    network = trainer.network
    assert trainer.state.iteration == 1 and network.head.conv.in_channels == 7 and network.spline_skip
    assert network.conditions == 2  # told the position and the slice profile
    assert np.isfinite(workflow.parser.get_parsed_content("validate#evaluator").state.metrics["val_psnr"])
    workflow.finalize()


def test_bundle_variants_differ_only_in_data_and_schedule():
    """A data variant (tests.conftest.DATA_VARIANTS, which the code tests skip) derives every config but its datalist
    from its base, and sets only its schedule, its label and its measured bf16 change."""
    import yaml

    from tests.conftest import DATA_VARIANTS, ROOT

    source = yaml.safe_load((ROOT / "configs" / "bundle_configs.yaml").read_text())
    allowed = {"max_epochs", "val_interval", "methods", "bf16_psnr_change_db"}
    for variant, base in DATA_VARIANTS.items():
        assert source[variant]["from"] == base
        assert set(source[variant]["files"]) == {"logging.conf", "inference.json", "evaluate.json", "train.json",
                                                 "multi_gpu_train.json", "multi_gpu_inference.json",
                                                 "multi_gpu_evaluate.json"}
        assert {k for values in source[variant]["files"].values() for k in values} <= allowed
