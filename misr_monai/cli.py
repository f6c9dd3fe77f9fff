# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The ``misr`` command: upsample, adapt, evaluate, compare, uncertainty, datalist, demo, curve, benchmark.

Heavy imports (torch, MONAI) happen inside the subcommands, so ``misr --help`` is instant. Bad input ends with one
line on stderr naming the file and the problem, exit code 2, and nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from misr_monai.apps.benchmarks import add_arguments as add_benchmark_arguments
from misr_monai.predictors.registry import BUNDLES, DEFAULT_MODEL

__all__ = ["main"]

DEMO_VOLUME = Path(__file__).parent / "data" / "sub-53_T1w.nii.gz"


def _device(name: str | None) -> str:
    """The torch device to run on: ``name``, checked, or cuda when available, else cpu."""
    import torch

    from misr_monai.io import InputError

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name}: not a torch device (cpu, cuda, cuda:1...).") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine; use --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    return name


def _make_folder(path) -> Path:
    from misr_monai.io import InputError

    path = Path(path)
    if path.is_file():
        raise InputError(f"{path}: is a file; give a folder for the outputs.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{path}: cannot create the output folder ({err.strerror}).") from None
    return path


def _upsample(args) -> None:
    from misr_monai.predictors.registry import load_predictor
    from misr_monai.io import InputError, check_output_path
    from misr_monai.volume import describe, source_kind, upsample

    device = _device(args.device)
    kind = source_kind(Path(args.input))  # upsample checks every argument, before it loads the model
    if args.figure:
        if kind == "folder":
            raise InputError("--figure draws one volume; it is not available for a folder of volumes.")
        check_output_path(args.figure, overwrite=True, suffixes=(".png",))

    def load():  # called by upsample once the input is read and checked
        predict = load_predictor(args.model, device, args.batch_size, True, args.samples, args.seed, args.precision,
                                 args.self_ensemble, args.sharpness, args.adapt)
        if getattr(predict, "precision", None) is not None:
            print(f"{args.model}: {predict.precision} on {device}"
                  + (f" (--precision {args.precision})" if args.precision == "auto" else ""))
        return predict

    summaries = upsample(args.input, args.output, load, args.axis, args.factor, args.overwrite, args.samples > 1,
                         args.output_format, args.model, args.spacing, args.slice_thickness)
    if kind == "folder":
        print(f"{args.output}: {len(summaries)} volumes ({args.model})")
        return
    info = summaries[0]
    print(f"{args.output}: {describe(info)} ({args.model})")
    if "std_output" in info:
        print(f"{info['std_output']}: per-voxel standard deviation of {args.samples} samples")
    if args.figure:
        _preview(info, args.figure, Path(args.input).name)


def _preview(info: dict, figure, name: str) -> None:
    from misr_monai.apps.figures import upsample_figure

    (original, affine), (upsampled, out_affine) = info["original"], info["upsampled"]
    upsample_figure(original, upsampled, info["axis"], (affine, out_affine), figure, name)
    print(f"{figure}: figure")


def _demo(args) -> None:
    """The demo volume decimated xF (every F-th slice kept), reconstructed by the model and by cubic, beside the truth."""
    import numpy as np

    from misr_monai.predictors.registry import load_predictor
    from misr_monai.apps.figures import demo_figure
    from misr_monai.interpolation import cubic_interpolate
    from misr_monai.io import load_volume, save_volume
    from misr_monai.transforms.utils import find_slice_axis, voxel_spacing
    from misr_monai.volume import check_factor, check_model_factor, upsample, upsample_volume

    factor = check_factor(args.factor)
    out = _make_folder(args.out)
    device = _device(args.device)
    predict = load_predictor(args.model, device, args.batch_size, True, args.samples, args.seed, args.precision,
                             args.self_ensemble, args.sharpness)
    check_model_factor(predict, factor, args.model)
    truth, img = load_volume(DEMO_VOLUME)
    axis = find_slice_axis(img.affine)
    stem = DEMO_VOLUME.name.split(".nii")[0]
    decimated = np.take(truth, np.arange(0, truth.shape[axis], factor), axis=axis)
    coarse = np.array(img.affine, dtype=np.float64)
    coarse[:3, axis] *= factor  # every F-th slice: F times the spacing, the first slice where it was
    save_volume(out / f"{stem}_decimated.nii.gz", decimated, coarse, img)
    result = out / f"{stem}_x{factor}_{Path(args.model).name}.nii.gz"
    thickness = float(voxel_spacing(img.affine)[axis])  # thin slices: each as thick as the original spacing
    info = upsample(out / f"{stem}_decimated.nii.gz", result, predict, axis, factor, overwrite=True,
                    slice_thickness=thickness)[0]
    print(f"{result}: {info['input_shape']} -> {info['output_shape']}, the input: every slice {factor} of "
          f"{DEMO_VOLUME.name} ({args.model}, {getattr(predict, 'precision', 'fp32')} on {device})")
    crop = np.take(truth, np.arange(info["output_shape"][axis]), axis=axis)
    reconstructions = {"cubic": upsample_volume(decimated, axis, cubic_interpolate, factor),
                       args.model: info["upsampled"][0]}
    figure = out / f"{stem}_x{factor}.png"
    psnr = demo_figure(crop, reconstructions, axis, img.affine, figure,
                       f"{DEMO_VOLUME.name}: x{factor} through-plane, {args.model} against cubic "
                       f"(every slice {factor} kept, the others reconstructed)", factor)
    print(f"{figure}: figure; PSNR of the new slices: " + ", ".join(f"{k} {v:.2f} dB" for k, v in psnr.items()))


def _evaluate(args) -> None:
    from misr_monai.apps.evaluation import evaluate
    from misr_monai.interpolation import BASELINES
    from misr_monai.predictors.registry import load_predictor
    from misr_monai.io import InputError
    from misr_monai.predictors.base import samples_of
    from misr_monai.volume import check_factor, check_model_factor

    from misr_monai.apps.comparison import with_adapted

    methods = [m for m in args.methods.split(",") if m]
    for required in ("cubic", "linear"):
        if required not in methods:
            methods.insert(0, required)
    methods = with_adapted(methods, args.adapt)
    if not Path(args.dataset_dir).is_dir():
        raise InputError(f"{args.dataset_dir}: dataset folder not found.")
    device = _device(args.device)
    predictors = {m: load_predictor(m, device, args.batch_size, samples=args.samples, seed=args.seed,
                                    precision=args.precision, self_ensemble=args.self_ensemble and m not in BASELINES,
                                    sharpness=args.sharpness if m not in BASELINES else None)
                  for m in methods}
    for m, predict in predictors.items():
        check_model_factor(predict, check_factor(args.factor), m)
        if args.factor != 2 and samples_of(predict) > 1:
            raise InputError(f"{m}: the mean of several samples (--samples) is scored at --factor 2 only.")
    out = _make_folder(args.out)
    evaluate(args.datalist, args.split, predictors, args.dataset_dir, out, figures=not args.no_figures,
             factor=args.factor, thick=args.thick, profile=args.slice_profile)
    print((out / "summary.md").read_text(), end="")
    print(f"tables and figures in {out}")


def _adapt(args) -> None:
    from misr_monai.adaptation import describe_adaptation
    from misr_monai.apps.adaptation import adapt_bundle

    report = adapt_bundle(args.scans, args.model, args.out, args.seconds, args.factor, args.slice_thickness,
                          _device(args.device), args.overwrite)
    print(describe_adaptation(report, args.model))
    print(f"{args.out}: bundle written ({'adapted' if report['adapted'] else 'the shipped'} weights in models/model.pt; "
          f"the report in docs/adaptation.json); use it with misr upsample --model {args.out}")


def _compare(args) -> None:
    import shlex

    from misr_monai.apps.comparison import compare, load_experiment

    experiment = load_experiment(args.config, args.overrides)
    out = _make_folder(args.out)
    command = shlex.join(["misr", *args.argv])
    result = compare(experiment, out, command)
    print((out / "summary.md").read_text(), end="")
    print(f"report: {result['report']}")


def _overrides(extra: list[str], parser: argparse.ArgumentParser) -> dict:
    """``--key value`` pairs after a config, as ``monai.bundle run`` takes them: nested ids with ``#``, values YAML."""
    import yaml

    if len(extra) % 2 or not all(k.startswith("--") for k in extra[::2]):
        parser.error(f"overrides must be --key value pairs, got {' '.join(extra)}")
    return {k[2:]: yaml.safe_load(v) for k, v in zip(extra[::2], extra[1::2])}


def _sampling_predictor(args, progress: bool, purpose: str):
    """The sampling model of ``--model`` with ``--samples`` K >= 2 samples per slice, for ``purpose``.

    Raises:
        InputError: K below 2, or not a sampling model.
    """
    from misr_monai.io import InputError
    from misr_monai.predictors.base import is_sampling
    from misr_monai.predictors.registry import load_predictor

    if args.samples < 2:
        raise InputError(f"--samples must be at least 2 for a standard deviation, got {args.samples}.")
    predictor = load_predictor(args.model, _device(args.device), args.batch_size, progress, args.samples, args.seed,
                               args.precision)
    if not is_sampling(predictor):
        raise InputError(f"{args.model}: not a sampling model; {purpose} needs one (fast_ddpm).")
    return predictor


def _uncertainty(args) -> None:
    from misr_monai.apps.uncertainty import uncertainty_study

    predictor = _sampling_predictor(args, True, "uncertainty")
    out = _make_folder(args.out)
    uncertainty_study(args.datalist, args.split, predictor, args.dataset_dir, out, args.slab)
    print((out / "uncertainty.md").read_text(), end="")
    print(f"table and figures in {out}")


def _calibrate(args) -> None:
    from misr_monai.apps.uncertainty import fit_calibration
    from misr_monai.predictors.registry import bundle_folder, write_calibration

    predictor = _sampling_predictor(args, False, "calibration")
    fit = fit_calibration(args.datalist, args.split, predictor, args.dataset_dir, args.model, args.fit)
    print(f"{args.model} at K={args.samples} on the {args.split} split ({fit['volumes']} volumes, {fit['voxels']} "
          f"drawn foreground voxels, {args.fit} fit): std_calibration a={fit['a']:.6f} b={fit['b']:.4f}; within 2 std: "
          f"{fit['coverage_2std']:.3f} raw, {fit['coverage_2std_cal']:.3f} calibrated; the K mean: psnr "
          f"{fit['psnr']:.2f} dB, psnr_core {fit['psnr_core']:.2f} dB")
    if args.write:
        print(f"{write_calibration(bundle_folder(args.model), fit['a'], fit['b'])}: std_calibration written")


def _datalist(args) -> None:
    from misr_monai.datalist import make_datalist, write_datalist
    from misr_monai.io import SkippedInputs, check_output_path

    check_output_path(args.out, args.overwrite)
    skipped = SkippedInputs("files", f"left out of {args.out} (listed under 'excluded')")
    datalist = make_datalist(args.dir, args.pattern, args.val, args.test, args.seed, skipped)
    write_datalist(datalist, args.out)
    splits = {k: v for k, v in datalist.items() if k != "excluded"}
    counts = ", ".join(f"{k} {len({e['subject'] for e in v})} subjects/{len(v)} files" for k, v in splits.items())
    print(f"{args.out}: {counts}")
    skipped.raise_if_any(args.dir)


def _benchmark(args) -> None:
    from misr_monai.apps.benchmarks import run_from_args

    run_from_args(args)


def _curve(args) -> None:
    from misr_monai.apps.figures import scalar_curve_figure

    curves = scalar_curve_figure(args.log_dir, args.tags.split(","), args.out, by_run=args.by_run)
    for tag, (steps, values) in curves.items():
        best = max(range(len(values)), key=values.__getitem__)
        print(f"{tag}: {len(steps)} points, last {values[-1]:.4f} at {steps[-1]}, max {values[best]:.4f} at {steps[best]}")
    print(f"{args.out}: figure")


def _zoo(args) -> None:
    from misr_monai.zoo import export_bundle, requirements, verify_bundle

    for bundle in args.bundles:
        if args.action == "requirements":
            print("\n".join(requirements(bundle)))
        elif args.action == "export":
            for path in export_bundle(bundle):
                print(f"{path}: written")
        else:
            for check, result in verify_bundle(bundle, args.schema):
                print(f"{bundle}: {check}: {result}")


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
    p.set_defaults(func=_upsample)

    p = sub.add_parser("demo", help="the embedded demo volume decimated x2, reconstructed by the model and by cubic, "
                                    "and a figure")
    p.add_argument("--out", default="demo_output", help="folder for the NIfTI files and the PNG (default: demo_output)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=_MODEL_HELP)
    p.add_argument("--factor", type=int, default=2, help="keep every FACTOR-th slice, 2 to 8 (default: 2)")
    _model_options(p, precision="auto")
    p.set_defaults(func=_demo)

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
    p.set_defaults(func=_evaluate)

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
    p.set_defaults(func=_adapt)

    p = sub.add_parser("uncertainty", help="error against the std of K samples of a sampling model (fast_ddpm)")
    _datalist_options(p, "test")
    p.add_argument("--model", default="fast_ddpm", help="a sampling model: short name or bundle folder")
    p.add_argument("--slab", type=int, default=8, help="reconstructed slices per volume, at its middle (default: 8)")
    p.add_argument("--out", required=True, help="folder for uncertainty.{csv,md} and PNG figures")
    _model_options(p, samples=8)
    p.set_defaults(func=_uncertainty)

    p = sub.add_parser("calibrate", help="fit a sampling model's std recalibration (a, b) on a validation split; "
                                         "--write stores it in the bundle's inference.json")
    _datalist_options(p, "validation")
    p.add_argument("--model", default="fast_ddpm", help="a sampling model: short name or bundle folder")
    p.add_argument("--write", action="store_true", help="store the fit as std_calibration in configs/inference.json")
    p.add_argument("--fit", choices=("conformal", "gaussian"), default="conformal",
                   help="conformal: a = 0 and mean +- 2 calibrated std the split-conformal 90%% interval; gaussian: "
                        "(a, b) by Gaussian likelihood (default: conformal)")
    _model_options(p, samples=8)
    p.set_defaults(func=_calibrate)


def _add_tool_commands(sub) -> None:
    """compare, datalist, curve, zoo, benchmark."""
    p = sub.add_parser("compare", help="one experiment config (configs/comparison.yaml) -> tables, statistics, "
                                       "figures and report.md; resumable")
    p.add_argument("config", help="YAML/JSON experiment; any key can be overridden with --key value (nested: a#b)")
    p.add_argument("--out", required=True, help="results folder (per-volume results are cached in OUT/cache)")
    p.set_defaults(func=_compare)

    p = sub.add_parser("datalist", help="a seeded, patient-wise datalist for a folder of NIfTI files")
    p.add_argument("dir", help="dataset folder; datalist paths are relative to it")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--pattern", default="**/*.nii*", help="glob relative to DIR (default: **/*.nii*)")
    p.add_argument("--val", type=float, default=0.2, help="validation subjects: fraction < 1 or count (default: 0.2)")
    p.add_argument("--test", type=float, default=0.2, help="test subjects: fraction < 1 or count (default: 0.2)")
    p.add_argument("--seed", type=int, default=0, help="shuffling seed (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing datalist")
    p.set_defaults(func=_datalist)

    p = sub.add_parser("curve", help="plot training/validation scalars from TensorBoard event files to a PNG")
    p.add_argument("log_dir", help="folder with events.out.tfevents.* (searched recursively)")
    p.add_argument("--tags", default="val_psnr", help="comma-separated scalar tags (default: val_psnr)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--by-run", action="store_true", help="one line per folder of event files (to compare runs)")
    p.set_defaults(func=_curve)

    p = sub.add_parser("zoo", help="the Model Zoo's bundle checks (check); regenerate models/model.ts and "
                                   "large_files.yml after the weights or metadata change (export); the pip "
                                   "requirements its metadata names (requirements)")
    p.add_argument("action", choices=("check", "export", "requirements"))
    p.add_argument("bundles", nargs="+", help="bundle folders")
    p.add_argument("--schema", default=None, help="local copy of the metadata schema (default: download the one "
                                                  "configs/metadata.json names)")
    p.set_defaults(func=_zoo)

    p = sub.add_parser("benchmark", help="time, multiply-adds per second against a same-run matmul ceiling, and memory "
                                         "of each method on a synthetic volume")
    add_benchmark_arguments(p)
    p.set_defaults(func=_benchmark)


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
