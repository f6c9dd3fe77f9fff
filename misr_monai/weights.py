# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Weights read safely (``weights_only``) into networks, with one-line errors."""

from __future__ import annotations

import os
import pickle

import torch

from misr_monai.io import InputError

__all__ = ["read_weights", "load_network", "load_pretrained", "warm_start_refiner"]

def read_weights(checkpoint: str | os.PathLike) -> dict:
    """A state dict read with ``torch.load(weights_only=True)``: tensors and plain containers only, so a file that
    would need an unrestricted unpickle (which can run code) is refused.

    Raises:
        InputError: a missing, unreadable or unsafe file.
    """
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(f"{checkpoint}: not a plain weights file; refused to unpickle it, as that could run code.") from None
    except (OSError, RuntimeError, EOFError) as err:
        raise InputError(f"{checkpoint}: unreadable weights ({type(err).__name__}: {err}).") from None


def _load_state(network: torch.nn.Module, state: dict, checkpoint, load=None) -> torch.nn.Module:
    try:
        (load or torch.nn.Module.load_state_dict)(network, state)
    except (RuntimeError, TypeError, AttributeError, ValueError) as err:
        raise InputError(f"{checkpoint}: the weights do not fit the network ({str(err).splitlines()[0]})") from None
    return network


def load_network(network: torch.nn.Module, checkpoint: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a state dict saved by the bundle's ``CheckpointSaver`` (:py:func:`read_weights`) into ``network``, move
    it to ``device`` and set it to eval mode.

    Raises:
        InputError: an unreadable or unsafe file, or weights that do not fit ``network``.
    """
    return _load_state(network, read_weights(checkpoint), checkpoint).to(device).eval()


def load_pretrained(network: torch.nn.Module, checkpoint: str | os.PathLike | None, load=None) -> torch.nn.Module:
    """Start training from the weights at ``checkpoint`` (the bundles' ``pretrained``); ``""`` or None: from scratch.

    Args:
        network: the network to train, changed in place.
        checkpoint: a state dict file (:py:func:`read_weights`), or ``""``/None.
        load: ``load(network, state_dict)``; defaults to ``load_state_dict`` (strict). The SRGAN passes
            ``warm_start`` to start its deeper generator from the residual CNN.

    Raises:
        InputError: an unreadable or unsafe file, or weights that do not fit ``network``.
    """
    if not checkpoint:
        return network
    return _load_state(network, read_weights(checkpoint), checkpoint, load)


def warm_start_refiner(network: torch.nn.Module, state_dict: dict) -> torch.nn.Module:
    """Load a refiner's weights into ``network``, also those of a refiner over a 2-slice base into one over a context
    base.

    A refiner over a 2-slice base takes 4 channels (the noisy value, slices i-1 and i+1, the base's prediction); one
    over a context base with K neighbours a side takes 2K + 3 (the noisy value, the 2K neighbours, the spline, the
    base's prediction). The first convolution's kernels of the four images go to where those images now are, the
    outer neighbours and the spline start at zero, so the refiner starts as it was trained. Any other state dict is
    loaded strictly.

    Args:
        network: a ``DiffusionModelUNet``, changed in place.
        state_dict: its weights, or those of a refiner over a 2-slice base.

    Returns:
        ``network``.
    """
    key = "conv_in.conv.weight"
    old, own = state_dict.get(key), network.state_dict().get(key)
    if old is not None and own is not None and old.shape[1] == 4 and own.shape[1] > 4 and own.shape[1] % 2:
        k = (own.shape[1] - 3) // 2
        kernel = torch.zeros_like(own)
        kernel[:, [0, k, k + 1, own.shape[1] - 1]] = old
        state_dict = {**state_dict, key: kernel}
    network.load_state_dict(state_dict)
    return network
