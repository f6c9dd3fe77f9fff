# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Slice predictors of networks: a network applied to every gap of a volume's slice stack, in batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from misr_monai.interpolation import cubic_interpolate, gap_positions
from misr_monai.precision import native_bf16, resolve_precision
from misr_monai.transforms.utils import percentile_scale_factor, reflect_index

__all__ = ["BATCH_PIXELS", "NetworkPredictor"]

BATCH_PIXELS = {"cpu": 2**16, "cuda": 2**20}
"""Pixels per forward pass at most, per device type, whatever ``batch_size``: on a CPU one 256 x 256 slice, so that
the activations stay in cache (measured: 0.85 of the fp32 matmul ceiling at batch 1 against 0.59 at batch 8, and 4.6x
against 1.8x in bf16); on a GPU four 512 x 512 slices. Memory follows the volume, not ``batch_size``."""


class NetworkPredictor:
    """Apply a ``(B, 2, H, W) -> (B, 1, H, W)`` network to every pair of neighbouring full slices, in batches.

    Inputs are divided by the 99.5th percentile of the non-zero voxels of the given slices (the scaling the networks
    are trained with) and predictions multiplied back, so the result is in the volume's own units.

    Args:
        network: the network, or any callable with its contract (a sampler's forward).
        device: where to run it. Defaults to ``"cpu"``.
        batch_size: slice pairs per forward pass; the result does not depend on it. Defaults to 8.
        percentile: the intensity scaling's percentile. Defaults to 99.5.
        progress: show a progress bar. Defaults to False.
        precision: ``fp32``, ``bf16`` (autocast) or ``auto``, resolved here, once
            (:py:func:`~misr_monai.precision.resolve_precision`). Defaults to fp32.
        context: K, the neighbours on each side of a gap that the network takes (``2K`` input channels: for the gap
            between slices j and j+1, slices j-K+1 ... j+K, mirrored at the volume's ends). Defaults to the network's
            ``(in_channels - conditions) // 2``, or 1.
        spline: also give the network the protocol's ``cubic`` (the natural spline through all the slices) at each
            gap, as its last input channel. Defaults to the network's ``spline_skip``, or False.
        bf16_psnr_change_db: the model's measured PSNR change under bf16, for ``auto``. Defaults to None (unknown).
        bf16_faster_on: device types where bf16 was measured faster, for ``auto`` (None: all). Defaults to None.
        conditions: constant condition channels before the spline channel (the position ``t`` of the new slice in its
            gap and the slice profile's width ``w``): a network with them predicts any factor in one pass per new
            slice (:py:attr:`any_factor`). Defaults to the network's ``conditions``, or 0.
        profile: the slice profile's width ``w`` (slice thickness over the acquired spacing: 0 thin slices with gaps,
            1 contiguous thick slices) assumed where a call gives none. Defaults to 0.0.
        modules: the modules behind ``network``, put in eval mode and, on a CPU, in channels-last memory format
            (faster with oneDNN; the same output to float32 rounding). Defaults to ``network`` itself when it is a
            module, else none.
        self_ensemble: predict each gap 16 times, under the 8 in-plane flips and 90-degree rotations and each with the
            neighbours in reversed slice order (the spline channel stays last, a position t becomes 1 - t), and return the mean of the 16
            predictions mapped back (EDSR's geometric self-ensemble, with the slice order): 16 times the network's
            cost. Defaults to False.

    A forward pass takes at most :py:data:`BATCH_PIXELS` pixels whatever ``batch_size``.

    Example::

        >>> predictor = NetworkPredictor(lambda x: x.mean(1, keepdim=True))
        >>> predictor(np.ones((3, 4, 4), np.float32)).shape
        (2, 4, 4)
    """

    def __init__(
        self,
        network: Callable[[torch.Tensor], torch.Tensor],
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        percentile: float = 99.5,
        progress: bool = False,
        precision: str = "fp32",
        bf16_psnr_change_db: float | None = None,
        context: int | None = None,
        spline: bool | None = None,
        modules: Sequence[torch.nn.Module] | None = None,
        self_ensemble: bool = False,
        bf16_faster_on: list[str] | None = None,
        conditions: int | None = None,
        profile: float = 0.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.device = torch.device(device)
        self.network = network
        if modules is None:
            modules = [network] if isinstance(network, torch.nn.Module) else []
        for module in modules:
            module.eval()
            if self.device.type == "cpu":
                module.to(memory_format=torch.channels_last)
        self.batch_size = batch_size
        self.percentile = percentile
        self.progress = progress
        self.precision = resolve_precision(precision, self.device, bf16_psnr_change_db, bf16_faster_on)
        self.spline = bool(getattr(network, "spline_skip", False) if spline is None else spline)
        self.conditions = int(getattr(network, "conditions", 0) if conditions is None else conditions)
        self.context = context or max(1, (getattr(network, "in_channels", 2) - self.conditions) // 2)
        self.self_ensemble = self_ensemble
        self.any_factor = self.conditions == 2
        self.profile = float(profile)

    @property
    def trained_module(self) -> torch.nn.Module | None:
        """The module whose weights the model trains (its parameters are the model's size); None for a callable."""
        return self.network if isinstance(self.network, torch.nn.Module) else None

    def _forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """The network on a batch of gaps, or the mean of its 16 self-ensemble predictions."""
        if not self.self_ensemble:
            return self.network(pairs)
        neighbours = 2 * self.context
        reversed_order = [*range(neighbours - 1, -1, -1), *range(neighbours, pairs.shape[1])]
        layout = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        total = None
        flipped = pairs[:, reversed_order]
        if self.conditions:  # in reversed order the new slice lies at 1 - t
            flipped[:, neighbours] = 1 - flipped[:, neighbours]
        for x in (pairs, flipped):
            for turns in range(4):
                for flip in (False, True):
                    view = torch.rot90(x, turns, (-2, -1))
                    view = view.flip(-1) if flip else view
                    pred = self.network(view.contiguous(memory_format=layout)).float()
                    pred = torch.rot90(pred.flip(-1) if flip else pred, -turns, (-2, -1))
                    total = pred if total is None else total.add_(pred)
        return total / 16

    def __call__(self, slices: np.ndarray, factor: int = 2, profile: float | None = None) -> np.ndarray:
        """The new slices between each pair of ``slices`` (axis 0), ``factor - 1`` per gap in order:
        ``((m - 1) (factor - 1), H, W)``; a factor other than 2 needs a network told the position (:py:attr:`any_factor`).
        ``profile``: the slice profile's width (default: :py:attr:`profile`)."""
        return self.predict_channels(slices, factor, profile)[:, 0]

    def predict_channels(self, slices: np.ndarray, factor: int = 2, profile: float | None = None) -> np.ndarray:
        """Every output channel of the network for each new slice: ``((m - 1) (factor - 1), C, H, W)``, in the
        slices' own units.

        The stack is moved to the device once, scaled and splined there (:py:func:`cubic_interpolate` in torch, at
        every position), cut into batches of new slices on the device, and the predictions are copied back once.

        Raises:
            ValueError: ``factor`` is not 2 and the network is not told the position."""
        if factor != 2 and not self.any_factor:
            raise ValueError(f"this network predicts the midpoint of a gap only (x2); factor {factor} needs a model "
                             "told the position of the new slice.")
        scale = percentile_scale_factor(slices, self.percentile)
        m, h, w = slices.shape
        new = (m - 1) * (factor - 1)
        batch = max(1, min(self.batch_size, BATCH_PIXELS.get(self.device.type, BATCH_PIXELS["cuda"]) // (h * w)))
        starts = range(0, new, batch)
        if self.progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="slices", unit="batch", leave=False)
        cuda = self.device.type == "cuda"
        dtype = torch.float16 if cuda and not native_bf16(self.device) else torch.bfloat16
        stack = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))
        stack = stack.to(self.device) / scale  # a new tensor: the caller's slices are never written
        estimate = cubic_interpolate(stack, factor) if self.spline else None  # once per volume, the protocol's cubic
        positions = np.tile(gap_positions(factor), m - 1)
        width = self.profile if profile is None else float(profile)
        out = None
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=self.precision == "bf16"):
            k = self.context
            for start in starts:
                stop = min(start + batch, new)
                gaps = np.arange(start, stop) // (factor - 1)
                # gap g needs slices g-k+1 .. g+k, mirrored at the ends
                around = reflect_index(gaps[:, None] + np.arange(-k + 1, k + 1)[None], m)
                channels = stack[torch.from_numpy(around).to(self.device)]
                if self.conditions:
                    t = torch.as_tensor(positions[start:stop], dtype=torch.float32, device=self.device)
                    conditions = torch.stack([t, torch.full_like(t, width)], dim=1)
                    channels = torch.cat([channels, conditions[:, :, None, None].expand(-1, -1, h, w)], dim=1)
                if estimate is not None:
                    channels = torch.cat([channels, estimate[start:stop, None]], dim=1)
                pairs = channels
                if not cuda:
                    pairs = pairs.contiguous(memory_format=torch.channels_last)
                pred = self._forward(pairs)
                if out is None:
                    out = torch.empty((new, *pred.shape[1:]), dtype=torch.float32, device=self.device)
                out[start:stop] = pred
            out = out.mul_(scale).cpu()
        return out.numpy().astype(slices.dtype, copy=False)
