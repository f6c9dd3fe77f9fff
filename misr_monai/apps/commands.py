# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The ``misr`` subcommands, one function each, given the arguments ``misr_monai.cli`` parsed: each calls the library
and prints what it did. Heavy imports happen inside them, so ``misr --help`` stays instant."""

from __future__ import annotations

from pathlib import Path

__all__ = ["adapt_command", "benchmark_command", "calibrate_command", "compare_command", "curve_command",
           "datalist_command", "demo_command", "evaluate_command", "uncertainty_command", "upsample_command",
           "zoo_command"]


def upsample_command(args) -> None:
    from misr_monai.io import InputError, check_output_path
    from misr_monai.predictors.registry import load_predictor, resolve_device
    from misr_monai.engines.volumes import upsample
    from misr_monai.volume import describe, source_kind

    device = resolve_device(args.device)
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
        from misr_monai.apps.figures import upsample_figure

        (original, affine), (upsampled, out_affine) = info["original"], info["upsampled"]
        upsample_figure(original, upsampled, info["axis"], (affine, out_affine), args.figure, Path(args.input).name)
        print(f"{args.figure}: figure")


def demo_command(args) -> None:
    from misr_monai.apps.demo import DEMO_VOLUME, run_demo
    from misr_monai.predictors.registry import load_predictor, resolve_device
    from misr_monai.volume import check_factor

    check_factor(args.factor)
    device = resolve_device(args.device)
    predict = load_predictor(args.model, device, args.batch_size, True, args.samples, args.seed, args.precision,
                             args.self_ensemble, args.sharpness)
    info = run_demo(predict, args.model, args.out, args.factor)
    print(f"{info['result']}: {info['input_shape']} -> {info['output_shape']}, the input: every slice {args.factor} "
          f"of {DEMO_VOLUME.name} ({args.model}, {getattr(predict, 'precision', 'fp32')} on {device})")
    print(f"{info['figure']}: figure; PSNR of the new slices: "
          + ", ".join(f"{k} {v:.2f} dB" for k, v in info["psnr"].items()))


def evaluate_command(args) -> None:
    from misr_monai.apps.evaluation import evaluate, protocol_predictors
    from misr_monai.io import InputError, make_output_folder
    from misr_monai.predictors.registry import resolve_device

    if not Path(args.dataset_dir).is_dir():
        raise InputError(f"{args.dataset_dir}: dataset folder not found.")
    predictors = protocol_predictors(args.methods.split(","), resolve_device(args.device), args.batch_size,
                                     args.samples, args.seed, args.precision, args.self_ensemble, args.sharpness,
                                     args.factor, args.adapt)
    out = make_output_folder(args.out)
    evaluate(args.datalist, args.split, predictors, args.dataset_dir, out, figures=not args.no_figures,
             factor=args.factor, thick=args.thick, profile=args.slice_profile)
    print((out / "summary.md").read_text(), end="")
    print(f"tables and figures in {out}")


def adapt_command(args) -> None:
    from misr_monai.adaptation import describe_adaptation
    from misr_monai.apps.adaptation import adapt_bundle
    from misr_monai.predictors.registry import resolve_device

    report = adapt_bundle(args.scans, args.model, args.out, args.seconds, args.factor, args.slice_thickness,
                          resolve_device(args.device), args.overwrite)
    print(describe_adaptation(report, args.model))
    print(f"{args.out}: bundle written ({'adapted' if report['adapted'] else 'the shipped'} weights in models/model.pt; "
          f"the report in docs/adaptation.json); use it with misr upsample --model {args.out}")


def compare_command(args) -> None:
    import shlex

    from misr_monai.apps.comparison import compare, load_experiment
    from misr_monai.io import make_output_folder

    experiment = load_experiment(args.config, args.overrides)
    out = make_output_folder(args.out)
    result = compare(experiment, out, shlex.join(["misr", *args.argv]))
    print((out / "summary.md").read_text(), end="")
    print(f"report: {result['report']}")


def _sampling_predictor(args, progress: bool, purpose: str):
    from misr_monai.predictors.registry import load_sampling_predictor

    return load_sampling_predictor(args.model, args.device, args.batch_size, progress, args.samples, args.seed,
                                   args.precision, purpose)


def uncertainty_command(args) -> None:
    from misr_monai.apps.uncertainty import uncertainty_study
    from misr_monai.io import make_output_folder

    predictor = _sampling_predictor(args, True, "uncertainty")
    out = make_output_folder(args.out)
    uncertainty_study(args.datalist, args.split, predictor, args.dataset_dir, out, args.slab)
    print((out / "uncertainty.md").read_text(), end="")
    print(f"table and figures in {out}")


def calibrate_command(args) -> None:
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


def datalist_command(args) -> None:
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


def curve_command(args) -> None:
    from misr_monai.apps.figures import scalar_curve_figure

    curves = scalar_curve_figure(args.log_dir, args.tags.split(","), args.out, by_run=args.by_run)
    for tag, (steps, values) in curves.items():
        best = max(range(len(values)), key=values.__getitem__)
        print(f"{tag}: {len(steps)} points, last {values[-1]:.4f} at {steps[-1]}, max {values[best]:.4f} at {steps[best]}")
    print(f"{args.out}: figure")


def zoo_command(args) -> None:
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


def benchmark_command(args) -> None:
    from misr_monai.apps.benchmarks import run_from_args

    run_from_args(args)
