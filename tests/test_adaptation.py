"""Self-supervised adaptation to the scan in hand: its pairs, its guard against getting worse, its honesty under the
protocol, and the commands that run it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from misr_monai.adaptation import (AdaptingPredictor, adapt_network, gap_pairs, in_plane_volume, scan_pairs,
                                   split_adapt, trainable_parameters)
from misr_monai.apps.evaluation import evaluate_volume
from misr_monai.cli import main
from misr_monai.io import InputError
from misr_monai.networks.nets import ResidualInterpolationNet
from misr_monai.predictors.network import NetworkPredictor
from misr_monai.volume import upsample_volume
from tests.conftest import SCHEMA, smooth_volume, write_nifti


def tiny_predictor(seed: int = 0) -> NetworkPredictor:
    torch.manual_seed(seed)
    net = ResidualInterpolationNet(in_channels=7, channels=8, num_res_blocks=1, spline_skip=True, conditions=2)
    return NetworkPredictor(net)


def test_gap_pairs_cut_the_protocol_pairs_and_hold_out_targets():
    vol = torch.arange(9.0).view(9, 1, 1).expand(9, 3, 3).contiguous()
    group = gap_pairs(vol, 2, 0.5, context=2, conditions=2, spline=True, source="through")
    # both phases: targets 1, 3, 5, 7 (kept 0, 2, 4...) and 2, 4, 6 (kept 1, 3, 5, 7)
    assert sorted(group.target.tolist()) == [1, 2, 3, 4, 5, 6, 7]
    assert set(group.train).isdisjoint(group.held_out) and group.held_out.size
    assert all(t % 4 == 1 for t in group.target[group.held_out])
    p = int(np.flatnonzero(group.target == 3)[0])
    x, y = group.inputs([p]), group.targets([p])
    assert x[0, :4, 0, 0].tolist() == [0.0, 2.0, 4.0, 6.0]  # the 2K kept neighbours of the gap (2, 4)
    assert x[0, 4:6, 0, 0].tolist() == [0.5, 0.5]  # t and the profile given
    assert float(x[0, 6, 0, 0]) == pytest.approx(3.0, abs=1e-5)  # the spline of a linear ramp is the ramp
    assert float(y[0, 0, 0, 0]) == 3.0 and 3 not in group.around[p]  # the target is never an input


def test_in_plane_volume_samples_lines_at_the_slice_spacing():
    stack = torch.arange(20.0).view(1, 1, 20).expand(3, 4, 20).contiguous()  # a ramp along columns
    pseudo = in_plane_volume(stack, 2, step=2.5, width=3.0)
    assert pseudo.shape == (8, 3, 4)  # positions 0, 2.5, ..., 17.5 become the slices
    np.testing.assert_allclose(pseudo[1:-1, 0, 0].numpy(), np.arange(1, 7) * 2.5, atol=1e-4)  # a box keeps a ramp
    assert in_plane_volume(stack, 2, step=0.5, width=1.0) is None  # finer than the pixels: no pairs


def test_scan_pairs_of_each_source():
    slices = smooth_volume((12, 30, 30)).astype(np.float32)
    groups = scan_pairs(slices, 3, 1.0, (3.0, 0.5, 0.5), context=2, conditions=2, spline=True)
    assert {g.source for g in groups} == {"through", "in_plane"}
    assert all(g.inputs(g.train[:2]).shape[1] == 7 for g in groups)
    assert {round(float(t), 3) for g in groups if g.source == "in_plane" for t in g.t} == {0.333, 0.667}
    assert [g.source for g in scan_pairs(slices, 3, 1.0, None, 2, 2, True)] == ["through"]  # no spacing: no in-plane
    with pytest.raises(InputError, match="unknown pair sources"):
        scan_pairs(slices, 2, 1.0, None, 2, 2, True, sources=("sideways",))


def test_adaptation_trains_only_its_layers_never_changes_the_original_and_keeps_it_without_a_gain():
    predictor = tiny_predictor()
    before = {k: v.clone() for k, v in predictor.network.state_dict().items()}
    slices = np.random.default_rng(0).uniform(0, 1, (10, 24, 24)).astype(np.float32)  # noise: nothing to learn
    groups = scan_pairs(slices, 2, 0.0, (2.0, 1.0, 1.0), 2, 2, True)
    adapted, report = adapt_network(predictor.network, groups, seconds=1.5, validations=3)
    for k, v in predictor.network.state_dict().items():
        assert torch.equal(v, before[k])  # the shipped network is never touched
    assert report["iterations"] > 0 and set(report["start_psnr"]) == {"through", "in_plane"}
    assert set(report["pairs"]) == {"through"}  # trained on through-plane pairs; in-plane ones only check
    if not report["adapted"]:  # no gain of MARGIN_DB on every source: the weights are the original's
        assert all(torch.equal(v, before[k]) for k, v in adapted.state_dict().items())
    frozen = [n for n, p in adapted.named_parameters() if not p.requires_grad]
    net = tiny_predictor().network
    chosen = trainable_parameters(net, ("tail.",))
    assert len(chosen) == 2 and all(p.requires_grad == (n.startswith("tail.")) for n, p in net.named_parameters())
    assert frozen  # the default layers: the last block and the tail; the head stays frozen


def test_adaptation_keeps_a_gain_that_both_kinds_of_pairs_confirm():
    """A network whose output is off by a constant learns it back from the through-plane pairs, and the in-plane
    pairs, never trained on, confirm the gain: the adapted weights are used."""
    predictor = tiny_predictor()
    torch.nn.init.zeros_(predictor.network.tail.conv.weight)
    torch.nn.init.constant_(predictor.network.tail.conv.bias, 0.2)
    slices = smooth_volume((12, 32, 32)).transpose(2, 0, 1)
    groups = scan_pairs(np.ascontiguousarray(slices), 2, 1.0, (4.0, 1.0, 1.0), 2, 2, True)
    adapted, report = adapt_network(predictor.network, groups, seconds=4, learning_rate=1e-2, validations=4)
    assert report["adapted"] and set(report["psnr"]) == {"through", "in_plane"}
    assert all(report["psnr"][s] > report["start_psnr"][s] + 1 for s in report["psnr"])
    _, alone = adapt_network(predictor.network, [g for g in groups if g.source == "through"], seconds=1)
    assert not alone["adapted"] and alone["iterations"] == 0  # nothing to check a gain on: nothing trained


def test_evaluation_adapts_on_the_kept_slices_only(monkeypatch):
    """Under the protocol the adapted model sees what upsample would: the kept slices, never a scored one."""
    truth = smooth_volume((20, 18, 13))
    seen = []

    def record(self, slices, spacing=None, factor=2, profile=None, thickness=None):
        seen.append((np.array(slices), spacing, factor, thickness))
        return self.predictor

    monkeypatch.setattr(AdaptingPredictor, "adapted_to", record)
    adapting = AdaptingPredictor(tiny_predictor(), 1.0, verbose=False)
    evaluate_volume(truth, 2, {"tiny:a1": adapting}, factor=3, spacing=(0.5, 0.5, 1.0))
    (slices, spacing, factor, thickness), = seen
    np.testing.assert_array_equal(slices, np.moveaxis(truth[:, :, ::3], 2, 0))  # exactly the kept slices
    assert spacing == (3.0, 0.5, 0.5) and factor == 3 and thickness == 1.0


def test_adapting_predictor_checks_and_names():
    with pytest.raises(InputError, match="network model"):
        AdaptingPredictor(lambda s: s, 10)
    with pytest.raises(InputError, match="positive"):
        AdaptingPredictor(tiny_predictor(), 0)
    assert split_adapt("context_cnn:a180") == ("context_cnn", 180.0)
    assert split_adapt("fast_ddpm:k8") == ("fast_ddpm:k8", None)
    adapting = AdaptingPredictor(tiny_predictor(), 0.5, verbose=False)
    out = upsample_volume(smooth_volume((16, 16, 6)), 2, adapting, 2, 1.0)  # called directly: through-plane pairs
    assert out.shape == (16, 16, 11) and len(adapting.reports) == 1


def test_cli_upsample_adapt_and_adapt_bundle(tmp_path, capsys):
    src = write_nifti(tmp_path / "scan.nii.gz", smooth_volume((40, 36, 9)), np.diag([0.5, 0.5, 3.0, 1.0]))
    assert main(["upsample", str(src), str(tmp_path / "out.nii.gz"), "--adapt", "2", "--batch-size", "2"]) == 0
    assert "PSNR of the checking pairs" in capsys.readouterr().out
    assert main(["upsample", str(src), str(tmp_path / "c.nii.gz"), "--model", "cubic", "--adapt", "2"]) == 2
    assert "network model" in capsys.readouterr().err
    out = tmp_path / "adapted_bundle"
    assert main(["adapt", str(src), "--out", str(out), "--seconds", "2"]) == 0
    report = json.loads((out / "docs" / "adaptation.json").read_text())
    assert report["scans"] == [str(src)] and (out / "models" / "model.ts").is_file()
    if SCHEMA.is_file():  # the Zoo's checks pass on the written bundle
        assert main(["zoo", "check", str(out), "--schema", str(SCHEMA)]) == 0
    assert main(["adapt", str(src), "--out", str(out), "--seconds", "2"]) == 2  # exists: not replaced
    assert main(["upsample", str(src), str(tmp_path / "b.nii.gz"), "--model", str(out)]) == 0


def test_a_scan_of_an_unfamiliar_kind_gets_one_line(tmp_path, capsys):
    import nibabel as nib

    from misr_monai.scan_kind import dicom_texts, unfamiliar_kind

    adc = write_nifti(tmp_path / "ProstateX-0000_ADC.nii.gz", smooth_volume())
    assert main(["upsample", str(adc), str(tmp_path / "o.nii.gz"), "--model", "cubic"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert len(lines) == 1 and "an ADC map" in lines[0] and "--adapt" in lines[0]
    img = nib.load(write_nifti(tmp_path / "scan.nii.gz", smooth_volume()))
    img.header["descrip"] = b"ep2d_perf DSC"
    nib.save(img, tmp_path / "perf.nii.gz")
    assert main(["upsample", str(tmp_path / "perf.nii.gz"), str(tmp_path / "p.nii.gz"), "--model", "cubic"]) == 0
    assert "a perfusion image" in capsys.readouterr().out
    assert main(["upsample", str(tmp_path / "scan.nii.gz"), str(tmp_path / "s.nii.gz"), "--model", "cubic"]) == 0
    assert "warning" not in capsys.readouterr().out  # a T1w or T2 scan: nothing said
    for familiar in ("sub-01_T1w", "T2W_TSE tra", "t1_mprage_sag", "FLAIR", "sub-03_inplaneT2"):
        assert unfamiliar_kind([familiar]) is None

    class Slice:
        ImageType = ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]
        SeriesDescription = "ep2d_diff_tra"

    assert unfamiliar_kind(dicom_texts(Slice()))[0] == "an ADC map"


def test_compare_and_evaluate_add_the_adapted_models_beside_the_others():
    from misr_monai.predictors.registry import with_adapted
    from misr_monai.predictors.registry import bundle_folder

    methods = ["linear", "cubic", "residual_cnn", "fast_ddpm:k1", "context_cnn"]
    assert with_adapted(methods, 30) == ["linear", "cubic", "residual_cnn", "residual_cnn:a30", "fast_ddpm:k1",
                                         "context_cnn", "context_cnn:a30"]  # not the sampler, not the baselines
    assert with_adapted(methods, None) == methods
    assert bundle_folder("context_cnn:a30") == bundle_folder("context_cnn")


def test_an_adapted_bundle_says_so_in_its_metadata(tmp_path):
    from misr_monai.apps.adaptation import _describe_adapted
    from tests.conftest import ROOT

    path = tmp_path / "metadata.json"
    path.write_text((ROOT / "bundles" / "mri_slice_interpolation_context_cnn" / "configs" / "metadata.json").read_text())
    _describe_adapted(path, {"scans": ["a.nii.gz", "b.nii.gz"], "seconds": 179.6})
    metadata = json.loads(path.read_text())
    assert "eval_metrics" not in metadata and metadata["description"].endswith("to 2 scan(s) for 180 s (docs/adaptation.json).")


def test_a_midpoint_network_adapts_on_factor_two_pairs():
    """A network of residual_cnn's kind (two neighbours, no conditions, no spline) gets pairs of its own shape."""
    torch.manual_seed(0)
    predictor = NetworkPredictor(ResidualInterpolationNet(in_channels=2, channels=8, num_res_blocks=1))
    adapting = AdaptingPredictor(predictor, 1.0, verbose=False)
    slices = smooth_volume((10, 24, 24))
    groups = adapting.pairs(slices, (4.0, 1.0, 1.0), 4, 1.0)  # x4 by x2 passes: factor-2 pairs
    assert {g.source for g in groups} == {"through", "in_plane"}
    assert all(g.inputs(g.train[:1]).shape[1] == 2 and set(np.round(g.t, 3)) == {0.5} for g in groups)
    adapted = adapting.adapted_to(slices, (4.0, 1.0, 1.0), 2, 1.0)
    assert adapting.reports[-1]["iterations"] > 0 and adapted(slices).shape == (9, 24, 24)
