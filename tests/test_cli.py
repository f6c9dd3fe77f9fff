from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from misr_monai.apps.demo import DEMO_VOLUME
from misr_monai.cli import main
from tests.conftest import ROOT, smooth_volume, write_nifti


def _run_error(capsys, argv, out_path=None):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("misr: error: ") and "Traceback" not in err
    if out_path is not None:
        assert not os.path.exists(out_path)
        assert not [f for f in os.listdir(os.path.dirname(out_path) or ".") if f.startswith(".out")]  # no temp left
    return err


def _bad_inputs(tmp_path):
    good = write_nifti(tmp_path / "good.nii.gz", smooth_volume())
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(os.urandom(2000))
    truncated_gz = tmp_path / "truncated.nii.gz"
    truncated_gz.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    plain = write_nifti(tmp_path / "plain.nii", smooth_volume())
    truncated = tmp_path / "truncated.nii"
    truncated.write_bytes(plain.read_bytes()[:1000])
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    mgh = tmp_path / "vol.mgz"
    nib.save(nib.MGHImage(smooth_volume(), np.eye(4)), str(mgh))
    nan = smooth_volume()
    nan[3, 3, 3] = np.nan
    inf = smooth_volume()
    inf[1, 2, 3] = np.inf
    return {
        "missing": (tmp_path / "nope.nii.gz", "no such file"),
        "corrupt": (corrupt, "not a readable NIfTI"),
        "truncated_gz": (truncated_gz, "truncated"),
        "truncated": (truncated, "truncated"),
        "not_nifti_text": (text, "not a readable NIfTI"),
        "not_nifti_mgh": (mgh, "not a NIfTI"),
        "2d": (write_nifti(tmp_path / "flat.nii.gz", smooth_volume()[:, :, 0]), "expected a 3D volume"),
        "4d": (write_nifti(tmp_path / "series.nii.gz", np.stack([smooth_volume()] * 3, -1)), "expected a 3D volume"),
        "two_slices": (write_nifti(tmp_path / "thin.nii.gz", smooth_volume((20, 20, 2))), "at least 3"),
        "nan": (write_nifti(tmp_path / "nan.nii.gz", nan), "NaN or Inf"),
        "inf": (write_nifti(tmp_path / "inf.nii.gz", inf), "NaN or Inf"),
    }


CASES = ["missing", "corrupt", "truncated_gz", "truncated", "not_nifti_text", "not_nifti_mgh", "2d", "4d",
         "two_slices", "nan", "inf"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    path, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out.nii.gz"
    err = _run_error(capsys, ["upsample", str(path), str(out), "--model", "linear"], out)
    assert str(path) in err and message in err


def test_output_exists_needs_overwrite(tmp_path, capsys, volume_file):
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"keep me")
    err = _run_error(capsys, ["upsample", str(volume_file), str(out), "--model", "cubic"])
    assert "--overwrite" in err and out.read_bytes() == b"keep me"
    assert main(["upsample", str(volume_file), str(out), "--overwrite", "--model", "cubic"]) == 0
    assert nib.load(str(out)).shape == (24, 20, 17)


def test_output_folder_missing_or_not_writable(tmp_path, capsys, volume_file, monkeypatch):
    err = _run_error(capsys, ["upsample", str(volume_file), str(tmp_path / "no" / "out.nii.gz"), "--model", "linear"])
    assert "does not exist" in err
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: os.fspath(path) != os.fspath(locked))  # root ignores chmod
    err = _run_error(capsys, ["upsample", str(volume_file), str(locked / "out.nii.gz"), "--model", "linear"],
                     locked / "out.nii.gz")
    assert "not writable" in err


@pytest.mark.parametrize(
    "extra,message",
    [(["--factor", "9"], "from 2 to 8"), (["--axis", "4"], "--axis"), (["--model", "magic"], "unknown")],
)
def test_bad_options(tmp_path, capsys, volume_file, extra, message):
    out = tmp_path / "out.nii.gz"
    assert message in _run_error(capsys, ["upsample", str(volume_file), str(out), "--model", "linear", *extra], out)


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "misr_monai", "upsample", str(tmp_path / "missing.nii.gz"), str(tmp_path / "o.nii.gz"),
         "--model", "linear"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_4d_single_volume_and_axis_option(tmp_path, capsys):
    src = write_nifti(tmp_path / "one.nii.gz", smooth_volume()[..., None])
    assert main(["upsample", str(src), str(tmp_path / "o.nii.gz"), "--axis", "0", "--model", "linear"]) == 0
    assert nib.load(str(tmp_path / "o.nii.gz")).shape == (47, 20, 9)


@pytest.mark.parametrize("factor", [2, 3])
def test_demo_decimates_reconstructs_and_draws(tmp_path, capsys, factor):
    from misr_monai.predictors.registry import DEFAULT_MODEL, load_predictor
    from misr_monai.predictors.network import NetworkPredictor

    assert isinstance(load_predictor(DEFAULT_MODEL), NetworkPredictor)  # the shipped, pretrained bundle
    assert main(["demo", "--out", str(tmp_path / "demo"), "--factor", str(factor)]) == 0
    truth = np.asanyarray(nib.load(str(DEMO_VOLUME)).dataobj)
    decimated = nib.load(str(tmp_path / "demo" / "sub-53_T1w_decimated.nii.gz"))
    out = nib.load(str(tmp_path / "demo" / f"sub-53_T1w_x{factor}_{DEFAULT_MODEL}.nii.gz"))
    np.testing.assert_array_equal(np.asanyarray(decimated.dataobj), truth[..., ::factor])
    kept = len(range(0, truth.shape[2], factor))
    assert out.shape[2] == factor * (kept - 1) + 1
    np.testing.assert_allclose(out.affine, nib.load(str(DEMO_VOLUME)).affine)  # back on the truth's grid
    assert (tmp_path / "demo" / f"sub-53_T1w_x{factor}.png").stat().st_size > 10_000
    line = capsys.readouterr().out.splitlines()[-1]  # "...: PSNR of the new slices: NAME X dB, ..."
    psnr = {k: float(v) for k, v, _ in (item.rsplit(" ", 2) for item in line.split("slices: ")[-1].split(", "))}
    assert list(psnr) == [f"input (every slice {factor})", "cubic", DEFAULT_MODEL]
    assert psnr[DEFAULT_MODEL] > psnr["cubic"] > psnr[f"input (every slice {factor})"]


def test_default_model_is_the_comparison_best():
    """DEFAULT_MODEL is clearly better than cubic over every test volume of the committed comparison, and no model is
    clearly better than it (pooled PSNR, the paired verdicts of docs/comparison/paired.csv; a self-ensemble,
    ``NAME:se``, is an option of a model, not a model)."""
    from misr_monai.predictors.registry import DEFAULT_MODEL, SELF_ENSEMBLE

    with open(ROOT / "docs" / "comparison" / "paired.csv") as f:
        pooled = [r for r in csv.DictReader(f) if r["dataset"] == "all" and r["metric"] == "psnr"
                  and not r["method"].endswith(SELF_ENSEMBLE) and not r["versus"].endswith(SELF_ENSEMBLE)]
    verdicts = {(r["method"], r["versus"]): r["verdict"] for r in pooled}
    assert verdicts[(DEFAULT_MODEL, "cubic")] == f"{DEFAULT_MODEL} better"
    beaten = [f"{a} - {b}" for (a, b), verdict in verdicts.items() if DEFAULT_MODEL in (a, b)
              and verdict.endswith("better") and not verdict.startswith(DEFAULT_MODEL)]
    assert beaten == [], f"clearly better than the default: {beaten}"


def test_datalist_and_evaluate_on_synthetic_data(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for s in range(5):
        write_nifti(data / f"sub-{s:02d}_T1w.nii.gz", smooth_volume((24, 24, 13), seed=s))
        write_nifti(data / f"sub-{s:02d}_T2w.nii.gz", smooth_volume((24, 24, 13), seed=10 + s))
    dl = tmp_path / "synth.json"
    assert main(["datalist", str(data), "--out", str(dl), "--val", "1", "--test", "2", "--seed", "3"]) == 0
    datalist = json.loads(dl.read_text())
    subjects = {k: {e["subject"] for e in v} for k, v in datalist.items()}
    assert len(subjects["test"]) == 2 and len(subjects["validation"]) == 1 and len(subjects["training"]) == 2
    assert not (subjects["test"] & subjects["training"]) and len(datalist["test"]) == 4  # both files of a subject
    out = tmp_path / "eval"
    assert main(["evaluate", "--datalist", str(dl), "--split", "test", "--methods", "cubic",
                 "--dataset-dir", str(data), "--out", str(out)]) == 0
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["dataset", "method", "volumes", "slices", "psnr", "psnr_std", "psnr_fg", "ssim", "mae",
                             "mse", "edge_ratio", "psnr_vol", "psnr_core", "tp_ratio", "sharpness", "hf_ratio", "coverage_2std",
                             "coverage_2std_cal", "spearman_std", "gain_db", "seconds"]
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {"linear", "cubic"} and by_method["linear"]["volumes"] == "4"
    assert float(by_method["linear"]["gain_db"]) == 0.0 and int(by_method["cubic"]["slices"]) == 4 * 6
    assert (out / "summary.md").read_text().startswith("| dataset | method |")
    assert len(list(out.glob("*_slice.png"))) == 4 and len(list(out.glob("*_reformat.png"))) == 4


def test_datalist_is_seeded(tmp_path):
    from misr_monai.datalist import make_datalist

    for s in range(8):
        write_nifti(tmp_path / f"case{s}_T2.nii.gz", smooth_volume((8, 8, 4)))
    assert make_datalist(tmp_path, seed=1) == make_datalist(tmp_path, seed=1)
    assert make_datalist(tmp_path, seed=1) != make_datalist(tmp_path, seed=2)


def test_curve_from_tensorboard_events(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    for run, (start, stop) in enumerate([(1, 4), (3, 6)]):  # a resumed run repeats epoch 3
        with SummaryWriter(str(tmp_path / "runs" / str(run))) as writer:
            for epoch in range(start, stop):
                writer.add_scalar("val_psnr", 30.0 + epoch, epoch)
    assert main(["curve", str(tmp_path / "runs"), "--out", str(tmp_path / "curve.png")]) == 0
    assert "val_psnr: 5 points, last 35.0000 at 5" in capsys.readouterr().out
    assert (tmp_path / "curve.png").stat().st_size > 5000


def test_uncreatable_output_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    err = _run_error(capsys, ["evaluate", "--datalist", "x.json", "--dataset-dir", str(tmp_path),
                              "--out", str(blocker / "sub")])
    assert "cannot create the output folder" in err


def test_evaluate_skips_a_bad_volume_in_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_nifti(data / "sub-01_T1w.nii.gz", smooth_volume((24, 24, 2)))  # too few slices, evaluated first
    write_nifti(data / "sub-02_T1w.nii.gz", smooth_volume((24, 24, 9)))
    dl = tmp_path / "dl.json"
    dl.write_text(json.dumps({"test": [{"image": "sub-01_T1w.nii.gz"}, {"image": "sub-02_T1w.nii.gz"}]}))
    out = tmp_path / "eval"
    assert main(["evaluate", "--datalist", str(dl), "--dataset-dir", str(data), "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert err[0].startswith("error: ") and "sub-01_T1w.nii.gz" in err[0] and "at least 3" in err[0]
    assert err[-1].startswith("misr: error: 1 volumes failed") and "Traceback" not in "".join(err)
    volumes = {row["volume"] for row in csv.DictReader(open(out / "per_volume.csv"))}
    assert volumes == {"sub-02_T1w.nii.gz"}  # the good volume was still evaluated


def test_an_output_that_is_the_input_is_refused_with_or_without_overwrite(tmp_path, capsys):
    import hashlib

    src = write_nifti(tmp_path / "scan.nii.gz", smooth_volume((12, 10, 6)))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    link = tmp_path / "link.nii.gz"
    link.symlink_to(src)
    for output, extra in ((src, []), (src, ["--overwrite"]), (link, ["--overwrite"]), (tmp_path / "." / "scan.nii.gz", ["--overwrite"])):
        assert main(["upsample", str(src), str(output), "--model", "linear", *extra]) == 2
        assert "this is the input" in capsys.readouterr().err
    assert main(["upsample", str(tmp_path), str(tmp_path), "--model", "linear", "--overwrite"]) == 2  # a folder onto itself
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest


def test_readme_states_the_recorded_suite_run():
    """The README's counts and time of the suite are written from the record of the run that produced them
    (`.ci/run` writes it; scripts/suite_readme.py copies it to docs/suite.json and writes the line)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("suite_readme", ROOT / "scripts" / "suite_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    record = json.loads((ROOT / "docs" / "suite.json").read_text())
    assert record["passed"] > 0
    assert module.suite_line(record) in (ROOT / "README.md").read_text()
