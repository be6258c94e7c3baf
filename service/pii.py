"""Masking of personal identifiers before text is stored or logged.

The model reads the full text in memory; only what leaves the process is masked."""

from __future__ import annotations

import re

_PATTERNS = [
    # Resident ID: 18 characters (17 digits + digit/X), or the old 15-digit form.
    (re.compile(r"(?<![0-9])[1-9][0-9]{5}(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9])"), "[身份证号]"),
    (re.compile(r"(?<![0-9])[1-9][0-9]{5}[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}(?![0-9])"), "[身份证号]"),
    # Bank card: 16-19 digits, optionally grouped by spaces or dashes.
    (re.compile(r"(?<![0-9])(?:[0-9]{4}[ -]?){3}[0-9]{4,7}(?![0-9])"), "[银行卡号]"),
    # Mobile: 11 digits starting 1[3-9], optionally +86 and separators.
    (re.compile(r"(?<![0-9])(?:\+?86[ -]?)?1[3-9][0-9][ -]?[0-9]{4}[ -]?[0-9]{4}(?![0-9])"), "[手机号]"),
    # Landline: area code 0xx(x) and 7-8 digits.
    (re.compile(r"(?<![0-9])0[1-9][0-9]{1,2}[ -]?[0-9]{7,8}(?![0-9])"), "[电话]"),
]


def mask_pii(text: str) -> str:
    # Full-width digits are common in typed petitions; mask them too.
    text = text.translate({cp: cp - 0xFEE0 for cp in range(0xFF10, 0xFF1A)})
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
