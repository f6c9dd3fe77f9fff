# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Self-supervised adaptation to the scan in hand (ZSSR, SMORE): a copy of a network model fine-tuned for a few
seconds or minutes on training pairs cut from the volume it is about to upsample, and kept only where it predicts the
scan's own held-out pairs better than the shipped weights.

Two sources of pairs, both from the given slices only (:py:func:`scan_pairs`):

- ``through``: the acquired slices, every other one removed: the model bridges twice the gap (t = 1/2), the slice
  profile's width halved (slices as thick, spacing doubled), both phases.
- ``in_plane``: rows (or columns) of the acquired slices taken as "slices" (SMORE): each in-plane line is filtered by
  the slice profile (a box as wide as the slice thickness in pixels) and sampled at the slice spacing over the
  requested factor, so kept and new "slices" have the scan's own spacing, profile and factor. Their planes are one
  in-plane axis by the slice axis (anisotropic), the price of pairs at the real gap.

Measured (``docs/adaptation.md``): a model always gains on held-out pairs of the kind it trains on, while the
scan's new slices get worse (the ``through`` pairs bridge twice the real gap, the ``in_plane`` planes have a coarse
axis); the other kind fell with them. So the model trains on ``through`` pairs (:py:data:`TRAIN_SOURCES`, every
:py:data:`HOLD_OUT`-th target held out) and the adapted weights replace the shipped ones only where they also gain on
the ``in_plane`` pairs, which it never trained on (:py:func:`adapt_network`). On the 16 held-out test volumes of
release 0.10.0 that guard kept the shipped weights every time.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from misr_monai.interpolation import natural_spline_at, slice_profile_kernel, thick_slices
from misr_monai.io import InputError, print_line
from misr_monai.precision import native_bf16
from misr_monai.transforms.utils import percentile_scale_factor, reflect_index

__all__ = ["SOURCES", "TRAIN_SOURCES", "HOLD_OUT", "LAYERS", "MARGIN_DB", "PairGroup", "gap_pairs", "in_plane_volume", "scan_pairs", "scan_spacing",
           "trainable_parameters", "adapt_network", "describe_adaptation", "AdaptingPredictor", "split_adapt",
           "ADAPT_SUFFIX"]

SOURCES = ("through", "in_plane")
"""The kinds of self-supervised pairs (the module docstring)."""
HOLD_OUT = 4
"""Every ``HOLD_OUT``-th target of each group (from the second) is held out for validation, never trained on."""
TRAIN_SOURCES = ("through",)
"""The sources trained on by default; the other (``in_plane``) is the independent check of a gain (:py:func:`adapt_network`)."""
ADAPT_SUFFIX = ":a"
"""A network model's name with ``:aS`` is it adapted for S seconds to each volume (``context_cnn:a180``)."""


def split_adapt(method: str) -> tuple[str, float | None]:
    """A method name and the adaptation seconds it names: ``("context_cnn", 180.0)`` for ``"context_cnn:a180"``."""
    name, _, seconds = method.rpartition(ADAPT_SUFFIX)
    try:
        return (name, float(seconds)) if name and seconds else (method, None)
    except ValueError:
        return method, None


@dataclass
class PairGroup:
    """Pairs of one source along one direction of one scan, all with planes of one size.

    The input of pair ``p`` is the kept slices ``volume[around[p]]``, the conditions (``t[p]``, ``profile``) and
    ``spline[p]``; its target is ``volume[target[p]]``. ``train`` and ``held_out`` index the pairs."""

    source: str
    volume: torch.Tensor  # (n, H, W), scaled
    around: np.ndarray  # (N, 2K) indices into volume
    target: np.ndarray  # (N,)
    t: np.ndarray  # (N,)
    spline: torch.Tensor | None  # (N, H, W)
    profile: float
    conditions: int
    train: np.ndarray
    held_out: np.ndarray

    def inputs(self, pairs: Sequence[int], rows: slice = slice(None), cols: slice = slice(None)) -> torch.Tensor:
        """The network inputs of ``pairs`` cropped to ``rows, cols``: ``(len(pairs), C, h, w)``."""
        around = torch.from_numpy(self.around[list(pairs)])
        x = self.volume[:, rows, cols][around]  # (B, 2K, h, w)
        channels = [x]
        if self.conditions:
            t = torch.as_tensor(self.t[list(pairs)], dtype=x.dtype)
            maps = torch.stack([t, torch.full_like(t, self.profile)], 1)[:, :, None, None]
            channels.append(maps.expand(-1, -1, *x.shape[2:]))
        if self.spline is not None:
            channels.append(self.spline[list(pairs)][:, None, rows, cols])
        return torch.cat(channels, 1)

    def targets(self, pairs: Sequence[int], rows: slice = slice(None), cols: slice = slice(None)) -> torch.Tensor:
        return self.volume[self.target[list(pairs)]][:, None, rows, cols]


def gap_pairs(volume: torch.Tensor, factor: int, profile: float, context: int, conditions: int, spline: bool,
              source: str) -> PairGroup | None:
    """Every gap pair of ``volume`` (slices along axis 0) at ``factor``, in every phase: the kept slices ``p, p + F,
    ...`` and the ``F - 1`` slices between each two of them as targets, as the protocol cuts them (mirrored
    neighbours, the natural spline through the kept slices); None when there are none. Every :py:data:`HOLD_OUT`-th
    target slice (from the second) is held out."""
    n = volume.shape[0]
    around, target, t, splines = [], [], [], []
    for phase in range(factor):
        kept = np.arange(phase, n, factor)
        m = kept.size
        if m < 2:
            continue
        estimate = natural_spline_at(volume[kept], factor).view(m - 1, factor - 1, *volume.shape[1:]) if spline else None
        for k in range(m - 1):
            neighbours = kept[reflect_index(np.arange(k - context + 1, k + context + 1), m)]
            for j in range(1, factor):
                around.append(neighbours)
                target.append(kept[k] + j)
                t.append(j / factor)
                if estimate is not None:
                    splines.append(estimate[k, j - 1])
    if not target:
        return None
    target = np.array(target)
    held = target % HOLD_OUT == 1
    return PairGroup(source, volume, np.array(around), target, np.array(t), torch.stack(splines) if splines else None,
                     profile, conditions, np.flatnonzero(~held), np.flatnonzero(held))


def in_plane_volume(stack: torch.Tensor, axis: int, step: float, width: float) -> torch.Tensor | None:
    """SMORE's pseudo-slices along in-plane ``axis`` (1 or 2) of ``stack`` ``(m, H, W)``: each line filtered by a box
    ``width`` pixels wide (the slice profile, :py:func:`~misr_monai.interpolation.slice_profile_kernel`, mirrored at
    the ends) and sampled every ``step`` pixels (linear interpolation), moved to axis 0: ``(n, m, other)``; None where
    ``step`` is under one pixel (no finer in-plane sampling than the target's) or the box is wider than the lines."""
    if step < 1 or slice_profile_kernel(width).size // 2 >= stack.shape[axis]:
        return None
    filtered = torch.from_numpy(thick_slices(stack.numpy(), axis, width))  # the protocol's box, mirrored
    lines = torch.movedim(filtered, axis, -1)  # (..., L)
    positions = torch.arange(0, lines.shape[-1] - 1 + 1e-6, step, dtype=torch.float64)
    low = positions.floor().long().clamp(max=lines.shape[-1] - 1)
    high = (low + 1).clamp(max=lines.shape[-1] - 1)
    frac = (positions - low).to(lines.dtype)
    sampled = lines[..., low] * (1 - frac) + lines[..., high] * frac
    return torch.movedim(sampled, -1, 0).contiguous()


def scan_pairs(slices: np.ndarray, factor: int, profile: float, spacing: Sequence[float] | None, context: int,
               conditions: int, spline: bool, sources: Sequence[str] = SOURCES, scale: float | None = None,
               thickness: float | None = None) -> list[PairGroup]:
    """The self-supervised pair groups of one scan (module docstring): ``slices`` ``(m, H, W)`` the acquired slices
    in their own units (divided here by their 99.5th percentile, or ``scale``), ``factor`` and ``profile`` (the slice
    profile's width) those the scan will be upsampled with, ``spacing`` (slice spacing, row spacing, column spacing) in
    mm, None for ``through`` pairs only; ``thickness`` the acquired slices' thickness in mm, which the in-plane
    pseudo-slices are given (default: ``profile`` times the slice spacing). A model of the midpoint only (no
    ``conditions``) gets factor-2 pairs only."""
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise InputError(f"unknown pair sources {sorted(unknown)}; choose from {', '.join(SOURCES)}.")
    stack = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))
    stack = stack / (percentile_scale_factor(slices) if scale is None else scale)
    groups = []
    if "through" in sources:
        groups.append(gap_pairs(stack, 2, profile / 2, context, conditions, spline, "through"))
    if "in_plane" in sources and spacing is not None and (conditions or factor == 2):
        thickness = profile * spacing[0] if thickness is None else thickness
        for axis in (1, 2):
            ratio = spacing[0] / spacing[axis]  # the slice spacing in this axis' pixels
            pseudo = in_plane_volume(stack, axis, ratio / factor, thickness / spacing[axis])
            if pseudo is not None:
                groups.append(gap_pairs(pseudo, factor, profile, context, conditions, spline, "in_plane"))
    return [g for g in groups if g is not None and g.train.size]


def scan_spacing(spacing: Sequence[float], axis: int, factor: int = 1) -> tuple[float, float, float]:
    """(slice spacing, row spacing, column spacing) in mm of a volume with voxel ``spacing`` and slice ``axis``, of
    every ``factor``-th slice (the protocol's kept slices)."""
    return (factor * float(spacing[axis]), *(float(s) for a, s in enumerate(spacing) if a != axis))


class _Batches:
    """An endless stream of random training batches ``{"image", "label"}``: one of ``sources`` drawn in equal shares,
    a group of it by its training pairs, ``batch_size`` of its pairs, each a random crop of at most ``patch`` pixels
    a side (the most foreground of three), randomly flipped."""

    def __init__(self, groups: list[PairGroup], sources: Sequence[str], batch_size: int, patch: int, seed: int) -> None:
        self.groups = [g for g in groups if g.source in sources and g.train.size]
        self.sources = sorted({g.source for g in self.groups})
        self.batch_size, self.patch = batch_size, patch
        self.rng = np.random.default_rng(seed)

    def _crop(self, group: PairGroup, pair: int) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = group.volume.shape[1:]
        ph, pw = min(self.patch, h), min(self.patch, w)
        best = None
        for _ in range(3):
            r, c = self.rng.integers(0, h - ph + 1), self.rng.integers(0, w - pw + 1)
            rows, cols = slice(r, r + ph), slice(c, c + pw)
            y = group.targets([pair], rows, cols)
            fg = float((y > 0.05).float().mean())
            if best is None or fg > best[0]:
                best = (fg, rows, cols, y)
        _, rows, cols, y = best
        return group.inputs([pair], rows, cols), y

    def __iter__(self):
        while True:
            source = self.sources[self.rng.integers(len(self.sources))]
            groups = [g for g in self.groups if g.source == source]
            sizes = np.array([g.train.size for g in groups], float)
            group = groups[self.rng.choice(len(groups), p=sizes / sizes.sum())]
            xs, ys = zip(*(self._crop(group, p) for p in self.rng.choice(group.train, self.batch_size)))
            x, y = torch.cat(xs), torch.cat(ys)
            if self.rng.random() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            if self.rng.random() < 0.5:
                x, y = x.flip(-2), y.flip(-2)
            yield {"image": x, "label": y}


def _validation_set(groups: list[PairGroup], pairs: int = 12, size: int = 128,
                    every_pair: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """At most ``pairs`` held-out pairs of ``groups`` (or of all their pairs, ``every_pair``: a source not trained on),
    spread over them, centre-cropped to ``size`` pixels a side."""
    candidates = [(g, np.concatenate([g.train, g.held_out]) if every_pair else g.held_out) for g in groups]
    candidates = [(g, c) for g, c in candidates if c.size]
    out = []
    for g, c in candidates:
        picks = np.unique(c[np.linspace(0, c.size - 1, min(c.size, max(1, pairs // len(candidates)))).astype(int)])
        h, w = g.volume.shape[1:]
        r, cc = max(0, (h - size) // 2), max(0, (w - size) // 2)
        rows, cols = slice(r, r + size), slice(cc, cc + size)
        out += [(g.inputs([p], rows, cols), g.targets([p], rows, cols)) for p in picks]
    return out


def _held_out_psnr(network: torch.nn.Module, pairs, device: torch.device, bf16: bool) -> float:
    """PSNR over the pooled squared error of the held-out pairs, prediction and target clipped to [0, 1]."""
    if not pairs:
        return float("nan")
    network.eval()
    total, count = 0.0, 0
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for x, y in pairs:
            pred = network(x.to(device)).float().clamp(0, 1)
            total += float(((pred - y.to(device).clamp(0, 1)) ** 2).sum())
            count += y.numel()
    return float(10 * np.log10(1.0 / max(total / max(count, 1), 1e-10)))


LAYERS = ("body.4.", "tail.")
"""The layers adapted by default: the last residual block and the output layer of the context and residual CNNs
(75k of their 374k weights). Measured: training every layer for a minute moves the scan's own held-out pairs up and
the protocol's new slices down (``docs/adaptation.md``)."""
MARGIN_DB = 0.1
"""The held-out PSNR gain, on every source, that adapted weights must show to replace the shipped ones."""


def trainable_parameters(model: torch.nn.Module, layers: Sequence[str] | None = LAYERS) -> list[torch.nn.Parameter]:
    """The parameters of ``model`` whose names start with one of ``layers`` (None, or a model with none of them:
    every trainable parameter); only these are fine-tuned, the others are frozen."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    chosen = [p for n, p in named if layers is None or n.startswith(tuple(layers))]
    chosen = chosen or [p for _, p in named]
    keep = {id(p) for p in chosen}
    for _, p in named:
        p.requires_grad_(id(p) in keep)
    return chosen


def adapt_network(network: torch.nn.Module, groups: list[PairGroup], seconds: float, device: str | torch.device = "cpu",
                  learning_rate: float = 5e-5, batch_size: int = 4, patch: int = 64,
                  train_sources: Sequence[str] = TRAIN_SOURCES, layers: Sequence[str] | None = LAYERS,
                  validations: int = 8, seed: int = 0, progress: bool = False, name: str = "") -> tuple[torch.nn.Module, dict]:
    """A copy of ``network`` whose ``layers`` (:py:func:`trainable_parameters`) are fine-tuned on the training pairs
    of ``train_sources`` in ``groups`` for at most ``seconds`` (an Ignite ``SupervisedTrainer``: L1 loss, Adam, bf16
    autocast where the device has it).

    The held-out pairs of the trained sources and every pair of the others are scored ``validations`` times and at
    the end; weights are kept when every source's PSNR gained at least :py:data:`MARGIN_DB` (the best such, by the
    smallest gain), else the copy is the unchanged network: never worse than not adapting, on pairs of both kinds.
    Without a source it did not train on there is no independent check, and nothing is trained. ``network`` itself is
    never changed.

    Returns:
        ``(network, report)``: the report has each source's PSNR before (``start_psnr``) and with the kept weights
        (``psnr``) and at the last check (``last_psnr``), ``adapted`` (whether they differ from the start),
        ``iterations``, ``seconds``, the training pairs of each trained source (``pairs``), and ``skipped`` where
        nothing was trained.
    """
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer

    begin = time.perf_counter()
    device = torch.device(device)
    model = copy.deepcopy(network).to(device)
    bf16 = native_bf16(device)
    validation = {s: _validation_set([g for g in groups if g.source == s], every_pair=s not in train_sources)
                  for s in SOURCES}
    validation = {s: v for s, v in validation.items() if v}

    def score() -> dict[str, float]:
        return {s: _held_out_psnr(model, v, device, bf16) for s, v in validation.items()}

    start = score()
    report = {"pairs": {s: int(sum(g.train.size for g in groups if g.source == s)) for s in train_sources},
              "start_psnr": start, "psnr": start, "iterations": 0, "adapted": False}
    trainable = trainable_parameters(model, layers)
    batches = _Batches(groups, train_sources, batch_size, patch, seed)
    if not set(validation) - set(train_sources) or not trainable or not batches.groups or seconds <= 0:
        report.update(seconds=time.perf_counter() - begin, skipped="no pairs to train on, or none to check a gain on")
        return model.eval(), report
    inferer = None
    if bf16:
        from misr_monai.engines import BF16Inferer

        inferer = BF16Inferer(device_type=device.type)
    trainer = SupervisedTrainer(device=device, max_epochs=1, epoch_length=10**9, network=model,
                                optimizer=torch.optim.Adam(trainable, lr=learning_rate),
                                loss_function=torch.nn.L1Loss(), inferer=inferer,
                                train_data_loader=iter(batches))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=round(seconds), desc=f"adapting {name}".strip(), unit="s", leave=False)
    best = {"gain": MARGIN_DB, "state": None, "psnr": start, "last": time.perf_counter()}

    def validate(engine) -> None:
        now = time.perf_counter()
        done = now - begin >= seconds
        if not done and now - best["last"] < seconds / validations:
            return
        best["last"] = now
        psnr = score()
        model.train()
        report["last_psnr"] = psnr
        gain = min(psnr[s] - start[s] for s in psnr)
        if gain >= best["gain"]:
            best.update(gain=gain, psnr=psnr, state={k: v.detach().clone() for k, v in model.state_dict().items()})
        if bar is not None:
            bar.n = min(round(now - begin), bar.total)
            bar.set_postfix_str("held-out PSNR " + ", ".join(f"{s} {psnr[s]:.2f} ({psnr[s] - start[s]:+.2f})" for s in psnr))
        if done:
            engine.terminate()

    trainer.add_event_handler(Events.ITERATION_COMPLETED, validate)
    try:
        trainer.run()
    finally:
        if bar is not None:
            bar.close()
    model.load_state_dict(network.state_dict() if best["state"] is None else best["state"])
    report.update(psnr=best["psnr"], adapted=best["state"] is not None, iterations=trainer.state.iteration,
                  seconds=time.perf_counter() - begin)
    return model.eval(), report


def describe_adaptation(report: dict, name: str = "") -> str:
    """One line of an adaptation's report."""
    gains = ", ".join(f"{s} {report['start_psnr'][s]:.2f} -> {report['psnr'][s]:.2f} dB" for s in report["psnr"])
    if "last_psnr" in report and not report["adapted"]:
        gains += " (the trained weights: " + ", ".join(f"{s} {v:.2f}" for s, v in report["last_psnr"].items()) + ")"
    verdict = "adapted weights used" if report["adapted"] else (
        f"the shipped weights kept ({report.get('skipped') or f'no gain of {MARGIN_DB} dB on both kinds of pairs'})")
    pairs = ", ".join(f"{n} {s}" for s, n in report["pairs"].items() if n)
    return (f"{name + ': ' if name else ''}adapted {report['seconds']:.0f} s, {report['iterations']} iterations on "
            f"{pairs or 'no'} pairs; PSNR of the checking pairs {gains or 'not measured (too few slices)'}; {verdict}")


class AdaptingPredictor:
    """A network predictor that adapts a copy of its network to each volume before predicting it
    (:py:func:`adapt_network` on :py:func:`scan_pairs`): ``misr upsample --adapt``, a model named ``context_cnn:a180``.

    The volume paths (``misr upsample``, the protocol) call :py:meth:`adapted_to` with the slices they are about to
    upsample and their spacing; called directly it knows no spacing, so it has no in-plane pairs to check a gain on
    and predicts with the unchanged network (its report says so).

    Args:
        predictor: the :py:class:`~misr_monai.predictors.network.NetworkPredictor` to adapt.
        seconds: the adaptation's time limit per volume.
        train_sources: the pair sources trained on (:py:data:`TRAIN_SOURCES`); the others only check the gain.
        learning_rate, batch_size, patch, layers, seed: as :py:func:`adapt_network`.
        progress: a progress bar with the held-out PSNR. Defaults to False.
        verbose: a line per adaptation (:py:func:`describe_adaptation`). Defaults to True.
        name: the model's name, for the progress bar and the reports.
    """

    def __init__(self, predictor, seconds: float, train_sources: Sequence[str] = TRAIN_SOURCES,
                 learning_rate: float = 5e-5, batch_size: int = 4, patch: int = 64, layers: Sequence[str] | None = LAYERS,
                 seed: int = 0, progress: bool = False, verbose: bool = True, name: str = "") -> None:
        if not isinstance(getattr(predictor, "network", None), torch.nn.Module):
            raise InputError(f"{name or 'this model'}: --adapt fine-tunes a network model (context_cnn, "
                             "context_cnn_brain, residual_cnn...), not a baseline or a sampler.")
        if not 0 < seconds < float("inf"):
            raise InputError(f"--adapt must be a positive, finite number of seconds, got {seconds}.")
        self.predictor, self.seconds, self.train_sources = predictor, float(seconds), tuple(train_sources)
        self.learning_rate, self.batch_size, self.patch, self.seed = learning_rate, batch_size, patch, seed
        self.layers, self.progress, self.verbose, self.name = layers, progress, verbose, name
        self.any_factor = predictor.any_factor
        self.reports: list[dict] = []

    def pairs(self, slices: np.ndarray, spacing: Sequence[float] | None, factor: int, profile: float | None,
              thickness: float | None = None) -> list[PairGroup]:
        """The scan's pair groups (:py:func:`scan_pairs`), scaled as the predictor scales the slices; a model of the
        midpoint only (upsampling by x2 passes) gets factor-2 pairs."""
        p = self.predictor
        factor = factor if self.any_factor else 2
        width = p.profile if profile is None else float(profile)
        return scan_pairs(slices, factor, width, spacing, p.context, p.conditions, p.spline, SOURCES,
                          percentile_scale_factor(slices, p.percentile), thickness)

    def adapted_to(self, slices: np.ndarray, spacing: Sequence[float] | None = None, factor: int = 2,
                   profile: float | None = None, thickness: float | None = None):
        """A copy of the predictor whose network is adapted to ``slices`` ``(m, H, W)`` (the acquired slices, the
        ones it will upsample), ``spacing`` (slice, row, column spacing in mm), the ``factor`` and ``profile`` it
        will upsample with, and the slices' ``thickness`` in mm (:py:func:`scan_pairs`); its report is appended to
        :py:attr:`reports`."""
        groups = self.pairs(slices, spacing, factor, profile, thickness)
        network, report = adapt_network(self.predictor.network, groups, self.seconds, self.predictor.device,
                                        self.learning_rate, self.batch_size, self.patch, self.train_sources, self.layers,
                                        seed=self.seed, progress=self.progress, name=self.name)
        self.reports.append(report)
        if self.verbose:
            print_line(describe_adaptation(report, self.name))
        adapted = copy.copy(self.predictor)
        adapted.network = network
        if self.predictor.device.type == "cpu":
            network.to(memory_format=torch.channels_last)
        return adapted

    def __call__(self, slices: np.ndarray, factor: int = 2, profile: float | None = None) -> np.ndarray:
        return self.adapted_to(slices, None, factor, profile)(slices, factor, profile)
