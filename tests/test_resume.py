"""Every bundle's training, killed with SIGKILL and resumed, ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import logging
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from misr_monai.engines import VersionStamp, versions
from tests.conftest import CODE_BUNDLES, ROOT

CNN = {"network_def#channels": 8, "network_def#num_res_blocks": 1}
TINY = {  # small networks for the known bundles; a new bundle is trained as it ships
    "mri_slice_interpolation_residual_cnn": CNN,
    "mri_slice_interpolation_context_cnn": {"channels": 8, "num_res_blocks": 1},
    "mri_slice_interpolation_srgan": {"channels": 8, "num_res_blocks": 1, "init_from_base": False,
                                      "discriminator_def#channels": 8},
    "mri_slice_interpolation_fast_ddpm": {"network_def#channels": [8, 16, 16, 16],
                                          "network_def#num_head_channels": [0, 0, 0, 8], "network_def#norm_num_groups": 8},
}


def _training(bundle: Path, data: Path, out: Path) -> subprocess.Popen:
    overrides = {"dataset_dir": data / "data", "datalist_file": data / "datalist.json", "output_dir": out,
                 "ckpt_dir": out, "max_epochs": 3, "epoch_length": 3, "val_interval": 1, "batch_size": 2,
                 "cache_rate": 0.0, "num_workers": 0, "patch_size": [32, 32], "pretrained": False,
                 **TINY.get(bundle.name, {})}
    args = [f"--{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in overrides.items()]
    return subprocess.Popen(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(bundle / "configs" / "train.json"),
         "--bundle_root", str(bundle), *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("bundle", CODE_BUNDLES, ids=lambda p: p.name)
def test_killed_training_resumes_to_the_same_weights(bundle, synthetic, tmp_path):
    whole = _training(bundle, synthetic, tmp_path / "whole")
    assert whole.wait(timeout=600) == 0, whole.stderr.read()[-3000:]

    killed = _training(bundle, synthetic, tmp_path / "killed")
    while not list((tmp_path / "killed").glob("checkpoint_epoch=1.pt")):
        assert killed.poll() is None, killed.stderr.read()[-3000:]
        time.sleep(0.01)
    time.sleep(random.Random(bundle.name).uniform(0, 0.05))  # somewhere in epoch 2 (tiny epochs are quick)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    done = sorted(p.name for p in (tmp_path / "killed").glob("checkpoint_epoch=*.pt"))
    assert "checkpoint_epoch=3.pt" not in done  # killed before the end
    resumed = _training(bundle, synthetic, tmp_path / "killed")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]

    a = torch.load(tmp_path / "whole" / "checkpoint_epoch=3.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint_epoch=3.pt", weights_only=True)
    print(f"{bundle.name}: killed after {done}, resumed; final weights equal: ", end="")
    for key in (k for k in ("network", "discriminator") if k in a):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    assert a.get("best_model") == b.get("best_model")  # the same best validation score and file
    best_a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    best_b = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)
    assert all(torch.equal(tensor, best_b[name]) for name, tensor in best_a.items())  # models/model.pt too
    print("bitwise, and model.pt too")
    assert b["versions"] == versions()
    assert sorted(p.name for p in (tmp_path / "killed").glob("checkpoint_epoch=*.pt")) == \
        ["checkpoint_epoch=2.pt", "checkpoint_epoch=3.pt"]  # bounded across the resume


def test_version_stamp_warns_in_one_line(caplog):
    stamp = VersionStamp()
    with caplog.at_level(logging.WARNING, logger="misr_monai"):
        stamp.load_state_dict(versions())
        assert not caplog.records
        stamp.load_state_dict({**versions(), "monai": "1.0.0"})
    (record,) = caplog.records
    assert record.getMessage() == f"checkpoint written by other versions: monai 1.0.0 (now {versions()['monai']})."


def test_checkpoint_saver_is_atomic(tmp_path, monkeypatch):
    """A save that dies midway leaves the previous file whole (MONAI's own saver would leave it truncated)."""
    from ignite.engine import Engine

    from misr_monai.engines import AtomicCheckpointSaver

    network = torch.nn.Linear(4, 4)
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(str(tmp_path), {"model": network}, save_final=True, final_filename="model.pt").attach(engine)
    engine.run([0], max_epochs=1)
    whole = (tmp_path / "model.pt").read_bytes()

    def dies_midway(obj, f, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt  # the process is stopped while writing

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=2)
    assert (tmp_path / "model.pt").read_bytes() == whole and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_resumed_saver_replaces_model_pt_only_with_better_weights(tmp_path):
    """The key metric's history travels in the training checkpoint (the bundles' ``best_model`` entry)."""
    from ignite.engine import Engine, Events

    from misr_monai.engines import AtomicCheckpointSaver

    def validation(score: float, saver: AtomicCheckpointSaver, network: torch.nn.Module) -> None:
        engine = Engine(lambda e, b: None)
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(val_psnr=score))
        saver.attach(engine)
        engine.run([0], max_epochs=1)

    def saver() -> AtomicCheckpointSaver:
        return AtomicCheckpointSaver(str(tmp_path), {"model": network}, save_key_metric=True, key_metric_name="val_psnr",
                                     key_metric_filename="model.pt")

    network = torch.nn.Linear(2, 2)
    first = saver()
    validation(30.0, first, network)
    best = (tmp_path / "model.pt").read_bytes()
    resumed = saver()  # a new process after a kill
    resumed.load_state_dict(first.state_dict())
    with torch.no_grad():
        network.weight.add_(1.0)
    validation(20.0, resumed, network)  # worse: the best weights stay
    assert (tmp_path / "model.pt").read_bytes() == best
    validation(40.0, resumed, network)  # better: replaced
    assert (tmp_path / "model.pt").read_bytes() != best
