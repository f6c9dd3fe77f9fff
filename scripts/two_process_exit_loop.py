"""Run the residual_cnn bundle's two-process gloo training (as tests/test_bundle_residual_cnn.py does) N times and
count the runs that exit nonzero, and those that abort at interpreter exit after training.

    python scripts/two_process_exit_loop.py RUNS MINUTES OUT.jsonl
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import run_two_process_training, smooth_volume, write_nifti  # noqa: E402

ABORT = "terminate called without an active exception"


def synthetic(root: Path) -> Path:
    """The test suite's synthetic datalist: five brain-like volumes and one prostate-like."""
    datalist = {"training": [], "validation": [], "test": []}
    for folder in ("brain", "prostate3t"):
        (root / "data" / folder).mkdir(parents=True)
    for i, split in enumerate(["training", "training", "validation", "validation", "test"]):
        write_nifti(root / "data" / "brain" / f"sub-{i}_T1w.nii.gz", smooth_volume((40, 36, 11), seed=i))
        datalist[split].append({"image": f"brain/sub-{i}_T1w.nii.gz", "dataset": "brain"})
    write_nifti(root / "data" / "prostate3t" / "p_T2.nii.gz", smooth_volume((40, 40, 7), seed=9))
    datalist["training"].append({"image": "prostate3t/p_T2.nii.gz", "dataset": "prostate3t"})
    (root / "datalist.json").write_text(json.dumps(datalist))
    return root


def main(runs: int, minutes: float, out: Path) -> None:
    bundle = ROOT / "bundles" / "mri_slice_interpolation_residual_cnn"
    start, failed, aborted = time.time(), 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic(Path(tmp))
        for run in range(runs):
            if time.time() - start > 60 * minutes:
                break
            work = root / f"run{run}"
            work.mkdir()
            overrides = {"dataset_dir": str(root / "data"), "pretrained": "", "datalist_file": str(root / "datalist.json"),
                         "output_dir": str(work), "ckpt_dir": str(work), "max_epochs": 1, "epoch_length": 2,
                         "val_interval": 1, "cache_rate": 0.0, "patch_size": [32, 32], "network_def#channels": 8,
                         "network_def#num_res_blocks": 1}
            t = time.time()
            proc = run_two_process_training(bundle, overrides, 29600 + run % 200)
            failed += proc.returncode != 0
            aborted += ABORT in proc.stderr
            record = {"run": run + 1, "rc": proc.returncode, "abort": ABORT in proc.stderr,
                      "weights": (work / "model.pt").is_file(), "seconds": round(time.time() - t, 1)}
            if proc.returncode:
                record["stderr"] = proc.stderr[-2000:]
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"run {run + 1}: rc {proc.returncode}; {failed} failed, {aborted} aborted at exit so far", flush=True)
    print(f"{run + 1 if runs else 0} runs in {(time.time() - start) / 60:.1f} min: {failed} exited nonzero, "
          f"{aborted} aborted at exit")


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3]))
