"""How a bundle's training ends: a run shorter than its validation interval still validates and saves, every run
says where its weights went, and Ctrl-C stops it in one line with the last checkpoint kept."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

BUNDLE = ROOT / "bundles" / "mri_slice_interpolation_context_cnn"


def _training(data: Path, out: Path, **overrides) -> subprocess.Popen:
    overrides = {"dataset_dir": data / "data", "datalist_file": data / "datalist.json", "output_dir": out / "runs",
                 "ckpt_dir": out / "models", "max_epochs": 1, "epoch_length": 2, "val_interval": 4, "batch_size": 2,
                 "cache_rate": 0.0, "num_workers": 0, "patch_size": [32, 32], "pretrained": False, "channels": 8,
                 "num_res_blocks": 1, **overrides}
    args = [f"--{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in overrides.items()]
    return subprocess.Popen(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(BUNDLE / "configs" / "train.json"),
         "--bundle_root", str(BUNDLE), *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_run_shorter_than_its_validation_interval_validates_saves_and_says_so(synthetic, tmp_path):
    run = _training(synthetic, tmp_path)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-3000:]
    model = tmp_path / "models" / "model.pt"
    assert model.is_file()  # one epoch, validation every 4th: validated at the end all the same
    assert f"{model}: written by this run" in stdout


def test_weights_report_says_unchanged_when_nothing_was_saved(tmp_path, capsys):
    from ignite.engine import Engine

    from misr_monai.engines import WeightsReport

    shipped = tmp_path / "model.pt"
    shipped.write_bytes(b"weights")
    engine = Engine(lambda e, b: None)
    WeightsReport(shipped).attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert f"{shipped}: unchanged by this run" in capsys.readouterr().out


def test_ctrl_c_ends_training_in_one_line_and_keeps_the_last_checkpoint(synthetic, tmp_path):
    run = _training(synthetic, tmp_path, max_epochs=200, val_interval=100)
    while not list((tmp_path / "runs").glob("checkpoint_epoch=*.pt")):
        assert run.poll() is None, run.stderr.read()[-3000:]
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130
    last = stderr.replace("\r", "\n").strip().splitlines()[-1]  # after the progress bar
    assert last.startswith("interrupted at epoch") and "checkpoint_epoch=" in last and "Traceback" not in stderr
    kept = sorted((tmp_path / "runs").glob("checkpoint_epoch=*.pt"))
    assert kept and any(str(k) in last for k in kept)
