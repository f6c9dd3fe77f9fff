"""Every folder of ``bundles/``, copied out of the repository, runs from its own folder and passes the Zoo's checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigWorkflow

from misr_monai.cli import main
from misr_monai.predictors.registry import DEFAULT_MODEL

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
    """Inference from the bundle's folder with its defaults (input/ -> eval/), the Zoo checks, MONAI's training
    properties."""
    run = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", "configs/inference.json",
                          "--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"],
                         cwd=copied, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert nib.load(copied / "eval" / "vol.nii.gz").shape == (24, 20, 17)

    if SCHEMA.is_file():  # the Zoo's schema, from ../shared/zoo/
        zoo = subprocess.run([sys.executable, "-m", "misr_monai", "zoo", "check", ".", "--schema", str(SCHEMA)],
                             cwd=copied, capture_output=True, text=True, timeout=600)
        assert zoo.returncode == 0, zoo.stderr[-3000:]
        checks = [line.split(": ")[1] for line in zoo.stdout.splitlines() if line.startswith(".: ")]
        assert checks == ["directory", "version and changelog", "verify_metadata", "verify_net_in_out", "torchscript",
                          "large_files.yml", "pre-commit"]

    # the same voxels as misr upsample with the bundle folder as its model
    assert main(["upsample", str(copied / "input" / "vol.nii.gz"), str(copied / "cli.nii.gz"), "--model", str(copied)]) == 0
    np.testing.assert_array_equal(np.asanyarray(nib.load(copied / "cli.nii.gz").dataobj),
                                  np.asanyarray(nib.load(copied / "eval" / "vol.nii.gz").dataobj))
    np.testing.assert_array_equal(nib.load(copied / "cli.nii.gz").affine, nib.load(copied / "eval" / "vol.nii.gz").affine)

    # MONAI's inference properties, for inference and evaluation, without input or data; the training properties
    # without loading a volume (the datalist's files do not exist here)
    shutil.rmtree(copied / "input")
    for configs in (["inference.json"], ["inference.json", "evaluate.json"]):
        infer = _workflow(copied, configs, "infer", "run")
        assert infer.check_properties() == []
        assert type(infer.evaluator).__name__ == ("ProtocolEvaluator" if "evaluate.json" in configs else "VolumeEvaluator")
    bare = _workflow(copied, ["train.json"], "train", "training", output_dir=str(copied / "runs"))
    assert bare.check_properties() == []
    train = _workflow(copied, ["train.json"], "train", "training", dataset_dir=str(synthetic / "data"),
                      datalist_file=str(synthetic / "datalist.json"), cache_rate=0.0, output_dir=str(copied / "runs"))
    assert train.check_properties() == []
    assert train.parser.get_parsed_content("pretrained") == str(copied / "models" / "model.pt")  # fine-tunes by default


def test_wheel_installed_elsewhere_carries_the_shipped_bundles(tmp_path):
    """A wheel built from the checkout, installed (not editable) into a fresh target, upsamples with the default model
    from another folder: the bundles travel as package data."""
    root = Path(__file__).resolve().parents[1]
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", str(root), "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("misr_monai-*.whl"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                              str(tmp_path / "site"), str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_nifti(elsewhere / "scan.nii.gz", smooth_volume((24, 20, 9)))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    where = subprocess.run([sys.executable, "-c", "import misr_monai.predictors.registry as b; print(b.__file__); print(b.bundles_dir())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    module, bundles = where.stdout.split()
    assert Path(module).is_relative_to(tmp_path / "site") and Path(bundles) == tmp_path / "site" / "misr_monai" / "shipped_bundles"
    assert not list(Path(bundles).glob("*/runs"))  # the checkout's run outputs stay behind
    run = subprocess.run([sys.executable, "-m", "misr_monai", "upsample", "scan.nii.gz", "scan_x2.nii.gz"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"({DEFAULT_MODEL})" in run.stdout and nib.load(elsewhere / "scan_x2.nii.gz").shape == (24, 20, 17)


@pytest.mark.parametrize("copied", [b for b in BUNDLES if b.name.endswith(DEFAULT_MODEL)], indirect=True,
                         ids=lambda p: p.name)
def test_bundle_adapts_on_its_own(copied):
    """``adapt`` in a copied-out bundle's inference.json fine-tunes on each input volume before upsampling it."""
    run = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", "configs/inference.json",
                          "--adapt", "2", "--output_dir", "adapted"], cwd=copied, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "PSNR of the checking pairs" in run.stdout and nib.load(copied / "adapted" / "vol.nii.gz").shape == (24, 20, 17)
