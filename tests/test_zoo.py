"""The Model Zoo's bundle checks, offline, on every folder of ``bundles/``; and that they catch what they should."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from misr_monai.io import InputError
from misr_monai.zoo import derived_configs, eval_metrics, export_bundle, stale_eval_metrics, verify_bundle
from tests.conftest import BUNDLES, ROOT, SCHEMA, needs_schema

DATASETS = ("ds002748", "ds011", "prostate3t", "prostatex")
CHECKS = ["directory", "version and changelog", "verify_metadata", "verify_net_in_out", "torchscript", "large_files.yml",
          "pre-commit"]


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
@needs_schema
def test_bundle_passes_the_zoo_checks(bundle):
    results = verify_bundle(bundle, SCHEMA)
    assert [check for check, _ in results] == CHECKS
    print("\n".join(f"{bundle.name}: {check}: {result}" for check, result in results))


@pytest.fixture
def copy(tmp_path):
    bundle = tmp_path / "residual_cnn"
    shutil.copytree(ROOT / "bundles" / "mri_slice_interpolation_residual_cnn", bundle,
                    ignore=shutil.ignore_patterns("runs", "eval"))
    return bundle


def _edit_metadata(bundle: Path, **changes) -> None:
    path = bundle / "configs" / "metadata.json"
    metadata = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps({k: v for k, v in metadata.items() if v is not None}, indent=4) + "\n")


@pytest.mark.parametrize("change, message", [
    ({"authors": None}, "verify_metadata: 'authors' is a required property"),
    ({"version": "9.9.9"}, "version '9.9.9' is not in the changelog"),
    ({"eval_metrics": {"psnr": 1.0}}, "models/model.ts embeds other metadata (eval_metrics)"),
])
@needs_schema
def test_zoo_checks_catch_bad_metadata(copy, change, message):
    _edit_metadata(copy, **change)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        verify_bundle(copy, SCHEMA)


@needs_schema
def test_zoo_checks_catch_stale_weights_and_export_mends_them(copy):
    state = torch.load(copy / "models" / "model.pt", weights_only=True)
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, copy / "models" / "model.pt")
    with pytest.raises(InputError, match="model.ts does not compute what models/model.pt does"):
        verify_bundle(copy, SCHEMA)
    assert export_bundle(copy) == [copy / "models" / "model.ts", copy / "large_files.yml"]
    assert [check for check, _ in verify_bundle(copy, SCHEMA)] == CHECKS


@needs_schema
def test_zoo_checks_catch_wrong_channels(copy):
    path = copy / "configs" / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata["network_data_format"]["outputs"]["pred"]["num_channels"] = 2
    path.write_text(json.dumps(metadata, indent=4) + "\n")
    with pytest.raises(InputError, match="verify_net_in_out: output channel number `1` doesn't match: `2`"):
        verify_bundle(copy, SCHEMA)


@needs_schema
def test_zoo_checks_catch_what_pre_commit_rejects(copy):
    datalist = copy / "configs" / "datalist.json"
    datalist.write_text(json.dumps(json.loads(datalist.read_text()), indent=2))  # as misr datalist wrote it before
    with pytest.raises(InputError, match="configs/datalist.json is not formatted as JSON with 4-space indents"):
        verify_bundle(copy, SCHEMA)


def test_an_offline_schema_download_or_a_missing_copy_is_one_line(copy, monkeypatch):
    import urllib.error

    import monai.bundle

    def offline(**kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(monai.bundle, "verify_metadata", offline)
    with pytest.raises(InputError, match="could not download the schema .* pass --schema with a local copy"):
        verify_bundle(copy)
    with pytest.raises(InputError, match="no such schema file"):
        verify_bundle(copy, copy / "no_schema.json")


def test_derived_bundle_configs_are_what_their_source_gives():
    """configs/bundle_configs.yaml is the one source of the bundles' repeated configs: every derived file as committed
    is what it gives (after a change to a base or a delta, `misr zoo export` rewrites them)."""
    derived = derived_configs(ROOT)
    assert len(derived) == 26  # 18 in 0.10.0, and each derived bundle's multi_gpu_inference.json and multi_gpu_evaluate.json
    for path, text in derived.items():
        assert path.read_text() == text, f"{path}: not what configs/bundle_configs.yaml gives; run misr zoo export"


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_eval_metrics_are_the_committed_comparison(bundle):
    """Every number a bundle's metadata states is its row of docs/comparison/ at the stated rounding (`misr zoo
    export` writes them), and every row there is stated."""
    metrics = eval_metrics(bundle)
    assert len(metrics) >= 16 and all(k.split("_test_")[0] in DATASETS for k in metrics)
    assert stale_eval_metrics(bundle) == [], "run misr zoo export " + str(bundle)


def test_stale_eval_metrics_are_named(copy):
    """Values typed by hand (release 0.4's context_cnn) are caught, each with what the comparison says."""
    real = ROOT / "bundles" / "mri_slice_interpolation_context_cnn"
    shutil.rmtree(copy)
    shutil.copytree(real, copy.parent / real.name, ignore=shutil.ignore_patterns("runs", "eval", "models"))
    bundle = copy.parent / real.name
    committed = eval_metrics(bundle, ROOT)
    _edit_metadata(bundle, eval_metrics={**committed, "ds002748_test_psnr": 35.36, "ds002748_test_ssim": 0.9793,
                                         "ds002748_test_made_up": 1.0})
    stale = stale_eval_metrics(bundle, ROOT)
    assert stale == ["ds002748_test_made_up: 1.0 -> None", f"ds002748_test_psnr: 35.36 -> {committed['ds002748_test_psnr']}",
                     f"ds002748_test_ssim: 0.9793 -> {committed['ds002748_test_ssim']}"]
