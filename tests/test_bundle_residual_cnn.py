"""The residual CNN bundle's configs on synthetic NIfTI files: train, validate, resume, DDP (gloo), inference, export."""

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

from misr_monai.cli import main
from misr_monai.networks.nets import ResidualInterpolationNet
from tests.conftest import assert_ranks_split_data_and_agree, bundle_workflow, run_two_process_training, smooth_volume, write_nifti

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "mri_slice_interpolation_residual_cnn"
TINY = {"network_def#channels": 8, "network_def#num_res_blocks": 1}

def _train_overrides(root: Path, out: Path, **extra) -> dict:
    return {
        "dataset_dir": str(root / "data"),
        "pretrained": "",
        "datalist_file": str(root / "datalist.json"),
        "output_dir": str(out),
        "ckpt_dir": str(out),
        "max_epochs": 1,
        "epoch_length": 2,
        "val_interval": 1,
        "cache_rate": 0.0,
        "patch_size": [32, 32],
        **TINY,
        **extra,
    }

def _workflow(root, out, **extra):
    return bundle_workflow(BUNDLE, _train_overrides(root, out, **extra))

def test_train_one_epoch_validates_and_resumes(synthetic, tmp_path):
    workflow = _workflow(synthetic, tmp_path)
    workflow.run()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    assert trainer.state.iteration == 2 and np.isfinite(evaluator.state.metrics["val_psnr"])
    assert (tmp_path / "checkpoint_epoch=1.pt").is_file() and (tmp_path / "model.pt").is_file()
    assert list(tmp_path.glob("events.out.tfevents.*"))
    workflow.finalize()

    resumed = _workflow(synthetic, tmp_path, max_epochs=2)
    trainer = resumed.parser.get_parsed_content("train#trainer")
    ran = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran.append(e.state.iteration))
    resumed.run()
    assert ran == [3, 4]  # continued after the saved state, did not start over
    assert (tmp_path / "checkpoint_epoch=2.pt").is_file()
    saved = torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)
    assert set(saved) == {"network", "optimizer", "lr_scheduler", "trainer", "versions", "best_model"}
    resumed.finalize()

def test_two_process_gloo_training(synthetic, tmp_path):
    proc = run_two_process_training(BUNDLE, _train_overrides(synthetic, tmp_path), 29517)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "checkpoint_epoch=1.pt").is_file() and (tmp_path / "model.pt").is_file()
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)  # saved unwrapped from DDP
    assert_ranks_split_data_and_agree(tmp_path, "tail.conv.weight")

@pytest.fixture
def random_bundle(tmp_path):
    """A copy of the bundle's configs with random (non-trivial) weights of the shipped architecture."""
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE / "configs", bundle / "configs")
    (bundle / "models").mkdir()
    torch.manual_seed(0)
    net = ResidualInterpolationNet()
    torch.nn.init.normal_(net.tail.conv.weight, std=0.01)
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    return bundle

def test_inference_config_matches_misr_upsample(random_bundle, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_nifti(inputs / "a.nii.gz", smooth_volume((32, 28, 6), dtype=np.int16))
    write_nifti(inputs / "b.nii", smooth_volume((20, 24, 5), seed=3))
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "inference",
         "--config_file", str(random_bundle / "configs" / "inference.json"), "--bundle_root", str(random_bundle),
         "--input_dir", str(inputs), "--output_dir", str(tmp_path / "bundle_out"), "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tmp_path / "cli_out").mkdir()
    for name in ("a.nii.gz", "b.nii"):
        assert main(["upsample", str(inputs / name), str(tmp_path / "cli_out" / name), "--model", str(random_bundle),
                     "--device", "cpu"]) == 0
        a = nib.load(str(tmp_path / "bundle_out" / name))
        b = nib.load(str(tmp_path / "cli_out" / name))
        np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))  # voxel for voxel
        np.testing.assert_array_equal(a.affine, b.affine)
    # another batch size changes oneDNN's kernels: equal to float32 rounding
    assert main(["upsample", str(inputs / "b.nii"), str(tmp_path / "b3.nii"), "--model", str(random_bundle),
                 "--device", "cpu", "--batch-size", "3"]) == 0
    np.testing.assert_allclose(np.asanyarray(nib.load(str(tmp_path / "b3.nii")).dataobj), np.asanyarray(b.dataobj),
                               rtol=1e-6)
    linear = tmp_path / "linear.nii.gz"
    main(["upsample", str(inputs / "b.nii"), str(linear), "--model", "linear"])
    assert not np.array_equal(np.asanyarray(nib.load(str(linear)).dataobj), np.asanyarray(b.dataobj))

def test_evaluate_config_writes_the_protocol_table(random_bundle, synthetic, tmp_path):
    configs = f"['{random_bundle / 'configs' / 'inference.json'}','{random_bundle / 'configs' / 'evaluate.json'}']"
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "evaluate", "--config_file", configs,
         "--bundle_root", str(random_bundle), "--dataset_dir", str(synthetic / "data"),
         "--datalist_file", str(synthetic / "datalist.json"), "--output_dir", str(tmp_path / "eval"), "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = (tmp_path / "eval" / "summary.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in summary[1:]] == ["linear", "cubic", "residual_cnn"]

def test_ckpt_export_torchscript(random_bundle, tmp_path):
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
    net = ResidualInterpolationNet()
    net.load_state_dict(torch.load(random_bundle / "models" / "model.pt", weights_only=True))
    x = torch.rand(1, 2, 24, 24)
    torch.testing.assert_close(scripted(x), net.eval()(x))

def test_bundle_without_weights_is_a_one_line_error(random_bundle):
    from misr_monai.predictors.registry import load_predictor
    from misr_monai.io import InputError

    (random_bundle / "models" / "model.pt").unlink()
    with pytest.raises(InputError, match="no weights"):
        load_predictor(str(random_bundle))


def test_training_starts_from_pretrained_weights(synthetic, tmp_path):
    """``pretrained`` (default: the shipped weights) is loaded before training; weights of another shape: one line."""
    from misr_monai.io import InputError

    torch.manual_seed(3)
    start = ResidualInterpolationNet(channels=8, num_res_blocks=1)
    torch.nn.init.normal_(start.tail.conv.weight, std=0.05)
    torch.save(start.state_dict(), tmp_path / "start.pt")
    workflow = _workflow(synthetic, tmp_path / "out", pretrained=str(tmp_path / "start.pt"))
    network = workflow.parser.get_parsed_content("network")
    assert all(torch.equal(a, b) for a, b in zip(network.state_dict().values(), start.state_dict().values()))
    workflow.finalize()

    torch.save(ResidualInterpolationNet(channels=16, num_res_blocks=1).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(Exception) as raised:
        _workflow(synthetic, tmp_path / "out2", pretrained=str(tmp_path / "wide.pt"))
    cause = raised.value
    while cause is not None and not isinstance(cause, InputError):
        cause = cause.__cause__ or cause.__context__
    assert cause is not None and "wide.pt: the weights do not fit the network" in str(cause)
