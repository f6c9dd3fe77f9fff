"""The SRGAN bundle on synthetic NIfTI files: a refinement of context_cnn (untrained: context_cnn exactly), a
discriminator that sees the slice in its context, the frozen base, resume, DDP (gloo), inference, the sharpness knob,
TorchScript export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events

from monai.bundle import ConfigParser
from monai.networks.nets import PatchDiscriminator
from monai.utils import AdversarialIterationEvents

from misr_monai.cli import main
from misr_monai.engines import SharpnessRatio
from misr_monai.io import InputError
from misr_monai.losses import DiscriminatorAdversarialLoss, GeneratorAdversarialLoss
from misr_monai.networks.nets import RefinedInterpolationNet, ResidualInterpolationNet
from misr_monai.predictors.registry import load_predictor
from tests.conftest import assert_ranks_split_data_and_agree, bundle_workflow, run_two_process_training, smooth_volume, write_nifti

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "mri_slice_interpolation_srgan"
TINY = {"base_channels": 8, "base_num_res_blocks": 1, "channels": 8, "num_res_blocks": 1,
        "discriminator_def#channels": 8}


def _context(channels=8, blocks=1, seed=1) -> ResidualInterpolationNet:
    torch.manual_seed(seed)
    net = ResidualInterpolationNet(in_channels=7, channels=channels, num_res_blocks=blocks, spline_skip=True, conditions=2)
    torch.nn.init.normal_(net.tail.conv.weight, std=0.05)
    return net


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny context_cnn checkpoint (non-zero tail) for the generator to refine."""
    path = tmp_path_factory.mktemp("base") / "base_model.pt"
    torch.save(_context().state_dict(), path)
    return path


def _overrides(root: Path, out: Path, base: Path, **extra) -> dict:
    return {
        "dataset_dir": str(root / "data"),
        "datalist_file": str(root / "datalist.json"),
        "output_dir": str(out),
        "ckpt_dir": str(out),
        "base_checkpoint": str(base),
        "pretrained": "",
        "max_epochs": 1,
        "epoch_length": 2,
        "val_interval": 1,
        "cache_rate": 0.0,
        "patch_size": [32, 32],
        **TINY,
        **extra,
    }


def _workflow(root, out, base, **extra):
    return bundle_workflow(BUNDLE, _overrides(root, out, base, **extra))


def test_untrained_generator_is_the_base_exactly_and_starts_from_its_features(tiny_base):
    base = _context()
    net = RefinedInterpolationNet(_context(), channels=8, num_res_blocks=1, init_from_base=True)
    x = torch.rand(2, 7, 24, 24)
    with torch.no_grad():
        assert torch.equal(net(x), base(x))
        torch.testing.assert_close(net.body(net.head(torch.cat([x, base(x)], 1))), base.body(base.head(x)))
    assert all(not p.requires_grad for p in net.base.parameters())
    assert {id(p) for p in net.trainable_parameters()} == {id(p) for n, p in net.named_parameters()
                                                           if not n.startswith("base.")}
    with pytest.raises(ValueError, match="strength"):
        RefinedInterpolationNet(base, strength=1.5)
    with pytest.raises(ValueError, match="width and depth"):
        RefinedInterpolationNet(base, channels=16, init_from_base=True)


def test_strength_blends_base_and_refinement():
    net = RefinedInterpolationNet(_context(), channels=8, num_res_blocks=1)
    torch.nn.init.normal_(net.tail.conv.weight, std=0.05)
    x = torch.rand(1, 7, 16, 16)
    with torch.no_grad():
        base, full = net.base(x), net(x)
        net.strength = 0.5
        torch.testing.assert_close(net(x), (base + full) / 2)
        net.strength = 0.0
        assert torch.equal(net(x), base)


def test_networks_and_losses_shapes(tiny_base):
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update({"base_checkpoint": str(tiny_base), **TINY})
    generator = parser.get_parsed_content("network_def")
    discriminator = parser.get_parsed_content("discriminator_def")
    assert isinstance(generator, RefinedInterpolationNet) and isinstance(discriminator, PatchDiscriminator)
    x = torch.rand(2, 7, 64, 64)
    fake = generator(x)
    assert fake.shape == (2, 1, 64, 64)
    logits = discriminator(torch.cat([x, fake], 1))  # the slice in its context: neighbours, t, w, spline, candidate
    assert isinstance(logits, list) and logits[-1].shape[:2] == (2, 1) and logits[-1].shape[2] > 1  # a patch map
    assert float(GeneratorAdversarialLoss(weight=0.5)([torch.ones(2, 1, 4, 4)])) == 0.0
    assert float(DiscriminatorAdversarialLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))) == pytest.approx(0.5)


def test_sharpness_metric_is_one_for_the_truth_and_falls_with_blur():
    label = torch.rand(3, 1, 16, 16)
    metric = SharpnessRatio()
    metric.update((label, label))
    assert metric.compute() == pytest.approx(1.0)
    metric.reset()
    blurred = torch.nn.functional.avg_pool2d(label, 3, stride=1, padding=1)
    metric.update(([b for b in blurred], [t for t in label]))
    assert metric.compute() < 0.6


def test_adversarial_iteration_judges_the_slice_in_context_and_keeps_the_base(synthetic, tmp_path, tiny_base):
    workflow = _workflow(synthetic, tmp_path, tiny_base)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    discriminator = workflow.parser.get_parsed_content("discriminator")
    generator = workflow.parser.get_parsed_content("network")
    base_before = {k: v.clone() for k, v in generator.base.state_dict().items()}
    seen = []
    discriminator.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    checked = []

    def reals_are_targets(engine):
        out = engine.state.output
        real_input = seen[-1]  # for the reals: the generator's input and the true slice's difference from the spline
        assert real_input.shape[1] == 8
        torch.testing.assert_close(real_input[:, :7], out["image"].float())
        torch.testing.assert_close(real_input[:, 7:], 10.0 * (out["label"].float() - out["image"][:, 6:7].float()))
        checked.append(engine.state.iteration)

    trainer.add_event_handler(AdversarialIterationEvents.DISCRIMINATOR_REALS_FORWARD_COMPLETED, reals_are_targets)
    workflow.run()
    assert checked == [1, 2]
    for key, value in generator.base.state_dict().items():  # frozen
        assert torch.equal(value, base_before[key]), key
    assert generator.tail.conv.weight.abs().sum() > 0  # the refinement trained
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    assert np.isfinite(evaluator.state.metrics["val_psnr"]) and evaluator.state.metrics["val_sharpness"] > 0
    assert (tmp_path / "checkpoint_epoch=1.pt").is_file() and (tmp_path / "model.pt").is_file()
    tags = set()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for events in tmp_path.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"loss_recon", "loss_g_adv", "loss_d", "d_real", "d_fake", "val_psnr", "val_sharpness"} <= tags
    workflow.finalize()

    resumed = _workflow(synthetic, tmp_path, tiny_base, max_epochs=2)
    trainer = resumed.parser.get_parsed_content("train#trainer")
    ran = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran.append(e.state.iteration))
    resumed.run()
    assert ran == [3, 4]  # continued after the saved state
    saved = torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)  # no pickled networks in it
    assert set(saved) == {"network", "discriminator", "g_optimizer", "d_optimizer", "lr_scheduler", "trainer", "versions"}
    model = RefinedInterpolationNet(_context(seed=5), channels=8, num_res_blocks=1)
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))  # base and refinement in one file
    for key, value in model.base.state_dict().items():
        assert torch.equal(value, base_before[key]), key
    resumed.finalize()


def test_unconditional_discriminator_sees_one_channel(synthetic, tmp_path, tiny_base):
    workflow = _workflow(synthetic, tmp_path, tiny_base, conditional=False, val_interval=5)
    discriminator = workflow.parser.get_parsed_content("discriminator")
    channels = []
    discriminator.register_forward_pre_hook(lambda module, args: channels.append(args[0].shape[1]))
    workflow.run()
    assert set(channels) == {1}
    workflow.finalize()


def test_two_process_gloo_training(synthetic, tmp_path, tiny_base):
    proc = run_two_process_training(BUNDLE, _overrides(synthetic, tmp_path, tiny_base), 29518)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "checkpoint_epoch=1.pt").is_file() and (tmp_path / "model.pt").is_file()
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)  # saved unwrapped from DDP
    assert_ranks_split_data_and_agree(tmp_path, "tail.conv.weight")


@pytest.fixture
def random_bundle(tmp_path):
    """A copy of the bundle's configs with random (non-trivial) weights of the shipped generator's shape."""
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE / "configs", bundle / "configs")
    (bundle / "models").mkdir()
    net = RefinedInterpolationNet(_context(64, 5))
    torch.nn.init.normal_(net.tail.conv.weight, std=0.01)
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    return bundle


def test_inference_config_matches_misr_upsample(random_bundle, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_nifti(inputs / "a.nii.gz", smooth_volume((32, 28, 6), dtype=np.int16))
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "inference",
         "--config_file", str(random_bundle / "configs" / "inference.json"), "--bundle_root", str(random_bundle),
         "--input_dir", str(inputs), "--output_dir", str(tmp_path / "bundle_out"), "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "cli.nii.gz"
    assert main(["upsample", str(inputs / "a.nii.gz"), str(out), "--model", str(random_bundle), "--device", "cpu"]) == 0
    a, b = nib.load(str(tmp_path / "bundle_out" / "a.nii.gz")), nib.load(str(out))
    np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
    np.testing.assert_array_equal(a.affine, b.affine)


def test_sharpness_knob_zero_is_the_base_and_is_checked(random_bundle, tmp_path):
    volume = smooth_volume((32, 28, 6))
    slices = np.moveaxis(volume, 2, 0)
    base = load_predictor(f"{random_bundle}@0")
    assert base.network.strength == 0.0
    full = load_predictor(str(random_bundle), sharpness=1.0)
    half = load_predictor(str(random_bundle), sharpness=0.5)
    b, f, h = base(slices), full(slices), half(slices)
    assert not np.allclose(b, f)
    np.testing.assert_allclose(h, (b + f) / 2, rtol=1e-4, atol=1e-3)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        load_predictor(str(random_bundle), sharpness=1.5)
    with pytest.raises(InputError, match="no sharpness knob"):
        load_predictor("context_cnn@0.5")
    src = tmp_path / "a.nii.gz"
    write_nifti(src, smooth_volume((32, 28, 6), dtype=np.int16))
    assert main(["upsample", str(src), str(tmp_path / "o.nii.gz"), "--model", "context_cnn", "--sharpness", "0.5"]) == 2


def test_srgan_short_name_loads_the_shipped_generator():
    if not (BUNDLE / "models" / "model.pt").is_file():
        pytest.skip("no shipped SRGAN weights")
    predictor = load_predictor("srgan")
    assert isinstance(predictor.network, RefinedInterpolationNet) and predictor.network.base.conditions == 2


def test_ckpt_export_torchscript_round_trip(random_bundle, tmp_path):
    ts = tmp_path / "model.ts"
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(ts),
         "--ckpt_file", str(random_bundle / "models" / "model.pt"),
         "--meta_file", str(random_bundle / "configs" / "metadata.json"),
         "--config_file", str(random_bundle / "configs" / "inference.json"), "--bundle_root", str(random_bundle)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    scripted = torch.jit.load(str(ts))
    sharpness = json.loads((random_bundle / "configs" / "inference.json").read_text())["sharpness"]
    net = RefinedInterpolationNet(_context(64, 5), strength=sharpness)  # the knob's default, exported with it
    net.load_state_dict(torch.load(random_bundle / "models" / "model.pt", weights_only=True))
    x = torch.rand(1, 7, 24, 24)
    torch.testing.assert_close(scripted(x), net.eval()(x))
