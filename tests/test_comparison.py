"""``misr compare`` end to end on synthetic volumes, its paired statistics, resumption and the panels' orientation."""

from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

import misr_monai.apps.comparison as comparison
import misr_monai.apps.figures as figures
from misr_monai.cli import main
from misr_monai.apps.comparison import load_experiment, paired_statistics
from misr_monai.apps.figures import display_plane
from tests.conftest import ROOT, tiny_fast_ddpm_bundle

METRIC_COLUMNS = ("slices", "psnr", "psnr_fg", "ssim", "mae", "mse", "edge_ratio", "tp_ratio")


@pytest.fixture(scope="module")
def experiment(synthetic, tmp_path_factory):
    """An experiment file over the synthetic validation split: two baselines and a tiny Fast-DDPM bundle."""
    root = tmp_path_factory.mktemp("compare")
    bundle = tiny_fast_ddpm_bundle(root / "bundle")
    config = root / "comparison.yaml"
    config.write_text(
        f"dataset_dir: {synthetic / 'data'}\n"
        "datasets:\n"
        f"  brain: {{datalist: {synthetic / 'datalist.json'}, split: validation, dataset_dir: '@dataset_dir'}}\n"
        f"methods: [linear, cubic, {bundle}]\n"
        "uncertainty_samples: 2\n"
        "bootstrap_resamples: 200\n"
        "figures:\n"
        "  - {dataset: brain, volume: brain/sub-2_T1w.nii.gz, slice_index: null}\n"
    )
    return config, bundle


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_compare_writes_the_report_and_equals_evaluate(experiment, synthetic, tmp_path):
    config, bundle = experiment
    out = tmp_path / "results"
    assert main(["compare", str(config), "--out", str(out), "--device", "cpu"]) == 0
    stem = "brain_sub-2_T1w"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert f"{stem}_slice.png" in pngs and f"{stem}_reformat.png" in pngs and "gain_psnr.png" in pngs
    assert any(p.endswith("_uncertainty.png") for p in pngs)
    report = (out / "report.md").read_text()
    assert "| method | volumes | psnr" in report and "sha256" in report and "<table>" in (out / "report.html").read_text()
    summary = _csv(out / "summary.csv")
    network = next(r for r in summary if r["method"] == str(bundle))
    assert int(network["params"]) > 0 and float(network["macs_per_voxel"]) > 0
    assert float(next(r for r in summary if r["method"] == "cubic")["macs_per_voxel"]) == 0

    evaluated = tmp_path / "evaluated"
    assert main(["evaluate", "--datalist", str(synthetic / "datalist.json"), "--split", "validation", "--methods",
                 str(bundle), "--dataset-dir", str(synthetic / "data"), "--out", str(evaluated), "--no-figures",
                 "--device", "cpu"]) == 0
    ours = {(r["volume"], r["method"]): r for r in _csv(out / "per_volume.csv")}
    theirs = {(r["volume"], r["method"]): r for r in _csv(evaluated / "per_volume.csv")}
    assert ours.keys() == theirs.keys() and len(ours) == 6
    for key, row in theirs.items():
        assert {c: ours[key][c] for c in METRIC_COLUMNS} == {c: row[c] for c in METRIC_COLUMNS}  # every digit


def test_a_sampling_model_gets_one_row_per_k_and_calibration_at_k_above_1(experiment, tmp_path):
    config, bundle = experiment
    out = tmp_path / "k"
    assert main(["compare", str(config), "--out", str(out), "--methods", f"['{bundle}:k1', '{bundle}:k2']",
                 "--figures", "[]"]) == 0
    summary = {r["method"]: r for r in _csv(out / "summary.csv")}
    assert set(summary) == {"linear", "cubic", f"{bundle}:k1", f"{bundle}:k2"}
    one, two = summary[f"{bundle}:k1"], summary[f"{bundle}:k2"]
    assert one["coverage_2std"] == "nan" and summary["cubic"]["coverage_2std"] == "nan"  # no spread, no calibration
    assert 0 <= float(two["coverage_2std"]) <= 1 and -1 <= float(two["spearman_std"]) <= 1
    assert one["psnr"] != two["psnr"]  # one sample against the mean of two
    assert "coverage_2std" in (out / "summary.md").read_text()
    assert main(["compare", str(config), "--out", str(out), "--methods", f"['{bundle}:k1', '{bundle}:k2']"]) == 0
    assert (out / f"calibration_{comparison._file_name(str(bundle))}_k2.png").is_file()  # the figure of K > 1 only
    assert not (out / f"calibration_{comparison._file_name(str(bundle))}_k1.png").exists()


def test_a_recalibrated_sampler_is_rescored_and_drawn_before_and_after(experiment, tmp_path, monkeypatch):
    """Writing a bundle's std_calibration rescores the cached rows' drawn voxels with it, without sampling again,
    and the calibration figure draws it."""
    from misr_monai.predictors.registry import write_calibration

    config, bundle = experiment
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    config_file = copy / "configs" / "inference.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "std_calibration": None}))
    out = tmp_path / "cal"
    args = ["compare", str(config), "--out", str(out), "--methods", f"['{copy}:k2']", "--figures", "[]"]
    assert main(args) == 0
    raw = {r["method"]: r for r in _csv(out / "summary.csv")}[f"{copy}:k2"]
    assert raw["coverage_2std_cal"] == "nan"
    write_calibration(copy, 0.5, 1.0)  # a floor of half the intensity range: every error within 2 std
    monkeypatch.setattr(comparison, "evaluate_volume", None)  # nothing is sampled again
    drawn, draw = [], figures.calibration_figure
    monkeypatch.setattr(figures, "calibration_figure", lambda *a, **k: drawn.append(k["calibration"]) or draw(*a, **k))
    assert main(args) == 0
    cal = {r["method"]: r for r in _csv(out / "summary.csv")}[f"{copy}:k2"]
    assert float(cal["coverage_2std_cal"]) == 1.0 and cal["coverage_2std"] == raw["coverage_2std"]
    assert drawn == [(0.5, 1.0)]


def test_overrides_reach_nested_keys(experiment, tmp_path, capsys):
    config, _ = experiment
    resolved = load_experiment(config, {"methods": ["linear"], "datasets#brain#split": "test", "samples": 3})
    assert resolved["methods"] == ["linear"] and resolved["datasets"]["brain"]["split"] == "test"
    assert resolved["samples"] == 3
    out = tmp_path / "quick"
    assert main(["compare", str(config), "--out", str(out), "--methods", "[cubic]", "--figures", "[]"]) == 0
    assert {r["method"] for r in _csv(out / "summary.csv")} == {"linear", "cubic"}
    with pytest.raises(SystemExit):
        main(["compare", str(config), "--out", str(out), "--methods"])  # an override without a value
    assert main(["compare", str(tmp_path / "missing.yaml"), "--out", str(out)]) == 2
    assert "missing.yaml: experiment config not found." in capsys.readouterr().err


def test_a_killed_run_resumes_without_recomputing(experiment, tmp_path, monkeypatch):
    config, _ = experiment
    out = tmp_path / "results"
    calls = []
    evaluate_volume = comparison.evaluate_volume

    def counted(truth, axis, predictors, *protocol, **options):
        calls.append(next(iter(predictors)))
        if len(calls) == 5:
            raise KeyboardInterrupt  # killed while the second volume's second method runs
        return evaluate_volume(truth, axis, predictors, *protocol, **options)

    monkeypatch.setattr(comparison, "evaluate_volume", counted)
    assert main(["compare", str(config), "--out", str(out), "--figures", "[]"]) == 130
    assert len(list((out / "cache").rglob("*.json"))) == 4  # 3 + 1 finished results; nothing partial
    calls.clear()
    assert main(["compare", str(config), "--out", str(out), "--figures", "[]"]) == 0
    assert len(calls) == 2  # only the two missing results were computed
    calls.clear()
    assert main(["compare", str(config), "--out", str(out), "--figures", "[]", "--seed", "5"]) == 0
    assert len(calls) == 2  # a new seed invalidates the network's two results only


def test_paired_statistics_verdicts():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        base = 30 + rng.normal()
        rows += [{"dataset": "d", "volume": f"v{i}", "method": "cubic", "psnr": base, "mae": 0.02},
                 {"dataset": "d", "volume": f"v{i}", "method": "a", "psnr": base + 1 + 0.1 * rng.normal(), "mae": 0.03},
                 {"dataset": "d", "volume": f"v{i}", "method": "b", "psnr": base + 0.1 * rng.normal(), "mae": 0.02 + 1e-4 * i}]
    out = {(p["dataset"], p["metric"], p["method"], p["versus"]): p for p in
           paired_statistics(rows, ["linear", "cubic", "a", "b"], ["psnr", "mae"], resamples=500)}
    psnr = out["d", "psnr", "a", "cubic"]
    assert psnr["ci_low"] < psnr["mean_diff"] < psnr["ci_high"] and psnr["ci_low"] > 0.8
    assert psnr["verdict"] == "a better" and psnr["wilcoxon_p"] < 0.01
    assert out["d", "mae", "a", "cubic"]["verdict"] == "cubic better"  # lower MAE wins
    assert out["d", "psnr", "a", "b"]["verdict"] == "a better"
    assert out["d", "psnr", "b", "cubic"]["verdict"] == "no clear difference"
    few = paired_statistics(rows[:9], ["cubic", "a"], ["psnr"], resamples=100)
    assert few[0]["volumes"] == 3 and few[0]["verdict"].startswith("n < 6")


@pytest.mark.parametrize("codes", [("R", "A", "S"), ("L", "P", "S"), ("S", "R", "A"), ("P", "I", "L"), ("A", "S", "R")])
def test_panels_are_displayed_in_the_radiological_convention(codes):
    ras = np.zeros((6, 7, 8), np.float32)
    ras[-1, -1, -1] = 1  # the patient's right, anterior, superior corner
    img = nib.Nifti1Image(ras, np.diag([1.0, 2.0, 3.0, 1.0]))
    stored = img.as_reoriented(nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")),
                                                               nib.orientations.axcodes2ornt(codes)))
    data, affine = np.asanyarray(stored.dataobj), stored.affine
    assert nib.aff2axcodes(affine) == codes
    marker = np.argwhere(data == 1)[0]
    expected = {"sagittal": 3 / 2, "coronal": 3 / 1, "axial": 2 / 1}
    for axis in range(3):
        image, aspect, plane = display_plane(data, affine, axis, marker[axis])
        # axial: anterior up, patient's right on the left; coronal: superior up, right on the left;
        # sagittal: superior up, anterior on the left: the corner is the image's top-left pixel in every plane
        assert image[0, 0] == 1 and image.sum() == 1, (codes, plane)
        assert aspect == pytest.approx(expected[plane])


def test_compare_at_factor_three_thick_leaves_out_a_midpoint_model_and_writes_positions(experiment, tmp_path, capsys):
    config, bundle = experiment
    out = tmp_path / "x3"
    assert main(["compare", str(config), "--out", str(out), "--factor", "3", "--thick", "true"]) == 0
    assert f"{bundle}: cannot give x3" in capsys.readouterr().out  # one line; the rest compared
    summary = _csv(out / "summary.csv")
    assert {r["method"] for r in summary} == {"linear", "cubic"}
    positions = _csv(out / "positions.csv")
    assert [r["position"] for r in positions if r["method"] == "cubic"] == ["1/3", "2/3"]
    thin = tmp_path / "x3_thin"
    assert main(["compare", str(config), "--out", str(thin), "--factor", "3"]) == 0
    cubic = {p: next(r for r in _csv(p / "summary.csv") if r["method"] == "cubic") for p in (out, thin)}
    assert cubic[out]["slices"] == cubic[thin]["slices"]  # the same slices scored,
    assert float(cubic[out]["psnr"]) != float(cubic[thin]["psnr"])  # against another truth (the thick one)


def test_cached_results_of_a_refinement_model_depend_on_its_sharpness(tmp_path):
    """A cached srgan row is keyed by the sharpness it ran at: the name's (srgan@0.5) or, for the bare name, its
    bundle's default, so a changed default is recomputed rather than reused."""
    import json
    import shutil

    from misr_monai.apps.comparison import _Methods

    bundle = tmp_path / "srgan"
    shutil.copytree(ROOT / "bundles" / "mri_slice_interpolation_srgan" / "configs", bundle / "configs")
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").write_bytes(b"weights")
    methods = _Methods({})
    default = json.loads((bundle / "configs" / "inference.json").read_text())["sharpness"]
    assert methods.settings(str(bundle))["sharpness"] == default
    assert methods.settings(f"{bundle}@0.5")["sharpness"] == 0.5
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    (bundle / "configs" / "inference.json").write_text(json.dumps({**config, "sharpness": 0.3}))
    assert _Methods({}).settings(str(bundle))["sharpness"] == 0.3
    assert "sharpness" not in methods.settings("residual_cnn")
