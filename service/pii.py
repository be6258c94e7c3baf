"""Masking of personal identifiers before text is stored, exported or logged.

The model reads the full text in memory; only what leaves the process is masked.
Numbers are found however they are written: full-width digits, and groups
separated by a space, a dash or a dot of any kind (138-1234-5678, 138.1234.5678,
6222 0212 3456 7890 123), including the non-breaking and zero-width spaces that text
pasted from a word processor or a web page carries between the groups."""

from __future__ import annotations

import re
from typing import Any

# One optional separator between digit groups: spaces (plain, non-breaking, thin,
# zero-width), hyphens and dashes, dots. Listed here rather than translated away, as a
# dash or a space in prose must stay what it was.
_S = "[ \u00a0\u2000-\u200d\u2060\u202f\u205f\ufeff\\-\u2010-\u2015\u2212.\u00b7\u30fb]?"
_PATTERNS = [
    # Resident ID: 18 characters (17 digits + digit/X), or the old 15-digit form, grouped 6-8-4 or not.
    (re.compile(rf"(?<![0-9])[1-9][0-9]{{5}}{_S}(?:19|20)[0-9]{{2}}{_S}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]){_S}"
                rf"[0-9]{{3}}[0-9Xx](?![0-9])"), "[身份证号]"),
    (re.compile(rf"(?<![0-9])[1-9][0-9]{{5}}{_S}[0-9]{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]){_S}[0-9]{{3}}(?![0-9])"),
     "[身份证号]"),
    # Bank card: 16-19 digits in any grouping (4-4-4-4-3, 6-13, none).
    (re.compile(rf"(?<![0-9])[0-9](?:{_S}[0-9]){{15,18}}(?![0-9])"), "[银行卡号]"),
    # Mobile: 11 digits starting 1[3-9], optionally +86 and separators (3-4-4).
    (re.compile(rf"(?<![0-9])(?:\+?86{_S})?1[3-9][0-9]{_S}[0-9]{{4}}{_S}[0-9]{{4}}(?![0-9])"), "[手机号]"),
    # Landline: area code 0xx(x), optionally in brackets, and a 7-8 digit number (possibly split 3-4 or 4-4).
    (re.compile(rf"(?<![0-9])(?:\(0[1-9][0-9]{{1,2}}\)|（0[1-9][0-9]{{1,2}}）|0[1-9][0-9]{{1,2}}){_S}[0-9]{{3,4}}{_S}[0-9]{{4}}(?![0-9])"),
     "[电话]"),
]
_FULL_WIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF10, 0xFF1A)} | {0xFF0D: ord("-"), 0x3000: ord(" ")}


def mask_pii(text: str) -> str:
    # Full-width digits, dashes and spaces are common in typed petitions; mask them too.
    text = text.translate(_FULL_WIDTH)
    for pattern, replacement in _PATTERNS:
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
    for pattern, replacement in _PATTERNS:
        # Found and replaced as pattern.sub does: left to right, matches not overlapping.
        pieces: list[str] = []
        moved: list[int | None] = []
        length = last = 0
        for match in pattern.finditer(current):
            kept = current[last:match.start()]
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
