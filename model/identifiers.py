"""Where a text gives a person's resident ID, bank card, mobile or landline number.

One definition for the two places that must find the same numbers: masking before
anything is stored, exported or logged (service/pii.py), and linking, which drops them
before comparing petitions (model/matter.py). Were they found differently, a letter
in clear (a ledger, a petition sent again) and the same letter as stored would lose
different characters, and their signatures would disagree.

Numbers are found however they are written: groups separated by a space, a dash or a
dot of any kind (138-1234-5678, 138.1234.5678, 6222 0212 3456 7890 123), including the
non-breaking and zero-width spaces that text pasted from a word processor or a web page
carries between the groups, or by a short run of them (138  1234  5678, 138 - 1234 - 5678,
6222. 0212. 3456. 7890), as typed petitions space their numbers. Full-width digits are
folded by the caller first."""

from __future__ import annotations

import re

# Between digit groups, nothing or a short run of separators in any mix: spaces (plain,
# non-breaking, thin, zero-width), hyphens and dashes, dots (the full-width one too, which
# full-width typing gives with its digits). Typed petitions put two spaces, " - " or ". "
# between groups; a longer run is a break in the prose, not a number's. Listed here rather
# than translated away, as a dash or a space in prose must stay what it was. A match still
# begins and ends with a digit, so no separator around a number is taken with it.
_S = "[ \u00a0\u2000-\u200d\u2060\u202f\u205f\ufeff\\-\u2010-\u2015\u2212.\uff0e\u00b7\u30fb]{0,3}"
# Each pattern with the placeholder masking stores in its place (model/text.py's MASKED_NUMBER).
NUMBER_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Resident ID: 18 characters (17 digits + digit/X), or the old 15-digit form, grouped 6-8-4 or not.
    (
        re.compile(
            rf"(?<![0-9])[1-9][0-9]{{5}}{_S}(?:19|20)[0-9]{{2}}{_S}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]){_S}"
            rf"[0-9]{{3}}[0-9Xx](?![0-9])"
        ),
        "[身份证号]",
    ),
    (re.compile(rf"(?<![0-9])[1-9][0-9]{{5}}{_S}[0-9]{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]){_S}[0-9]{{3}}(?![0-9])"), "[身份证号]"),
    # Bank card: 16-19 digits in any grouping (4-4-4-4-3, 6-13, none).
    (re.compile(rf"(?<![0-9])[0-9](?:{_S}[0-9]){{15,18}}(?![0-9])"), "[银行卡号]"),
    # Mobile: 11 digits starting 1[3-9], optionally +86 and separators (3-4-4).
    (re.compile(rf"(?<![0-9])(?:\+?86{_S})?1[3-9][0-9]{_S}[0-9]{{4}}{_S}[0-9]{{4}}(?![0-9])"), "[手机号]"),
    # Landline: area code 0xx(x), optionally in brackets, and a 7-8 digit number (possibly split 3-4 or 4-4).
    (re.compile(rf"(?<![0-9])(?:\(0[1-9][0-9]{{1,2}}\)|（0[1-9][0-9]{{1,2}}）|0[1-9][0-9]{{1,2}}){_S}[0-9]{{3,4}}{_S}[0-9]{{4}}(?![0-9])"), "[电话]"),
]
