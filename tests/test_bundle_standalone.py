"""Every folder of ``bundles/``, copied out of the repository, runs from its own folder and passes the Zoo's checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest
from monai.bundle import ConfigWorkflow

from tests.conftest import BUNDLES, SCHEMA, smooth_volume, write_nifti



@pytest.fixture
def copied(request, tmp_path):
    bundle = tmp_path / request.param.name
    shutil.copytree(request.param, bundle, ignore=shutil.ignore_patterns("runs", "eval", "input"))
    (bundle / "input").mkdir()
    write_nifti(bundle / "input" / "vol.nii.gz", smooth_volume((24, 20, 9)))
    return bundle


def _workflow(bundle: Path, configs: list[str], kind: str, run_id: str, **overrides) -> ConfigWorkflow:
    workflow = ConfigWorkflow(config_file=[str(bundle / "configs" / c) for c in configs],
                              meta_file=str(bundle / "configs" / "metadata.json"), workflow_type=kind, run_id=run_id,
                              bundle_root=str(bundle), **overrides)
    workflow.initialize()
    return workflow


@pytest.mark.parametrize("copied", BUNDLES, indirect=True, ids=lambda p: p.name)
def test_bundle_on_its_own(copied, synthetic):
    """Inference from the bundle's folder with its defaults (input/ -> eval/), the Zoo checks, MONAI's properties."""
    run = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", "configs/inference.json",
                          "--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"],
                         cwd=copied, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert nib.load(copied / "eval" / "vol.nii.gz").shape == (24, 20, 17)

    zoo = subprocess.run([sys.executable, "-m", "misr_monai", "zoo", "check", ".", "--schema", str(SCHEMA)],
                         cwd=copied, capture_output=True, text=True, timeout=600)
    assert zoo.returncode == 0, zoo.stderr[-3000:]
    checks = [line.split(": ")[1] for line in zoo.stdout.splitlines() if line.startswith(".: ")]
    assert checks == ["directory", "version and changelog", "verify_metadata", "verify_net_in_out", "torchscript",
                      "large_files.yml", "pre-commit"]

    assert _workflow(copied, ["inference.json"], "infer", "inference").check_properties() == []
    assert _workflow(copied, ["inference.json", "evaluate.json"], "eval", "evaluate").check_properties() == []
    train = _workflow(copied, ["train.json"], "train", "training", dataset_dir=str(synthetic / "data"),
                      datalist_file=str(synthetic / "datalist.json"), cache_rate=0.0, output_dir=str(copied / "runs"))
    assert train.check_properties() == []
    assert train.parser.get_parsed_content("pretrained") == str(copied / "models" / "model.pt")  # fine-tunes by default
