"""The SRGAN bundle's configs on synthetic NIfTI files: warm start, adversarial iteration, resume, DDP (gloo),
inference, TorchScript export."""

from __future__ import annotations

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
from misr_monai.losses import DiscriminatorAdversarialLoss, GeneratorAdversarialLoss
from misr_monai.networks.nets import ResidualInterpolationNet
from tests.conftest import bundle_workflow, run_two_process_training, smooth_volume, write_nifti

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "mri_slice_interpolation_srgan"
TINY = {"network_def#channels": 8, "network_def#num_res_blocks": 3, "discriminator_def#channels": 8}


@pytest.fixture(scope="module")
def tiny_cnn(tmp_path_factory) -> Path:
    """A 1-block residual CNN checkpoint of the tiny width, to warm-start the tiny generator from."""
    torch.manual_seed(1)
    cnn = ResidualInterpolationNet(channels=8, num_res_blocks=1)
    torch.nn.init.normal_(cnn.tail.conv.weight, std=0.05)
    path = tmp_path_factory.mktemp("cnn") / "model.pt"
    torch.save(cnn.state_dict(), path)
    return path


def _overrides(root: Path, out: Path, cnn: Path, **extra) -> dict:
    return {
        "dataset_dir": str(root / "data"),
        "datalist_file": str(root / "datalist.json"),
        "output_dir": str(out),
        "ckpt_dir": str(out),
        "pretrained": str(cnn),
        "max_epochs": 1,
        "epoch_length": 2,
        "val_interval": 1,
        "cache_rate": 0.0,
        "patch_size": [32, 32],
        **TINY,
        **extra,
    }


def _workflow(root, out, cnn, **extra):
    return bundle_workflow(BUNDLE, _overrides(root, out, cnn, **extra))


def test_networks_and_losses_shapes():
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    generator = parser.get_parsed_content("network_def")
    discriminator = parser.get_parsed_content("discriminator_def")
    assert isinstance(discriminator, PatchDiscriminator) and len(generator.body) == 8
    x = torch.rand(2, 2, 64, 64)
    fake = generator(x)
    assert fake.shape == (2, 1, 64, 64)
    logits = discriminator(torch.cat([x, fake], 1))
    assert isinstance(logits, list) and logits[-1].shape[:2] == (2, 1) and logits[-1].shape[2] > 1  # a patch map
    assert float(GeneratorAdversarialLoss(weight=0.5)([torch.ones(2, 1, 4, 4)])) == 0.0
    assert float(DiscriminatorAdversarialLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))) == pytest.approx(0.5)


def test_warm_start_in_the_train_config_equals_the_cnn(synthetic, tmp_path, tiny_cnn):
    workflow = _workflow(synthetic, tmp_path, tiny_cnn)
    generator = workflow.parser.get_parsed_content("network_def").eval()
    cnn = ResidualInterpolationNet(channels=8, num_res_blocks=1).eval()
    cnn.load_state_dict(torch.load(tiny_cnn, weights_only=True))
    x = torch.rand(2, 2, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(generator(x), cnn(x))


def test_adversarial_iteration_uses_targets_as_reals_and_resumes(synthetic, tmp_path, tiny_cnn):
    workflow = _workflow(synthetic, tmp_path, tiny_cnn)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    discriminator = workflow.parser.get_parsed_content("discriminator")
    seen = []
    discriminator.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    checked = []

    def reals_are_targets(engine):
        out = engine.state.output
        real_input = seen[-1]  # the discriminator's input for the reals: condition + target slice
        assert real_input.shape[1] == 3
        torch.testing.assert_close(real_input[:, :2], out["image"].float())
        torch.testing.assert_close(real_input[:, 2:], out["label"].float())
        assert not torch.equal(out["label"], out["image"][:, :1])
        checked.append(engine.state.iteration)

    trainer.add_event_handler(AdversarialIterationEvents.DISCRIMINATOR_REALS_FORWARD_COMPLETED, reals_are_targets)
    workflow.run()
    assert checked == [1, 2]
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    assert np.isfinite(evaluator.state.metrics["val_psnr"])
    assert (tmp_path / "checkpoint_epoch=1.pt").is_file() and (tmp_path / "model.pt").is_file()
    tags = set()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for events in tmp_path.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"loss_recon", "loss_g_adv", "loss_d", "d_real", "d_fake", "val_psnr"} <= tags
    workflow.finalize()

    resumed = _workflow(synthetic, tmp_path, tiny_cnn, max_epochs=2)
    trainer = resumed.parser.get_parsed_content("train#trainer")
    ran = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran.append(e.state.iteration))
    resumed.run()
    assert ran == [3, 4]  # continued after the saved state
    saved = torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)  # no pickled networks in it
    assert set(saved) == {"network", "discriminator", "g_optimizer", "d_optimizer", "lr_scheduler", "trainer", "versions"}
    generator = ResidualInterpolationNet(channels=8, num_res_blocks=3)
    generator.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))  # the generator alone
    resumed.finalize()


def test_unconditional_discriminator_sees_one_channel(synthetic, tmp_path, tiny_cnn):
    workflow = _workflow(synthetic, tmp_path, tiny_cnn, conditional=False, val_interval=5)
    discriminator = workflow.parser.get_parsed_content("discriminator")
    channels = []
    discriminator.register_forward_pre_hook(lambda module, args: channels.append(args[0].shape[1]))
    workflow.run()
    assert set(channels) == {1}
    workflow.finalize()


def test_two_process_gloo_training(synthetic, tmp_path, tiny_cnn):
    proc = run_two_process_training(BUNDLE, _overrides(synthetic, tmp_path, tiny_cnn), 29518)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "checkpoint_epoch=1.pt").is_file() and (tmp_path / "model.pt").is_file()
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)  # saved unwrapped from DDP


@pytest.fixture
def random_bundle(tmp_path):
    """A copy of the bundle's configs with random (non-trivial) weights of the shipped generator."""
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE / "configs", bundle / "configs")
    (bundle / "models").mkdir()
    torch.manual_seed(0)
    net = ResidualInterpolationNet(num_res_blocks=8)
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


def test_srgan_short_name_loads_the_shipped_generator():
    from misr_monai.predictors.registry import load_predictor

    if not (BUNDLE / "models" / "model.pt").is_file():
        pytest.skip("no shipped SRGAN weights")
    predictor = load_predictor("srgan")
    assert len(predictor.network.body) == 8


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
    net = ResidualInterpolationNet(num_res_blocks=8)
    net.load_state_dict(torch.load(random_bundle / "models" / "model.pt", weights_only=True))
    x = torch.rand(1, 2, 24, 24)
    torch.testing.assert_close(scripted(x), net.eval()(x))
