"""multi_gpu_inference.json and multi_gpu_evaluate.json under torchrun with two gloo processes on CPU: each volume
processed by one rank, every output written once, the same as one process."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.conftest import ROOT, smooth_volume, write_nifti

BUNDLE = ROOT / "bundles" / "mri_slice_interpolation_context_cnn"


def _bundle_run(configs: list[str], processes: int, port: int, **overrides) -> subprocess.CompletedProcess:
    files = "[" + ",".join(f"'{BUNDLE / 'configs' / c}'" for c in configs) + "]"
    launch = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", f"--master_port={port}",
               "-m", "monai.bundle"] if processes > 1 else [sys.executable, "-m", "monai.bundle"])
    args = [f"--{k}={v}" for k, v in {"bundle_root": BUNDLE, "device": "$torch.device('cpu')", **overrides}.items()]
    return subprocess.run([*launch, "run", "--config_file", files, *args], capture_output=True, text=True, timeout=600)


def test_two_process_inference_writes_each_volume_once(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(3):  # an odd count: the ranks get 2 and 1
        write_nifti(tmp_path / "in" / f"v{i}.nii.gz", smooth_volume((24, 20, 7), seed=i))
    one = _bundle_run(["inference.json"], 1, 0, input_dir=tmp_path / "in", output_dir=tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    two = _bundle_run(["inference.json", "multi_gpu_inference.json"], 2, 29531, input_dir=tmp_path / "in",
                      output_dir=tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    for i in range(3):
        assert (two.stdout + two.stderr).count(f"v{i}.nii.gz: written to") == 1  # by one rank
        a, b = nib.load(tmp_path / "one" / f"v{i}.nii.gz"), nib.load(tmp_path / "two" / f"v{i}.nii.gz")
        np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
        np.testing.assert_array_equal(a.affine, b.affine)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [f"v{i}.nii.gz" for i in range(3)]


def _rows(folder: Path) -> list[dict]:
    with (folder / "per_volume.csv").open() as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_two_process_evaluation_gives_the_one_process_rows(synthetic, tmp_path):
    datalist = json.loads((synthetic / "datalist.json").read_text())
    datalist["test"] = datalist["training"] + datalist["validation"]  # five volumes
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    common = {"datalist_file": tmp_path / "datalist.json", "dataset_dir": synthetic / "data", "figures": False}
    one = _bundle_run(["inference.json", "evaluate.json"], 1, 0, output_dir=tmp_path / "one", **common)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _bundle_run(["inference.json", "evaluate.json", "multi_gpu_evaluate.json"], 2, 29532,
                      output_dir=tmp_path / "two", **common)
    assert two.returncode == 0, two.stderr[-3000:]
    rows = _rows(tmp_path / "one")
    assert len(rows) == 5 * 3 and rows == _rows(tmp_path / "two")  # every volume and method, in the datalist's order
    for name in ("summary.csv", "positions.md", "metrics.csv"):
        assert (tmp_path / "two" / name).is_file()
    key = [line for line in (tmp_path / "two" / "metrics.csv").read_text().splitlines() if line.startswith("val_psnr")]
    assert key and np.isfinite(float(key[0].split()[-1].split(",")[-1]))
