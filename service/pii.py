"""Masking of personal identifiers before text is stored, exported or logged.

The model reads the full text in memory; only what leaves the process is masked.
Numbers are found as model/identifiers.py finds them (linking drops the same ones),
in full-width digits too, their groups joined by nothing or by up to three spaces, tabs,
dashes or dots of any kind in any mix (138  1234  5678, 138 - 1234 - 5678). A bank
card is found only grouped as cards print it, so that a period of work typed as dates
(2023.10.12-2024.10.12) is stored as typed."""

from __future__ import annotations

import re
from typing import Any

from model.identifiers import NUMBER_PATTERNS

_FULL_WIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF10, 0xFF1A)} | {0xFF0D: ord("-"), 0x3000: ord(" ")}
# A digit, or a character the translation above changes. Every number pattern needs digits,
# so a text without any of these comes out as it went in.
_DIGIT_OR_FULL_WIDTH = re.compile("[0-9\uff10-\uff19\uff0d\u3000]")


def mask_pii(text: str) -> str:
    # Most strings masked hold no digit (an explanation's words and labels, names, most notes):
    # they are handed back without the translation and the pattern passes, which were most of
    # the time a migration spends re-masking every stored petition.
    if _DIGIT_OR_FULL_WIDTH.search(text) is None:
        return text
    # Full-width digits, dashes and spaces are common in typed petitions; mask them too.
    text = text.translate(_FULL_WIDTH)
    for pattern, replacement in NUMBER_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_pii_placed(text: str) -> tuple[str, list[int | None]]:
    """`mask_pii(text)`, and where each character of `text` is in it.

    Parameters
    ----------
    text : str
        The text as sent.

    Returns
    -------
    masked : str
        The text as stored, equal to ``mask_pii(text)``.
    places : list of int or None
        For each character of `text`, its index in `masked`; None for the characters a
        mask replaced. Spans found on one text are moved onto the other with it exactly:
        looking for their words again finds another occurrence of a word said twice."""
    places: list[int | None] = list(range(len(text)))
    current = text.translate(_FULL_WIDTH)
    for pattern, replacement in NUMBER_PATTERNS:
        # Found and replaced as pattern.sub does: left to right, matches not overlapping.
        pieces: list[str] = []
        moved: list[int | None] = []
        length = last = 0
        for match in pattern.finditer(current):
            kept = current[last : match.start()]
            moved.extend(range(length, length + len(kept)))
            moved.extend([None] * (match.end() - match.start()))
            pieces += [kept, replacement]
            length += len(kept) + len(replacement)
            last = match.end()
        moved.extend(range(length, length + len(current) - last))
        pieces.append(current[last:])
        current = "".join(pieces)
        places = [None if place is None else moved[place] for place in places]
    return current, places


def mask_pii_in(value: Any) -> Any:
    """`value` with every string in it masked (keys included), as JSON holds them."""
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, dict):
        return {mask_pii_in(k): mask_pii_in(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_pii_in(v) for v in value]
    return value
