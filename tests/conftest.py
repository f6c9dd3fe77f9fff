from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_MRI = ROOT.parent / "shared" / "data" / "mri"
BUNDLES = sorted(p for p in (ROOT / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
"""Every bundle folder: the parametrised Zoo checks and standalone runs cover each."""
DATA_VARIANTS = {"mri_slice_interpolation_context_cnn_brain": "mri_slice_interpolation_context_cnn"}
"""Bundles whose configs are another's but for their data and schedule (``test_bundle_variants`` checks it): the
slow per-bundle suites (bad input, resume) run their code paths once, on the other."""
CODE_BUNDLES = [b for b in BUNDLES if b.name not in DATA_VARIANTS]
"""One bundle per code path, for the slow per-bundle suites."""
SCHEMA = ROOT.parent / "shared" / "zoo" / "meta_schema_20240725.json"
"""The Model Zoo's metadata schema (the one the bundles' metadata names), read from ``../shared/zoo/`` as
``verify_metadata`` would download it."""
needs_shared = pytest.mark.skipif(not SHARED_MRI.is_dir(), reason="../shared/data/mri is absent")
needs_schema = pytest.mark.skipif(not SCHEMA.is_file(), reason="../shared/zoo/meta_schema_20240725.json is absent")


SUITE_RECORD = "MISR_SUITE_RECORD"
"""The environment variable naming a JSON file to record the run's counts and time in (``.ci/run`` sets it; the
README's numbers about the suite are written from that record by ``scripts/suite_readme.py``)."""
_NEED_SHARED = pytest.StashKey[int]()
_START = pytest.StashKey[float]()


def pytest_sessionstart(session):
    session.config.stash[_START] = time.perf_counter()


def pytest_collection_modifyitems(config, items):
    """Count the tests that skip without ``../shared`` (a ``skipif`` whose reason names it)."""
    config.stash[_NEED_SHARED] = sum(any("../shared" in str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif"))
                                     for item in items)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line of counts and time; with ``MISR_SUITE_RECORD`` set, the same as JSON in that file."""
    stats = terminalreporter.stats
    record = {key: len([r for r in stats.get(key, []) if getattr(r, "when", "call") in ("call", "setup")])
              for key in ("passed", "failed", "skipped", "error")}
    record["need_shared"] = config.stash.get(_NEED_SHARED, 0)
    record["seconds"] = round(time.perf_counter() - config.stash.get(_START, time.perf_counter()))
    terminalreporter.write_line(f"suite: {record['passed']} passed, {record['failed']} failed, {record['skipped']} "
                                f"skipped in {record['seconds']} s; {record['need_shared']} need ../shared")
    if os.environ.get(SUITE_RECORD):
        Path(os.environ[SUITE_RECORD]).write_text(json.dumps(record) + "\n")


def smooth_volume(shape=(24, 20, 9), seed=0, dtype=np.float32) -> np.ndarray:
    """A small positive volume with structure in every direction."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*(np.linspace(0, np.pi, s) for s in shape), indexing="ij")
    vol = 500 + 300 * np.sin(2 * grid[0]) * np.cos(grid[1]) + 200 * np.sin(3 * grid[2]) + rng.normal(0, 5, shape)
    return vol.astype(dtype)


def write_nifti(path, data, affine=None, qform_code=1, sform_code=1, units=("mm", "sec")) -> Path:
    img = nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0]) if affine is None else affine, dtype=data.dtype)
    img.header.set_qform(img.affine, code=qform_code)
    img.header.set_sform(img.affine, code=sform_code)
    img.header.set_xyzt_units(*units)
    nib.save(img, str(path))
    return Path(path)


@pytest.fixture
def volume_file(tmp_path):
    return write_nifti(tmp_path / "vol.nii.gz", smooth_volume())


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A datalist of small synthetic NIfTI volumes (brain-like and prostate3t) for the bundles' train configs."""
    root = tmp_path_factory.mktemp("synthetic")
    data = root / "data"
    datalist = {"training": [], "validation": [], "test": []}
    (data / "brain").mkdir(parents=True)
    for i, split in enumerate(["training", "training", "validation", "validation", "test"]):
        write_nifti(data / "brain" / f"sub-{i}_T1w.nii.gz", smooth_volume((40, 36, 11), seed=i))
        datalist[split].append({"image": f"brain/sub-{i}_T1w.nii.gz", "dataset": "brain"})
    (data / "prostate3t").mkdir()
    write_nifti(data / "prostate3t" / "p_T2.nii.gz", smooth_volume((40, 40, 7), seed=9))
    datalist["training"].append({"image": "prostate3t/p_T2.nii.gz", "dataset": "prostate3t"})
    (root / "datalist.json").write_text(json.dumps(datalist))
    return root


def tiny_fast_ddpm_bundle(bundle: Path) -> Path:
    """A copy of the Fast-DDPM bundle's configs and base network at ``bundle`` with a tiny refiner whose weights are
    random, its output convolution included (so that samples differ)."""

    import torch
    from monai.bundle import ConfigParser

    source = ROOT / "bundles" / "mri_slice_interpolation_fast_ddpm"
    shutil.copytree(source / "configs", bundle / "configs")
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["network_def"].update(channels=[8, 16, 16, 16], num_head_channels=[0, 0, 0, 8], norm_num_groups=8)
    (bundle / "configs" / "inference.json").write_text(json.dumps(config, indent=4))
    torch.manual_seed(0)
    (bundle / "models").mkdir()
    shutil.copy(source / "models" / "base_model.pt", bundle / "models" / "base_model.pt")
    network = ConfigParser(config).get_parsed_content("network_def")
    torch.nn.init.normal_(network.out[-1].conv.weight, std=0.05)
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    return bundle


def bundle_workflow(bundle: Path, overrides: dict):
    """The bundle's train config as an initialised MONAI ``ConfigWorkflow`` with ``overrides``."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "train.json"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=str(bundle / "configs" / "logging.conf"),
        workflow_type="train",
        run_id="training",
        **{"bundle_root": str(bundle), **overrides},
    )
    workflow.initialize()
    return workflow


RANK_RECORD = [  # before the process group is destroyed: each rank's trained weights and the epoch's data indices
    "$torch.save({k: v.detach().cpu() for k, v in getattr(@network, 'module', @network).state_dict().items()}, "
    "os.path.join(@output_dir, f'rank{dist.get_rank()}_weights.pt'))",
    "$open(os.path.join(@output_dir, f'rank{dist.get_rank()}_indices.txt'), 'w').write(str(list(iter(@train#dataloader.sampler))))",
    "$misr_monai.engines.end_process_group()",
]


def run_two_process_training(bundle: Path, overrides: dict, port: int) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2`` of the bundle's train + multi_gpu_train configs (gloo on CPU); each rank leaves
    its weights and its data indices in ``output_dir`` (:py:func:`assert_ranks_split_data_and_agree`). Run once: an
    abort at exit is a failure (``misr_monai.engines.end_process_group``)."""
    configs = f"['{bundle / 'configs' / 'train.json'}','{bundle / 'configs' / 'multi_gpu_train.json'}']"
    overrides = {"bundle_root": bundle, **overrides, "finalize": RANK_RECORD}
    args = [f"--{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in overrides.items()]
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
         "-m", "monai.bundle", "run", "training", "--config_file", configs, *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )


def assert_ranks_split_data_and_agree(out: Path, zero_initialised: str) -> None:
    """The two ranks of :py:func:`run_two_process_training` drew different parts of the data (``DistributedSampler``)
    and ended with the same trained weights (gradients averaged every step; the ``zero_initialised`` last layer is
    no longer zero): two independent runs would train on all the data each, or on different data to different
    weights."""
    import ast

    import torch

    indices = [ast.literal_eval((out / f"rank{r}_indices.txt").read_text()) for r in (0, 1)]
    assert indices[0] != indices[1] and len(indices[0]) == len(indices[1])
    assert len(set(indices[0]) & set(indices[1])) <= 1  # at most the one index repeated to divide evenly
    weights = [torch.load(out / f"rank{r}_weights.pt", weights_only=True) for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=1e-6, msg=f"ranks differ in {key}")
    assert weights[0][zero_initialised].abs().sum() > 0, "the ranks did not train"
