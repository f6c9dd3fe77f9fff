# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The ``misr`` command's parser: upsample, adapt, evaluate, compare, uncertainty, calibrate, datalist, demo, curve, zoo,
benchmark; each runs its function of :py:mod:`misr_monai.apps.commands`.

Heavy imports (torch, MONAI) happen inside the subcommands, so ``misr --help`` is instant. Bad input ends with one
line on stderr naming the file and the problem, exit code 2, and nothing written.
"""

from __future__ import annotations

import argparse
import sys

from misr_monai.apps import commands
from misr_monai.apps.benchmarks import add_arguments as add_benchmark_arguments
from misr_monai.predictors.registry import BUNDLES, DEFAULT_MODEL

__all__ = ["main"]

def _overrides(extra: list[str], parser: argparse.ArgumentParser) -> dict:
    """``--key value`` pairs after a config, as ``monai.bundle run`` takes them: nested ids with ``#``, values YAML."""
    import yaml

    if len(extra) % 2 or not all(k.startswith("--") for k in extra[::2]):
        parser.error(f"overrides must be --key value pairs, got {' '.join(extra)}")
    return {k[2:]: yaml.safe_load(v) for k, v in zip(extra[::2], extra[1::2])}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


_DESCRIPTION = "misr: MRI slice super-resolution on MONAI (x2 through-plane upsampling of NIfTI volumes and DICOM series)."
_EPILOG = f"""first run:
  misr demo --out demo_output                  upsample the embedded demo volume and draw what the model does
  misr upsample scan.nii.gz scan_x2.nii.gz     your own volume (or a folder of them, or a DICOM series folder)

models (--model): linear, cubic, {", ".join(BUNDLES)}, or a bundle folder;
default {DEFAULT_MODEL}, the best of the comparison (README)."""
_MODEL_HELP = f"linear, cubic, a shipped bundle ({', '.join(BUNDLES)}) or a bundle folder (default: {DEFAULT_MODEL})"


def _model_options(p: argparse.ArgumentParser, precision: str = "fp32", std_map: bool = False, samples: int = 1) -> None:
    """The options of a command that runs a model: device, batch, samples, seed, precision, self-ensemble."""
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="slice pairs per forward pass at most; a pass also takes at most 65,536 pixels on a CPU "
                        "(one 256x256 slice) and 4 of 512x512 on a GPU, so results and memory do not depend on "
                        "it (default: 8)")
    p.add_argument("--samples", type=_positive_int, default=samples,
                   help="fast_ddpm: samples per slice, the output is their mean"
                        + ("; with K > 1 their per-voxel standard deviation is written to OUT_std.nii.gz"
                           if std_map else "") + f" (default: {samples})")
    p.add_argument("--seed", type=int, default=None, help="fast_ddpm: noise seed (default: the bundle's, 0)")
    p.add_argument("--precision", default=precision, help="fp32, bf16 (autocast; needs native bfloat16) or auto "
                   "(bf16 where the device has it and the model's measured PSNR change is below 0.01 dB) "
                   f"(default: {precision})")
    p.add_argument("--self-ensemble", action="store_true",
                   help="network models: the mean of 16 predictions under in-plane flips, 90-degree rotations and "
                        "the reversed slice order (16x the time; a model name ending in :se does the same)")
    p.add_argument("--sharpness", type=float, default=None, metavar="A",
                   help="srgan: the strength of its refinement of context_cnn, 0 (context_cnn) to 1 (the full GAN); "
                        "higher gives new slices as sharp as the acquired ones at some PSNR (a model name ending in "
                        "@A does the same; default: the bundle's)")


def _adapt_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--adapt", type=float, default=None, metavar="SECONDS", help=what)


def _datalist_options(p: argparse.ArgumentParser, split: str) -> None:
    """The volumes of a protocol run: datalists, their split, and the folder their paths are relative to."""
    p.add_argument("--datalist", nargs="+", required=True, help="one or more decathlon-style datalist JSON files")
    p.add_argument("--split", default=split, help=f"datalist split (default: {split})")
    p.add_argument("--dataset-dir", required=True, help="folder the datalist paths are relative to")


def _add_model_commands(sub) -> None:
    """upsample, demo, evaluate, uncertainty, calibrate: the commands that run a model."""
    p = sub.add_parser("upsample", help="x2 (or x4, x8) through-plane upsampling of a NIfTI volume, a folder of them, "
                                        "or a DICOM series")
    p.add_argument("input", help="3D NIfTI volume (.nii or .nii.gz), a folder of them, or a folder of one DICOM "
                                 "series; never modified")
    p.add_argument("output", help="NIfTI file to write; for a folder of volumes a folder (same file names; bad files "
                                  "are said in one line and skipped); for a DICOM series a folder for the new series")
    p.add_argument("--model", default=DEFAULT_MODEL, help=_MODEL_HELP)
    p.add_argument("--axis", type=int, default=None, help="slice axis 0, 1 or 2 (default: the largest spacing)")
    p.add_argument("--factor", type=int, default=2, help="new slice spacing = spacing / FACTOR, 2 to 8: one pass of "
                   "context_cnn, context_cnn_brain or cubic; the other models take 2, 4 or 8 (x2 passes) (default: 2)")
    p.add_argument("--spacing", type=float, default=None, metavar="MM",
                   help="instead of --factor: the factor that brings the slice spacing nearest MM (printed)")
    p.add_argument("--slice-thickness", type=float, default=None, metavar="MM",
                   help="the acquired slice thickness, which the context models are told (over the spacing: 0 thin "
                        "slices with gaps, 1 contiguous thick slices); default: a DICOM series' SliceThickness, "
                        "for NIfTI w = 1, contiguous slices (printed)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _adapt_option(p, "first fine-tune a copy of the network model on the input volume's own slices for at most "
                     "SECONDS (self-supervised; kept only where it predicts the scan's held-out slices better)")
    p.add_argument("--figure", default=None, help="also write a PNG of a plane through the slice axis")
    p.add_argument("--output-format", choices=("dicom", "nifti"), default="dicom",
                   help="for a DICOM series input: a new DICOM series (a folder) or a NIfTI file (default: dicom)")
    _model_options(p, precision="auto", std_map=True)
    p.set_defaults(func=commands.upsample_command)

    p = sub.add_parser("demo", help="the embedded demo volume decimated x2, reconstructed by the model and by cubic, "
                                    "and a figure")
    p.add_argument("--out", default="demo_output", help="folder for the NIfTI files and the PNG (default: demo_output)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=_MODEL_HELP)
    p.add_argument("--factor", type=int, default=2, help="keep every FACTOR-th slice, 2 to 8 (default: 2)")
    _model_options(p, precision="auto")
    p.set_defaults(func=commands.demo_command)

    p = sub.add_parser("evaluate", help="the evaluation protocol on a datalist split: tables and figures")
    _datalist_options(p, "test")
    p.add_argument("--methods", default="linear,cubic", help="comma-separated; linear and cubic are always included")
    p.add_argument("--out", required=True, help="folder for per_volume/summary .csv/.md and PNG figures")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--factor", type=int, default=2, help="keep every FACTOR-th slice, score the others (default: 2)")
    p.add_argument("--thick", type=float, nargs="?", const=1.0, default=0.0, metavar="W",
                   help="the protocol's thick-slice variant: the volume filtered along the slice axis by a box FACTOR "
                        "slices wide first (../shared/EVALUATION.md); W in (0, 1): a box W x FACTOR wide")
    p.add_argument("--slice-profile", type=float, default=None, metavar="W",
                   help="the slice profile the context models are told (default: the simulation's, W or 0)")
    _adapt_option(p, "also score each network model adapted for SECONDS to each volume's kept slices (as "
                     "context_cnn:aSECONDS), beside it")
    _model_options(p)
    p.set_defaults(func=commands.evaluate_command)

    p = sub.add_parser("adapt", help="fine-tune a network model on scans of one protocol (self-supervised, no ground "
                                     "truth) and write it as a bundle folder")
    p.add_argument("scans", nargs="+", help="NIfTI volumes or DICOM series folders; never modified")
    p.add_argument("--out", required=True, help="the bundle folder to write")
    p.add_argument("--model", default=DEFAULT_MODEL, help="a network model: short name or bundle folder "
                                                          f"(default: {DEFAULT_MODEL})")
    p.add_argument("--seconds", type=float, default=180.0, help="time limit of the fine-tuning (default: 180)")
    p.add_argument("--factor", type=int, default=2, help="the factor the scans will be upsampled by (default: 2)")
    p.add_argument("--slice-thickness", type=float, default=None, metavar="MM",
                   help="the acquired slice thickness (default: a DICOM series' SliceThickness, else contiguous)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(func=commands.adapt_command)

    p = sub.add_parser("uncertainty", help="error against the std of K samples of a sampling model (fast_ddpm)")
    _datalist_options(p, "test")
    p.add_argument("--model", default="fast_ddpm", help="a sampling model: short name or bundle folder")
    p.add_argument("--slab", type=int, default=8, help="reconstructed slices per volume, at its middle (default: 8)")
    p.add_argument("--out", required=True, help="folder for uncertainty.{csv,md} and PNG figures")
    _model_options(p, samples=8)
    p.set_defaults(func=commands.uncertainty_command)

    p = sub.add_parser("calibrate", help="fit a sampling model's std recalibration (a, b) on a validation split; "
                                         "--write stores it in the bundle's inference.json")
    _datalist_options(p, "validation")
    p.add_argument("--model", default="fast_ddpm", help="a sampling model: short name or bundle folder")
    p.add_argument("--write", action="store_true", help="store the fit as std_calibration in configs/inference.json")
    p.add_argument("--fit", choices=("conformal", "gaussian"), default="conformal",
                   help="conformal: a = 0 and mean +- 2 calibrated std the split-conformal 90%% interval; gaussian: "
                        "(a, b) by Gaussian likelihood (default: conformal)")
    _model_options(p, samples=8)
    p.set_defaults(func=commands.calibrate_command)


def _add_tool_commands(sub) -> None:
    """compare, datalist, curve, zoo, benchmark."""
    p = sub.add_parser("compare", help="one experiment config (configs/comparison.yaml) -> tables, statistics, "
                                       "figures and report.md; resumable")
    p.add_argument("config", help="YAML/JSON experiment; any key can be overridden with --key value (nested: a#b)")
    p.add_argument("--out", required=True, help="results folder (per-volume results are cached in OUT/cache)")
    p.set_defaults(func=commands.compare_command)

    p = sub.add_parser("datalist", help="a seeded, patient-wise datalist for a folder of NIfTI files")
    p.add_argument("dir", help="dataset folder; datalist paths are relative to it")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--pattern", default="**/*.nii*", help="glob relative to DIR (default: **/*.nii*)")
    p.add_argument("--val", type=float, default=0.2, help="validation subjects: fraction < 1 or count (default: 0.2)")
    p.add_argument("--test", type=float, default=0.2, help="test subjects: fraction < 1 or count (default: 0.2)")
    p.add_argument("--seed", type=int, default=0, help="shuffling seed (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing datalist")
    p.set_defaults(func=commands.datalist_command)

    p = sub.add_parser("curve", help="plot training/validation scalars from TensorBoard event files to a PNG")
    p.add_argument("log_dir", help="folder with events.out.tfevents.* (searched recursively)")
    p.add_argument("--tags", default="val_psnr", help="comma-separated scalar tags (default: val_psnr)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--by-run", action="store_true", help="one line per folder of event files (to compare runs)")
    p.set_defaults(func=commands.curve_command)

    p = sub.add_parser("zoo", help="the Model Zoo's bundle checks (check); regenerate models/model.ts and "
                                   "large_files.yml after the weights or metadata change (export); the pip "
                                   "requirements its metadata names (requirements)")
    p.add_argument("action", choices=("check", "export", "requirements"))
    p.add_argument("bundles", nargs="+", help="bundle folders")
    p.add_argument("--schema", default=None, help="local copy of the metadata schema (default: download the one "
                                                  "configs/metadata.json names)")
    p.set_defaults(func=commands.zoo_command)

    p = sub.add_parser("benchmark", help="time, multiply-adds per second against a same-run matmul ceiling, and memory "
                                         "of each method on a synthetic volume")
    add_benchmark_arguments(p)
    p.set_defaults(func=commands.benchmark_command)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="misr", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_model_commands(sub)
    _add_tool_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``misr`` console script; returns the exit code."""
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "compare":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides, args.argv = _overrides(extra, parser), argv
    from misr_monai.io import InputError

    try:
        args.func(args)
    except InputError as err:
        print("misr: error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("misr: interrupted; no partial output was kept.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
