# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""What kind of image a scan's header says it is, where no shipped model was trained on that kind (quantitative
maps, diffusion, perfusion): ``misr upsample`` says so in one line and suggests ``--adapt`` or ``cubic``."""

from __future__ import annotations

import re

__all__ = ["UNFAMILIAR_KINDS", "unfamiliar_kind", "nifti_texts", "dicom_texts", "kind_warning"]

_WORD = r"(?<![a-z0-9])(?:{})(?![a-z0-9])"
UNFAMILIAR_KINDS = {
    "an ADC map": _WORD.format(r"adc|apparent[ _-]?diffusion(?:[ _-]?coefficient)?"),
    "a diffusion image": _WORD.format(r"dwi|trace[ _-]?w|tracew|diffusion|dti|fa|md|b0|b[1-9][0-9]{2,3}"),
    "a perfusion image or map": _WORD.format(r"perfusion|perf|dsc|dce|asl|cbf|cbv|mtt|ktrans"),
    "a quantitative map": _WORD.format(r"t1[ _-]?map|t2[ _-]?map|t2s(?:tar)?[ _-]?map|r2s(?:tar)?|qmap|relaxometry|"
                                       r"quantitative"),
}
"""Kinds of image no shipped model was trained on (they were trained on T1w brain and T2 prostate), and the words
(case-insensitive, whole) a header or a BIDS file name uses for them."""


def unfamiliar_kind(texts: list[str]) -> tuple[str, str] | None:
    """The first unfamiliar kind that ``texts`` (header fields, a file name) name, and the text naming it; None."""
    for text in texts:
        for kind, pattern in UNFAMILIAR_KINDS.items():
            if text and re.search(pattern, text.lower()):
                return kind, text
    return None


def nifti_texts(img, name: str) -> list[str]:
    """A NIfTI image's descriptive header fields (``descrip``, ``intent_name``, ``aux_file``) and its file name."""
    header = img.header
    fields = [header.get(k) for k in ("descrip", "intent_name", "aux_file") if k in header]
    texts = [bytes(f.item() if hasattr(f, "item") else f).decode("latin-1").strip("\x00 ") for f in fields]
    return [*texts, name.split(".nii")[0]]


def dicom_texts(dataset) -> list[str]:
    """A DICOM slice's ``ImageType``, ``SeriesDescription``, ``ProtocolName`` and ``SequenceName``."""
    texts = []
    for keyword in ("ImageType", "SeriesDescription", "ProtocolName", "SequenceName"):
        value = getattr(dataset, keyword, None)
        if value is not None:
            texts.append(" ".join(map(str, value)) if not isinstance(value, str) and hasattr(value, "__iter__") else str(value))
    return texts


def kind_warning(source, texts: list[str]) -> str | None:
    """One line for a scan whose ``texts`` name an unfamiliar kind, else None."""
    found = unfamiliar_kind(texts)
    if found is None:
        return None
    kind, text = found
    return (f"{source}: its header names {kind} ({text!r}), a kind no shipped model was trained on (T1w brain, T2 "
            "prostate); its new slices may be wrong where the acquired ones are not: consider --adapt 180 (fine-tune on "
            "this scan first) or --model cubic.")
