"""The Fast-DDPM bundle's configs on synthetic NIfTI files: train, 10-step validation, resume, DDP (gloo), seeded
inference with an uncertainty map."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events


from misr_monai.cli import main
from misr_monai.networks.schedulers import FAST_DDPM_TIMESTEPS
from tests.conftest import assert_ranks_split_data_and_agree, bundle_workflow, run_two_process_training, smooth_volume, tiny_fast_ddpm_bundle, write_nifti

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "mri_slice_interpolation_fast_ddpm"
TINY = {"network_def#channels": [8, 16, 16, 16], "network_def#num_head_channels": [0, 0, 0, 8],
        "network_def#norm_num_groups": 8}


def _overrides(root: Path, out: Path, **extra) -> dict:
    return {
        "dataset_dir": str(root / "data"),
        "pretrained": "",
        "datalist_file": str(root / "datalist.json"),
        "output_dir": str(out),
        "ckpt_dir": str(out),
        "max_epochs": 1,
        "epoch_length": 2,
        "val_interval": 1,
        "val_stride": 2,
        "batch_size": 2,
        "cache_rate": 0.0,
        "patch_size": [32, 32],
        **TINY,
        **extra,
    }


def _workflow(root, out, **extra):
    return bundle_workflow(BUNDLE, _overrides(root, out, **extra))


def test_train_iteration_validates_with_10_step_sampling_and_resumes(synthetic, tmp_path):
    workflow = _workflow(synthetic, tmp_path)
    network = workflow.parser.get_parsed_content("network")
    steps = []
    network.register_forward_pre_hook(lambda m, args, kwargs: steps.append(kwargs["timesteps"].reshape(-1).tolist()),
                                      with_kwargs=True)
    workflow.run()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    assert trainer.state.iteration == 2 and np.isfinite(evaluator.state.metrics["val_psnr"])
    train_steps, val_steps = steps[:2], steps[2:]
    assert all(set(s) <= set(FAST_DDPM_TIMESTEPS) for s in train_steps)
    assert [s[0] for s in val_steps[:10]] == sorted(FAST_DDPM_TIMESTEPS, reverse=True)  # one 10-step sampling
    assert len(val_steps) % 10 == 0
    assert (tmp_path / "checkpoint_epoch=1.pt").is_file() and (tmp_path / "model.pt").is_file()
    workflow.finalize()

    resumed = _workflow(synthetic, tmp_path, max_epochs=2, val_interval=5)
    trainer = resumed.parser.get_parsed_content("train#trainer")
    ran = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran.append(e.state.iteration))
    resumed.run()
    assert ran == [3, 4]
    saved = torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)
    assert set(saved) == {"network", "optimizer", "trainer", "versions", "best_model", "ema"}
    resumed.finalize()


def test_two_process_gloo_training(synthetic, tmp_path):
    proc = run_two_process_training(BUNDLE, _overrides(synthetic, tmp_path), 29519)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "checkpoint_epoch=1.pt").is_file() and (tmp_path / "model.pt").is_file()
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    assert_ranks_split_data_and_agree(tmp_path, "out.2.conv.weight")


@pytest.fixture
def random_bundle(tmp_path):
    return tiny_fast_ddpm_bundle(tmp_path / "bundle")


def test_seeded_inference_reproduces_and_writes_an_uncertainty_map(random_bundle, tmp_path):
    src = write_nifti(tmp_path / "a.nii.gz", smooth_volume((20, 18, 5)))
    outs = []
    for name, extra in [("one", []), ("two", []), ("k3", ["--samples", "3"]), ("seed", ["--seed", "7"])]:
        out = tmp_path / f"{name}.nii.gz"
        assert main(["upsample", str(src), str(out), "--model", str(random_bundle), "--device", "cpu", *extra]) == 0
        outs.append(np.asanyarray(nib.load(str(out)).dataobj))
    np.testing.assert_array_equal(outs[0], outs[1])  # bit for bit on CPU
    assert not np.array_equal(outs[0], outs[3])  # another seed, another draw
    std = nib.load(str(tmp_path / "k3_std.nii.gz"))
    out = nib.load(str(tmp_path / "k3.nii.gz"))
    np.testing.assert_array_equal(std.affine, out.affine)
    assert std.shape == out.shape == (20, 18, 9)
    spread = np.asanyarray(std.dataobj)
    assert (spread[..., 0::2] == 0).all() and (spread[..., 1::2] > 0).all()  # originals are certain
    assert not (tmp_path / "one_std.nii.gz").exists()
    # a deterministic model cannot give an uncertainty map: one line, exit code 2
    assert main(["upsample", str(src), str(tmp_path / "lin.nii.gz"), "--model", "linear", "--samples", "2"]) == 2
    assert not (tmp_path / "lin.nii.gz").exists()
    with pytest.raises(SystemExit) as exit_info:  # argparse: one usage line, exit code 2
        main(["upsample", str(src), str(tmp_path / "zero.nii.gz"), "--model", str(random_bundle), "--samples", "0"])
    assert exit_info.value.code == 2 and not (tmp_path / "zero.nii.gz").exists()


def test_inference_config_matches_misr_upsample(random_bundle, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_nifti(inputs / "a.nii.gz", smooth_volume((20, 18, 5), dtype=np.int16))
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "inference",
         "--config_file", str(random_bundle / "configs" / "inference.json"), "--bundle_root", str(random_bundle),
         "--input_dir", str(inputs), "--output_dir", str(tmp_path / "bundle_out"), "--device", "cpu",
         "--samples", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "cli.nii.gz"
    assert main(["upsample", str(inputs / "a.nii.gz"), str(out), "--model", str(random_bundle), "--device", "cpu",
                 "--samples", "2"]) == 0
    for bundle_file, cli_file in [("a.nii.gz", out), ("a_std.nii.gz", tmp_path / "cli_std.nii.gz")]:
        a, b = nib.load(str(tmp_path / "bundle_out" / bundle_file)), nib.load(str(cli_file))
        np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
        np.testing.assert_array_equal(a.affine, b.affine)


def test_uncertainty_study_writes_correlations_and_figures(random_bundle, synthetic, tmp_path):
    out = tmp_path / "unc"
    assert main(["uncertainty", "--datalist", str(synthetic / "datalist.json"), "--split", "validation", "--model",
                 str(random_bundle), "--dataset-dir", str(synthetic / "data"), "--samples", "2", "--slab", "2",
                 "--out", str(out), "--device", "cpu"]) == 0
    lines = (out / "uncertainty.csv").read_text().splitlines()
    assert lines[0].startswith("dataset,volume,samples") and len(lines) == 1 + 2 + 1  # 2 volumes and the pooled row
    r = float(lines[-1].split(",")[5])
    assert -1 <= r <= 1
    assert len(list(out.glob("*_uncertainty.png"))) == 2
    assert main(["uncertainty", "--datalist", str(synthetic / "datalist.json"), "--model", "linear",
                 "--dataset-dir", str(synthetic / "data"), "--out", str(out)]) == 2


def test_untrained_refiner_over_the_context_base_returns_context_cnn(tmp_path):
    """The bundle's sampler over its shipped base (release 0.7.0's x2 ``context_cnn``, ``models/base_model.pt``), with a
    refiner whose output convolution is zero (as DiffusionModelUNet initialises it), upsamples a volume exactly as that
    base network does."""
    from misr_monai.networks.nets import ResidualInterpolationNet
    from misr_monai.predictors.network import NetworkPredictor
    from misr_monai.predictors.registry import load_predictor

    bundle = tiny_fast_ddpm_bundle(tmp_path / "bundle")
    state = torch.load(bundle / "models" / "model.pt", weights_only=True)
    state = {k: torch.zeros_like(v) if k.startswith("out.2.") else v for k, v in state.items()}
    torch.save(state, bundle / "models" / "model.pt")
    slices = np.moveaxis(smooth_volume((40, 36, 9)), 2, 0).astype(np.float32)
    refined = load_predictor(str(bundle), samples=1)(slices)
    base = ResidualInterpolationNet(in_channels=5, spline_skip=True)
    base.load_state_dict(torch.load(bundle / "models" / "base_model.pt", weights_only=True))
    np.testing.assert_allclose(refined, NetworkPredictor(base)(slices), rtol=0, atol=1e-5 * float(slices.max()))


def test_calibrate_writes_the_fit_and_upsample_writes_the_calibrated_map(random_bundle, synthetic, tmp_path):
    """``misr calibrate --write`` stores (a, b) in the bundle's inference.json; ``misr upsample --samples K`` then
    writes sqrt((a s)^2 + (b std)^2), s the volume's intensity scale, where it wrote the raw std before."""
    import json

    from misr_monai.transforms.utils import percentile_scale_factor

    src = write_nifti(tmp_path / "a.nii.gz", smooth_volume((20, 18, 5)))
    args = ["--model", str(random_bundle), "--device", "cpu", "--samples", "3"]
    assert main(["upsample", str(src), str(tmp_path / "raw.nii.gz"), *args]) == 0
    assert main(["calibrate", "--datalist", str(synthetic / "datalist.json"), "--dataset-dir", str(synthetic / "data"),
                 "--write", "--fit", "gaussian", *args]) == 0
    a, b = json.loads((random_bundle / "configs" / "inference.json").read_text())["std_calibration"]
    assert a > 0 and b >= 0  # a random refiner's spread says little: the floor carries the errors
    assert main(["upsample", str(src), str(tmp_path / "cal.nii.gz"), *args]) == 0
    raw, cal = (np.asanyarray(nib.load(str(tmp_path / f"{n}_std.nii.gz")).dataobj) for n in ("raw", "cal"))
    scale = percentile_scale_factor(np.asanyarray(nib.load(str(src)).dataobj))
    np.testing.assert_allclose(cal[..., 1::2], np.sqrt((a * scale) ** 2 + (b * raw[..., 1::2]) ** 2), rtol=1e-5)
    assert (cal[..., 0::2] == 0).all()  # the acquired slices stay certain
    assert main(["calibrate", "--datalist", str(synthetic / "datalist.json"), "--dataset-dir", str(synthetic / "data"),
                 "--model", "linear"]) == 2
