# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The MONAI Model Zoo's bundle checks (its ``ci/verify_bundle.py``), run offline, and the files a submission carries.

``verify_bundle`` runs, in the Zoo's order: the bundle directory, version and changelog, ``verify_metadata`` against
the schema the metadata names (from a local copy when given), ``verify_net_in_out``, and the TorchScript check:
``ckpt_export`` of ``models/model.pt`` loads and gives the same output as the shipped ``models/model.ts``, whose
embedded metadata equals ``configs/metadata.json``. ``export_bundle`` regenerates ``models/model.ts`` and
``large_files.yml`` after the weights or the metadata change, and the bundle's configs that
``configs/bundle_configs.yaml`` derives from another bundle's (:py:func:`derived_configs`), and the metadata's
``eval_metrics`` from the committed comparison (:py:func:`eval_metrics`).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from misr_monai.weights import load_network
from misr_monai.io import InputError, atomic_write, file_sha256

__all__ = ["ZOO_FILE_LIMIT", "NO_TORCHSCRIPT", "CONFIG_SOURCE", "verify_bundle", "check_formatting", "export_bundle",
           "large_files_yaml", "requirements", "derived_configs", "EVAL_SOURCES", "eval_metrics", "stale_eval_metrics"]

ZOO_FILE_LIMIT = 25 * 2**20
"""The Zoo's limit on one file; larger files are listed in ``large_files.yml`` and downloaded."""

PRE_COMMIT_LIMIT = 2**20
"""The Zoo's pre-commit ``check-added-large-files --maxkb=1024``: a submission leaves bigger files to ``large_files.yml``."""

TEXT_SUFFIXES = (".json", ".md", ".yml", ".yaml", ".conf", ".txt")

CONFIG_SOURCE = Path("configs") / "bundle_configs.yaml"
"""Beside ``bundles/`` in the checkout: which bundle config files are derived from another bundle's, and how."""

COMPARISON = Path("docs") / "comparison"
"""Beside ``bundles/`` in the checkout: the committed comparison (``misr compare configs/comparison.yaml``)."""

_COLUMNS = {"psnr": 2, "psnr_core": 2, "ssim": 4, "sharpness": 3, "hf_ratio": 3, "gain_cubic_db": 2,
            "coverage_2std": 3, "coverage_2std_cal": 3}
EVAL_SOURCES = (
    ("summary.csv", "", _COLUMNS, None),
    ("release_0.7.0/summary.csv", "", _COLUMNS, ("fast_ddpm:k8",)),
    ("factors/x3/summary.csv", "x3_", {"psnr": 2}, None),
    ("factors/x2_thick/summary.csv", "thick_x2_", {"gain_cubic_db": 2}, None),
)
"""Where each bundle's ``eval_metrics`` come from: a ``summary.csv`` under :py:data:`COMPARISON`, the key's prefix
after ``{dataset}_test_``, the columns taken with their decimals (empty or NaN values are left out), and the methods
taken from it (None: every method). ``fast_ddpm:k8`` (weights unchanged since, 40 CPU minutes a run) is release 0.7.0's
run."""
_KEY_NAMES = {"gain_cubic_db": "gain_over_cubic_db"}

OUTPUT_FOLDERS = ("runs", "eval", "input")
"""What the bundles' configs write or read by default (training runs, results, inputs): not part of the bundle."""


def _bundle_files(bundle: Path) -> list[Path]:
    return sorted(p for p in bundle.rglob("*") if p.is_file() and p.relative_to(bundle).parts[0] not in OUTPUT_FOLDERS)

NO_TORCHSCRIPT = {
    "DiffusionModelUNet": "MONAI's attention block cannot be scripted (torch.jit cannot size its reshape), and "
    "the 10-step sampler around the network is Python; the Zoo lists such bundles in exclude_verify_torchscript_list",
}
"""Networks without a TorchScript export, and why (``models/model.ts`` is then absent)."""

URL_PLACEHOLDER = "https://github.com/OWNER/misr_monai/releases/download/VERSION/{bundle}_{name}"


@contextlib.contextmanager
def _quiet():
    """MONAI's bundle scripts log every argument at INFO; keep their warnings only."""
    logger = logging.getLogger("monai.bundle.scripts")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _files(bundle: Path) -> dict[str, Path]:
    return {"metadata": bundle / "configs" / "metadata.json", "inference": bundle / "configs" / "inference.json"}


def _network_name(bundle: Path) -> str:
    config = json.loads(_files(bundle)["inference"].read_text())
    return str(config["network_def"]["_target_"]).rsplit(".", 1)[-1]


def _forward_args(network: torch.nn.Module) -> dict:
    """Extra inputs of ``forward`` beyond the image: a diffusion network's ``timesteps``."""
    params = inspect.signature(network.forward).parameters
    return {"timesteps": torch.zeros(1, dtype=torch.long)} if "timesteps" in params else {}


def _network(bundle: Path) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(_files(bundle)["inference"]))
    parser["bundle_root"] = str(bundle)
    return load_network(parser.get_parsed_content("network_def"), bundle / "models" / "model.pt")



def large_files_yaml(bundle: str | os.PathLike) -> str:
    """``large_files.yml`` in the Zoo's format: each file of ``models/`` (a refiner's base network's weights too), a
    URL placeholder and its sha256."""
    import yaml

    bundle = Path(bundle)
    entries = [{"path": f"models/{p.name}", "url": URL_PLACEHOLDER.format(bundle=bundle.name, name=p.name),
                "hash_val": file_sha256(p), "hash_type": "sha256"}
               for p in sorted((bundle / "models").iterdir()) if p.is_file() and not p.name.startswith(".")]
    return yaml.safe_dump({"large_files": entries}, sort_keys=False)


def _hashes(text: str) -> dict[str, str]:
    import yaml

    return {e["path"]: e.get("hash_val") for e in yaml.safe_load(text)["large_files"]}


def requirements(bundle: str | os.PathLike) -> list[str]:
    """The pip requirements a Zoo user installs for ``bundle``, from its ``configs/metadata.json`` alone: MONAI,
    PyTorch and NumPy at the versions it names, then its required and optional packages."""
    metadata = json.loads(_files(Path(bundle))["metadata"].read_text())
    pinned = {"monai": metadata.get("monai_version"), "torch": metadata.get("pytorch_version"),
              "numpy": metadata.get("numpy_version"), **metadata.get("required_packages_version", {}),
              **metadata.get("optional_packages_version", {})}
    return [f"{name}=={version}" for name, version in pinned.items() if version]


def derived_configs(root: str | os.PathLike) -> dict[Path, str]:
    """The text of every derived bundle config file of the checkout ``root``, by path (see :py:data:`CONFIG_SOURCE`).

    Each is the same file of the bundle it derives from (itself derived or written by hand) with the listed values
    set through MONAI's config merging (``monai.bundle.utils.merge_kv``: ``a#b`` ids, ``+`` keys), as JSON indented by
    4; a file that is not JSON is copied and takes no values.

    Raises:
        InputError: no such source in ``root``.
    """
    import yaml
    from monai.bundle import ConfigParser
    from monai.bundle.utils import merge_kv

    root = Path(root)
    if not (root / CONFIG_SOURCE).is_file():
        raise InputError(f"{root / CONFIG_SOURCE}: not found; derived configs are made in the misr_monai checkout.")
    texts: dict[Path, str] = {}
    for folder, spec in yaml.safe_load((root / CONFIG_SOURCE).read_text()).items():
        for name, values in spec["files"].items():
            base = root / "bundles" / spec["from"] / "configs" / name
            text = texts.get(base) or base.read_text()
            if name.endswith(".json"):
                parser = ConfigParser(config=json.loads(text))
                for key, value in (values or {}).items():
                    merge_kv(parser, key, value)
                text = json.dumps(parser.get(), indent=4) + "\n"
            elif values:
                raise InputError(f"{root / CONFIG_SOURCE}: {folder}/{name} is not JSON and takes no values.")
            texts[root / "bundles" / folder / "configs" / name] = text
    return texts


def eval_metrics(bundle: str | os.PathLike, root: str | os.PathLike | None = None) -> dict[str, float]:
    """The ``eval_metrics`` of a shipped bundle, read from the committed comparison of the checkout ``root`` (default:
    the one this package runs from) as :py:data:`EVAL_SOURCES` says: ``{dataset}_test_{prefix}{metric}``, with
    ``_kK`` appended for a sampling model's rows (``fast_ddpm:k8``). Empty where ``root`` has no comparison.

    Example: ``ds002748_test_psnr`` of ``context_cnn`` is its ``psnr`` in the ``ds002748`` row of
    ``docs/comparison/summary.csv``, rounded to 2 decimals.
    """
    import csv
    import math

    from misr_monai.predictors.registry import BUNDLES, bundles_dir, split_samples

    root = Path(root) if root is not None else bundles_dir().parent
    short = {folder: name for name, folder in BUNDLES.items()}.get(Path(bundle).resolve().name)
    metrics: dict[str, float] = {}
    for source, prefix, columns, methods in EVAL_SOURCES:
        path = root / COMPARISON / source
        if short is None or not path.is_file():
            continue
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                name, samples = split_samples(row["method"])
                if name != short or row["method"].endswith(":se") or (methods and row["method"] not in methods):
                    continue
                suffix = f"_k{samples}" if samples else ""
                for column, digits in columns.items():
                    value = float(row.get(column) or "nan")
                    if not math.isnan(value):
                        key = f"{row['dataset']}_test_{prefix}{_KEY_NAMES.get(column, column)}{suffix}"
                        metrics[key] = round(value, digits)
    return metrics


def stale_eval_metrics(bundle: str | os.PathLike, root: str | os.PathLike | None = None) -> list[str]:
    """The ``eval_metrics`` keys of the bundle's ``configs/metadata.json`` that differ from :py:func:`eval_metrics`
    (missing, extra or another value), each as ``key: stated -> committed``."""
    stated = json.loads((Path(bundle) / "configs" / "metadata.json").read_text()).get("eval_metrics", {})
    committed = eval_metrics(bundle, root)
    return [f"{k}: {stated.get(k)} -> {committed.get(k)}" for k in sorted(set(stated) | set(committed))
            if stated.get(k) != committed.get(k)]


def _write_eval_metrics(bundle: Path) -> bool:
    """Set the metadata's ``eval_metrics`` from the committed comparison, where this checkout has one; True if so."""
    metrics = eval_metrics(bundle)
    if not metrics:
        return False
    path = bundle / "configs" / "metadata.json"
    metadata = json.loads(path.read_text())
    if metadata.get("eval_metrics") != metrics:
        metadata["eval_metrics"] = metrics
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(metadata, indent=4) + "\n"))
    return True


def export_bundle(bundle: str | os.PathLike) -> list[Path]:
    """Regenerate the bundle's derived configs (:py:func:`derived_configs`, when it is a bundle of this checkout) and
    its metadata's ``eval_metrics`` (:py:func:`eval_metrics`, likewise), then ``models/model.ts`` (``ckpt_export``, where the network can be scripted) and ``large_files.yml``.

    Returns:
        the files written.
    """
    from monai.bundle import ckpt_export

    from misr_monai.predictors.registry import bundles_dir

    bundle = Path(bundle)
    written = []
    root = bundles_dir().parent
    if (root / CONFIG_SOURCE).is_file():
        for path, text in derived_configs(root).items():
            if path.parent.parent.resolve() == bundle.resolve():
                written.append(bundle / "configs" / path.name)
                atomic_write(written[-1], lambda tmp, text=text: Path(tmp).write_text(text))
    if _write_eval_metrics(bundle):
        written.append(bundle / "configs" / "metadata.json")
    files = _files(bundle)
    if _network_name(bundle) not in NO_TORCHSCRIPT:
        def export(tmp):
            ckpt_export(net_id="network_def", filepath=tmp, ckpt_file=str(bundle / "models" / "model.pt"),
                        meta_file=str(files["metadata"]), config_file=str(files["inference"]), bundle_root=str(bundle))

        with _quiet():
            atomic_write(bundle / "models" / "model.ts", export)
        written.append(bundle / "models" / "model.ts")
    text = large_files_yaml(bundle)
    atomic_write(bundle / "large_files.yml", lambda tmp: Path(tmp).write_text(text))
    return [*written, bundle / "large_files.yml"]


def _check_torchscript(bundle: Path, network: torch.nn.Module, metadata: dict) -> str:
    from monai.bundle import ckpt_export
    from monai.data import load_net_with_metadata

    name = _network_name(bundle)
    if name in NO_TORCHSCRIPT:
        if (bundle / "models" / "model.ts").exists():
            raise InputError(f"{bundle}: models/model.ts exists but {name} has no TorchScript export.")
        return f"skipped: {NO_TORCHSCRIPT[name]}"
    files = _files(bundle)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_export(net_id="network_def", filepath=f"{tmp}/verify_model.ts", ckpt_file=str(bundle / "models" / "model.pt"),
                    meta_file=str(files["metadata"]), config_file=str(files["inference"]), bundle_root=str(bundle))
        exported, _, _ = load_net_with_metadata(f"{tmp}/verify_model.ts")
    if not (bundle / "models" / "model.ts").is_file():
        raise InputError(f"{bundle}: no models/model.ts; run `misr zoo export {bundle}`.")
    shipped, embedded, extra = load_net_with_metadata(str(bundle / "models" / "model.ts"), more_extra_files=("inference.json",))
    stale = sorted(k for k, v in metadata.items() if embedded.get(k) != v)
    if stale:
        raise InputError(f"{bundle}: models/model.ts embeds other metadata ({', '.join(stale)}); run `misr zoo export {bundle}`.")
    if json.loads(extra["inference.json"]) != json.loads(files["inference"].read_text()):
        raise InputError(f"{bundle}: models/model.ts embeds another configs/inference.json; run `misr zoo export {bundle}`.")
    torch.manual_seed(0)
    x = torch.rand(1, metadata["network_data_format"]["inputs"]["image"]["num_channels"], 32, 32)
    with torch.no_grad():
        reference, from_export, from_shipped = network(x), exported(x), shipped(x)
    if not (torch.allclose(reference, from_export, atol=1e-5) and torch.allclose(reference, from_shipped, atol=1e-5)):
        raise InputError(f"{bundle}: models/model.ts does not compute what models/model.pt does; run `misr zoo export {bundle}`.")
    return "ckpt_export of model.pt and the shipped model.ts load and agree with model.pt; model.ts embeds the current metadata.json and inference.json"


def check_formatting(bundle: str | os.PathLike) -> str:
    """What the Zoo's pre-commit hooks check: JSON as ``pretty-format-json --indent=4 --no-sort-keys`` writes it,
    a final newline and no trailing whitespace in text files, and files over 1 MB listed in ``large_files.yml``.

    Raises:
        InputError: the first file that the hooks would reject or rewrite.
    """
    import yaml

    bundle = Path(bundle)
    for path in (p for p in _bundle_files(bundle) if p.suffix in TEXT_SUFFIXES):
        text, name = path.read_text(), path.relative_to(bundle).as_posix()
        if path.suffix == ".json" and text != json.dumps(json.loads(text), indent=4) + "\n":
            raise InputError(f"{bundle}: {name} is not formatted as JSON with 4-space indents and a final newline.")
        if not text.endswith("\n") or text.endswith("\n\n") or any(line != line.rstrip() for line in text.splitlines()):
            raise InputError(f"{bundle}: {name} has trailing whitespace or no single final newline.")
    large = bundle / "large_files.yml"
    listed = {e["path"] for e in yaml.safe_load(large.read_text())["large_files"]} if large.is_file() else set()
    big = [p.relative_to(bundle).as_posix() for p in _bundle_files(bundle) if p.stat().st_size > PRE_COMMIT_LIMIT]
    unlisted = [name for name in big if name not in listed]
    if unlisted:
        raise InputError(f"{bundle}: files over 1 MB not in large_files.yml: {', '.join(unlisted)}.")
    return f"JSON indented by 4, final newlines, no trailing whitespace; files over 1 MB ({', '.join(big) or 'none'}) in large_files.yml"


def verify_bundle(bundle: str | os.PathLike, schema: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """Run the Zoo's bundle checks on ``bundle``; ``schema`` is a local copy of the metadata schema (else downloaded).

    Returns:
        ``[(check, result), ...]`` in the Zoo's order.

    Raises:
        InputError: the first failed check, in one line naming it.
    """
    from monai.bundle import verify_metadata, verify_net_in_out

    bundle = Path(bundle)
    files, results = _files(bundle), []
    for required in ("LICENSE", "configs/metadata.json", "configs/inference.json", "docs/README.md", "models/model.pt"):
        if not (bundle / required).is_file():
            raise InputError(f"{bundle}: directory check failed: no {required}.")
    big = [p.relative_to(bundle).as_posix() for p in _bundle_files(bundle) if p.stat().st_size > ZOO_FILE_LIMIT]
    if big:
        raise InputError(f"{bundle}: files over the Zoo's 25 MB limit: {', '.join(big)}.")
    results.append(("directory", "LICENSE, configs/metadata.json, configs/inference.json, docs/README.md, models/model.pt; no file over 25 MB"))
    metadata = json.loads(files["metadata"].read_text())
    if metadata.get("version") not in metadata.get("changelog", {}):
        raise InputError(f"{bundle}: version {metadata.get('version')!r} is not in the changelog of configs/metadata.json.")
    results.append(("version and changelog", f"version {metadata['version']} is in the changelog"))
    try:
        import jsonschema  # noqa: F401  (verify_metadata's validator; MONAI imports it optionally)
    except ImportError:
        raise InputError("misr zoo check needs jsonschema, a dependency of misr_monai missing here: pip install jsonschema.") from None
    if schema is not None and not Path(schema).is_file():
        raise InputError(f"{schema}: no such schema file; give a local copy of {metadata.get('schema')}.")
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        try:
            verify_metadata(meta_file=str(files["metadata"]), filepath=str(schema or Path(tmp) / "schema.json"))
        except ValueError as err:
            raise InputError(f"{bundle}: verify_metadata: {' '.join(str(err).split())}") from None
        except Exception as err:  # the schema's download, offline or refused: urllib, requests and MONAI raise their own
            raise InputError(f"{bundle}: verify_metadata could not download the schema {metadata.get('schema')} "
                             f"({type(err).__name__}); pass --schema with a local copy of it.") from None
    results.append(("verify_metadata", f"valid against {Path(metadata['schema']).name}" + (f" (copy: {schema})" if schema else "")))
    network = _network(bundle)
    with _quiet():
        try:
            verify_net_in_out(net_id="network_def", meta_file=str(files["metadata"]), config_file=str(files["inference"]),
                              bundle_root=str(bundle), device="cpu", extra_forward_args=_forward_args(network))
        except (ValueError, RuntimeError) as err:
            raise InputError(f"{bundle}: verify_net_in_out: {' '.join(str(err).split())}") from None
        results.append(("verify_net_in_out", "channels and dtype of network_def match network_data_format"))
        results.append(("torchscript", _check_torchscript(bundle, network, metadata)))
    large = bundle / "large_files.yml"
    if not large.is_file() or _hashes(large.read_text()) != _hashes(large_files_yaml(bundle)):
        raise InputError(f"{bundle}: large_files.yml is missing or does not hash the current models/; run `misr zoo export {bundle}`.")
    results.append(("large_files.yml", "lists every file of models/ with its sha256"))
    results.append(("pre-commit", check_formatting(bundle)))
    return results
