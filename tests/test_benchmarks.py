"""Speed levers and their guards: MAC counting, precision choice, channels-last and bounded batches, the benchmark."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import misr_monai.precision as precision_module
import misr_monai.predictors.network as predictors
from misr_monai.apps.benchmarks import run_benchmarks
from misr_monai.apps.costs import count_macs
from misr_monai.cli import main
from misr_monai.precision import resolve_precision
from misr_monai.predictors.network import NetworkPredictor
from misr_monai.io import InputError
from misr_monai.networks.nets import ResidualInterpolationNet
from misr_monai.transforms.utils import percentile_scale_factor
from tests.conftest import smooth_volume, write_nifti


class _TwoConvs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.second = torch.nn.Conv2d(4, 1, 1)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


def test_mac_counter_against_a_hand_count():
    params, macs = count_macs(NetworkPredictor(_TwoConvs()))
    assert params == (2 * 4 * 9 + 4) + (4 * 1 + 1)
    assert macs == 2 * 4 * 9 + 4 * 1  # per output pixel: 3x3 conv 2->4, then 1x1 conv 4->1 (biases are adds only)
    _, cnn = count_macs(NetworkPredictor(ResidualInterpolationNet()))
    assert cnn == 2 * 64 * 9 + 10 * 64 * 64 * 9 + 64 * 9  # head, 5 blocks of two convs, tail


def test_precision_choices_and_a_cpu_without_bf16(monkeypatch):
    assert resolve_precision("fp32") == "fp32"
    with pytest.raises(InputError, match="one of fp32, bf16, auto"):
        resolve_precision("fp16")
    monkeypatch.setattr(precision_module, "native_bf16", lambda device="cpu": True)
    assert resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto", bf16_psnr_change_db=-0.002) == "bf16"
    assert resolve_precision("auto", bf16_psnr_change_db=0.05) == "fp32"  # measured too large a change
    assert resolve_precision("auto") == "fp32"  # never measured
    monkeypatch.setattr(precision_module, "native_bf16", lambda device="cpu": False)
    assert resolve_precision("auto", bf16_psnr_change_db=0.0) == "fp32"
    with pytest.raises(InputError, match="no native bfloat16"):
        resolve_precision("bf16")


def test_precision_option_on_the_command_line(tmp_path, monkeypatch, capsys):
    src = write_nifti(tmp_path / "a.nii.gz", smooth_volume((24, 20, 5)))
    monkeypatch.setattr(precision_module, "native_bf16", lambda device="cpu": False)
    assert main(["upsample", str(src), str(tmp_path / "b.nii.gz"), "--precision", "bf16", "--device", "cpu"]) == 2
    assert "no native bfloat16" in capsys.readouterr().err and not (tmp_path / "b.nii.gz").exists()
    assert main(["upsample", str(src), str(tmp_path / "c.nii.gz"), "--precision", "auto", "--device", "cpu"]) == 0


def test_channels_last_and_bf16_match_fp32_nchw():
    torch.manual_seed(0)
    net = ResidualInterpolationNet(channels=16, num_res_blocks=2)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    slices = smooth_volume((6, 40, 36))
    scale = percentile_scale_factor(slices)
    x = torch.from_numpy(slices) / scale
    with torch.inference_mode():
        reference = (net(torch.stack([x[:-1], x[1:]], 1)) * scale).numpy()[:, 0]
    fast = NetworkPredictor(net)(slices)  # channels-last on CPU
    np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-4 * scale)
    if precision_module.native_bf16():
        bf16 = NetworkPredictor(net, precision="bf16")(slices)
        # bf16 keeps 8 bits of mantissa: the network's convolutions round (measured: at most 0.12% of the scale), while
        # the slices and the skip stay float32 (rounding the slices to bf16 too: 0.32%, measured)
        assert 0 < np.abs(bf16 - reference).max() < 0.003 * scale


def test_batches_are_bounded_by_pixels_not_batch_size(monkeypatch):
    seen = []

    def network(pairs):
        seen.append(pairs.shape[0])
        return pairs.mean(1, keepdim=True)

    monkeypatch.setitem(predictors.BATCH_PIXELS, "cpu", 3 * 16 * 16)
    out = NetworkPredictor(network, batch_size=64)(smooth_volume((9, 16, 16)))
    assert seen == [3, 3, 2] and out.shape == (8, 16, 16)


def test_percentile_scale_is_exact_and_reads_strided_views():
    volume = smooth_volume((12, 30, 20), seed=4)
    volume[volume < 450] = 0
    expected = float(np.percentile(volume[volume != 0].astype(np.float64), 99.5))
    assert percentile_scale_factor(volume) == expected
    view = np.moveaxis(volume, 2, 0)[::2]
    assert percentile_scale_factor(view) == float(np.percentile(view[view != 0].astype(np.float64), 99.5))


def test_benchmark_prints_ratios_to_the_same_run_ceiling(capsys):
    report = run_benchmarks(["linear", "residual_cnn"], shape=(32, 32, 6))
    out = capsys.readouterr().out
    assert "ceilings (2048x2048 matmul, same run): fp32" in out and "/fp32 ceil" in out
    linear, cnn = report["results"]
    assert linear["macs_per_s"] == 0 and cnn["macs_per_voxel"] == pytest.approx(370368)
    assert 0 < cnn["ratio_fp32"] < 5 and cnn["peak_mib"] > 0 and report["ceilings"]["fp32"] > 1e8


def test_data_wait_handler_measures_the_share_spent_fetching():
    import time

    from ignite.engine import Engine

    from misr_monai.engines import DataWaitHandler

    def slow_batches():
        for _ in range(4):
            time.sleep(0.03)
            yield 0

    engine = Engine(lambda e, batch: time.sleep(0.01))
    DataWaitHandler().attach(engine)
    engine.run(slow_batches(), max_epochs=1, epoch_length=4)
    assert 0.5 < engine.state.metrics["data_wait_share"] < 0.95
    assert 10 < engine.state.metrics["iterations_per_s"] < 30


def test_auto_precision_follows_the_bundles_measured_change(monkeypatch):
    from misr_monai.predictors.registry import load_predictor

    monkeypatch.setattr(precision_module, "native_bf16", lambda device="cpu": True)
    assert load_predictor("residual_cnn", precision="auto").precision == "bf16"  # measured -0.0024 dB
    assert load_predictor("residual_cnn").precision == "fp32"  # the API's default stays fp32
    monkeypatch.setattr(precision_module, "native_bf16", lambda device="cpu": False)
    assert load_predictor("residual_cnn", precision="auto").precision == "fp32"


def test_auto_precision_takes_bf16_only_where_it_was_measured_faster(monkeypatch):
    monkeypatch.setattr(precision_module, "native_bf16", lambda device="cpu": True)
    assert precision_module.resolve_precision("auto", "cpu", -0.001, ["cpu"]) == "bf16"
    assert precision_module.resolve_precision("auto", "cuda", -0.001, ["cpu"]) == "fp32"  # fast_ddpm on a GPU
    assert precision_module.resolve_precision("auto", "cuda", -0.001, None) == "bf16"
    assert precision_module.resolve_precision("bf16", "cuda", -0.001, ["cpu"]) == "bf16"  # asked for: given
