"""Bad input everywhere: every case of ``fuzz_inputs`` gives a correct output or one line naming the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import CODE_BUNDLES, ROOT, smooth_volume, write_nifti
from tests.fuzz_inputs import write_cases



def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=ROOT)


def check_outcomes(cases: dict[str, str], inputs: Path, outputs: Path, stderr: str, stdout: str = "") -> dict[str, int]:
    """Check every case's outcome (new voxels within the input's range, whatever the model); return the counts the
    closing note reports. With ``stdout``, each written file must also have its own line there."""
    lines = stderr.splitlines()
    counts = {"cases": len(cases), "correct outputs": 0, "clean errors": 0,
              "tracebacks": stderr.count("Traceback"), "partial files": 0}
    for name, expect in cases.items():
        said = [line for line in lines if line.startswith("error: ") and f"{inputs / name}:" in line]
        if expect == "ok":
            assert not said, said
            original, result = nib.load(inputs / name), nib.load(outputs / name)
            data = np.asanyarray(original.dataobj).reshape(original.shape[:3])
            up = np.asanyarray(result.dataobj)
            assert up.dtype == data.dtype and up.shape[2] == 2 * data.shape[2] - 1
            np.testing.assert_array_equal(up[:, :, ::2], data)  # the original slices, exactly
            assert data.min() <= up.min() and up.max() <= data.max()
            assert not stdout or sum(line.startswith(f"{name}: written to ") for line in stdout.splitlines()) == 1
            np.testing.assert_allclose(result.affine[:3, 2], original.affine[:3, 2] / 2)
            np.testing.assert_allclose(result.affine[:3, 3], original.affine[:3, 3])
            counts["correct outputs"] += 1
        else:
            assert len(said) == 1 and expect in said[0], (name, said)
            assert not (outputs / name).exists()
            counts["clean errors"] += 1
    written = {p.name for p in outputs.iterdir()} if outputs.is_dir() else set()
    counts["partial files"] = len(written - {n for n, e in cases.items() if e == "ok"})
    assert counts["tracebacks"] == 0 and counts["partial files"] == 0, (counts, stderr[-3000:])
    print(counts)
    return counts


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    inputs = tmp_path_factory.mktemp("fuzz") / "in"
    return inputs, write_cases(inputs)


def test_fuzz_upsample_folder(fuzz, tmp_path):
    inputs, cases = fuzz
    result = _run("-m", "misr_monai", "upsample", str(inputs), str(tmp_path / "out"), "--model", "linear")
    assert result.returncode == 2
    counts = check_outcomes(cases, inputs, tmp_path / "out", result.stderr, result.stdout)
    assert counts["correct outputs"] == 13 and counts["clean errors"] == 16
    assert result.stderr.splitlines()[-1].startswith(f"misr: error: {inputs}: 16 of 29 files failed")


@pytest.mark.parametrize("bundle", CODE_BUNDLES, ids=lambda p: p.name)
def test_fuzz_bundle_inference(fuzz, tmp_path, bundle):
    """``monai.bundle run inference`` on the folder: one line per bad file, no MONAI traceback at the end."""
    inputs, cases = fuzz
    result = _run("-m", "monai.bundle", "run", "inference", "--config_file", str(bundle / "configs" / "inference.json"),
                  "--bundle_root", str(bundle), "--input_dir", str(inputs), "--output_dir", str(tmp_path / "out"),
                  "--precision", "fp32")
    assert result.returncode != 0
    counts = check_outcomes(cases, inputs, tmp_path / "out", result.stderr)
    assert counts["correct outputs"] == 13 and counts["clean errors"] == 16
    assert result.stderr.splitlines()[-1].startswith(f"error: {inputs}: 16 of 29 files failed")


def test_bundle_bad_option_is_one_line(tmp_path):
    """An InputError raised while MONAI instantiates the config (here a bad precision) ends in its one line."""
    bundle = CODE_BUNDLES[0]
    (tmp_path / "in").mkdir()
    write_nifti(tmp_path / "in" / "vol.nii.gz", smooth_volume((16, 16, 5)))
    result = _run("-m", "monai.bundle", "run", "inference", "--config_file", str(bundle / "configs" / "inference.json"),
                  "--bundle_root", str(bundle), "--input_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "out"),
                  "--precision", "fp16")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: --precision must be one of fp32, bf16, auto, got 'fp16'."


def test_fuzz_evaluate_and_datalist(fuzz, tmp_path):
    """``misr datalist`` leaves the unusable files out (header check), ``misr evaluate`` skips the unreadable ones."""
    inputs, cases = fuzz
    result = _run("-m", "misr_monai", "datalist", str(inputs), "--out", str(tmp_path / "dl.json"), "--val", "0", "--test", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    datalist = json.loads((tmp_path / "dl.json").read_text())
    header_bad = {"bad_2d.nii.gz", "bad_4d.nii.gz", "bad_empty.nii.gz", "bad_gzip_of_text.nii.gz", "bad_huge_header.nii",
                  "bad_missing.nii.gz", "bad_nan_affine.nii", "bad_not_nifti.nii", "bad_singular_affine.nii",
                  "bad_zero_spacing.nii", "bad_corrupt.nii.gz"}
    assert set(datalist["excluded"]) == header_bad
    assert {e["image"] for e in datalist["training"]} == set(cases) - header_bad
    for name in header_bad:
        assert sum(f"{inputs / name}:" in line for line in result.stderr.splitlines()) == 1

    datalist["test"] = [{"image": name} for name in sorted(cases)]  # every case, the unusable ones too
    (tmp_path / "dl.json").write_text(json.dumps(datalist))
    result = _run("-m", "misr_monai", "evaluate", "--datalist", str(tmp_path / "dl.json"), "--dataset-dir", str(inputs),
                  "--out", str(tmp_path / "eval"), "--no-figures")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(said) == 16 and all(any(f"{inputs / n}:" in line for line in said) for n, e in cases.items() if e != "ok")
    table = (tmp_path / "eval" / "per_volume.csv").read_text()
    assert all(name in table for name, e in cases.items() if e == "ok")
    assert not any(name in table for name, e in cases.items() if e != "ok")


def _one_line(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines


def test_arguments_are_checked_before_any_work(tmp_path):
    """Each bad argument of ``misr upsample`` is one line, before the model loads or anything is written."""
    src = write_nifti(tmp_path / "vol.nii.gz", smooth_volume((16, 16, 5)))
    (tmp_path / "folder").mkdir()
    upsample = ("-m", "misr_monai", "upsample", str(src))
    cases = [
        ((str(tmp_path / "out.txt"),), "out.txt: unsupported output type; give a name ending in .nii or .nii.gz."),
        ((str(tmp_path / "out.nii.gz"), "--figure", str(tmp_path / "missing" / "f.png")),
         f"output folder {tmp_path / 'missing'} does not exist."),
        ((str(tmp_path / "folder"),), "folder: is a folder; give a file name ending in .nii or .nii.gz."),
        ((str(tmp_path / "folder"), "--overwrite"), "folder: is a folder; give a file name"),
        ((str(tmp_path / "out.nii.gz"), "--factor", "9"), "--factor must be an integer from 2 to 8, got 9."),
        ((str(tmp_path / "out.nii.gz"), "--spacing", "0"), "--spacing must be a positive number of millimetres"),
        ((str(tmp_path / "out.nii.gz"), "--slice-thickness", "-1"), "--slice-thickness must be a positive number"),
        ((str(tmp_path / "out.nii.gz"), "--axis", "3"), "--axis must be 0, 1 or 2, got 3."),
        ((str(tmp_path / "out.nii.gz"), "--model", "nonesuch"), "unknown method 'nonesuch'"),
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append(((str(tmp_path / "out.nii.gz"), "--device", "cuda"), "--device cuda: CUDA is not available"))
    for args, expected in cases:
        _one_line(_run(*upsample, *args), expected)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "vol.nii.gz"]  # nothing written
    assert not any((tmp_path / "folder").iterdir())


def test_bundle_input_dir_that_is_a_file_is_one_line(tmp_path):
    """A bundle's input_dir may be one NIfTI file (the inference evaluator's reader follows the input); its output
    must then be a NIfTI name, said in one line when it is not."""
    bundle = CODE_BUNDLES[0]
    src = write_nifti(tmp_path / "vol.nii.gz", smooth_volume((16, 16, 5)))
    run = ("-m", "monai.bundle", "run", "inference", "--config_file", str(bundle / "configs" / "inference.json"),
           "--bundle_root", str(bundle), "--input_dir", str(src), "--output_dir")
    result = _run(*run, str(tmp_path / "out"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (f"error: {tmp_path / 'out'}: unsupported output type; give a "
                                                      "name ending in .nii or .nii.gz.")
    assert _run(*run, str(tmp_path / "out.nii.gz")).returncode == 0
    assert nib.load(str(tmp_path / "out.nii.gz")).shape == (16, 16, 9)
