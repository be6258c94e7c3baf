"""Where a text gives a person's resident ID, bank card, mobile or landline number.

One definition for the two places that must find the same numbers: masking before
anything is stored, exported or logged (service/pii.py), and linking, which drops them
before comparing petitions (model/matter.py). Were they found differently, a letter
in clear (a ledger, a petition sent again) and the same letter as stored would lose
different characters, and their signatures would disagree.

Numbers are found however they are written: groups separated by a space, a dash or a
dot of any kind (138-1234-5678, 138.1234.5678, 6222 0212 3456 7890 123), including the
non-breaking and zero-width spaces that text pasted from a word processor or a web page
carries between the groups and the tabs of text pasted from a spreadsheet, or by a short
run of them (138  1234  5678, 138 - 1234 - 5678, 6222. 0212. 3456. 7890), as typed
petitions space their numbers. Full-width digits are folded by the caller first.

A bank card is found only grouped as cards are printed (4-4-4-4, 4-4-4-4-3, the issuer's
six digits apart: 6-13, 6-10-3, or no groups), so that dates, which are not identifiers,
stay as typed: a period of work or of contributions (2023.10.12-2024.10.12, 2019.03.01
2020.05.01) has as many digits as a card but is grouped 4-2-2, and one written without
its dots (20231012-20241012) is two dates joined by a dash, which no card is."""

from __future__ import annotations

import re

# Between digit groups, nothing or a short run of separators in any mix: spaces (plain,
# non-breaking, thin, zero-width) and tabs (a number pasted from a spreadsheet, one group
# to a cell), hyphens and dashes, dots (the full-width one too, which full-width typing
# gives with its digits). Typed petitions put two spaces, " - " or ". " between groups;
# a longer run is a break in the prose, not a number's. Listed here rather than translated
# away, as a dash or a space in prose must stay what it was. A match still begins and ends
# with a digit, so no separator around a number is taken with it.
_S = "[ \t\u00a0\u2000-\u200d\u2060\u202f\u205f\ufeff\\-\u2010-\u2015\u2212.\uff0e\u00b7\u30fb]{0,3}"
# A date as written without separators (20231012), in the years a petition speaks of (a
# birth date or a period of work in the archives goes back to the 1940s and before): a
# month that exists and a day that month has (a leap day in any year: telling leap years
# apart would save nothing). No card's issuer number begins with such a year (none begins
# with a one, and the cards that begin with a two begin above this century's years), so a
# card cut in two halves is not two dates.
_DATE = "(?:19[0-9]{2}|20[0-9]{2})(?:(?:0[1-9]|1[0-2])(?:0[1-9]|1[0-9]|2[0-9])|(?:0[13-9]|1[0-2])30|(?:0[13578]|1[02])31)"
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
    # Bank card: 16-19 digits written as cards print them, not any 16-19 digits with
    # separators anywhere, which took date ranges and lists of dates (2023.10.12-2024.10.12)
    # for cards and stored them as a mask. A run without separators, all of it: a short
    # number after it (卡号6222021234567890 300元) is an amount or a count, not the card's
    # last group, which an ungrouped card does not have. Groups of four with a last group
    # of one to three digits (4-4-4-4, 4-4-4-4-3), as a card's face and a bank's app show
    # it; the runs between them may be empty, so a card with one space forgotten is still
    # a card, but two dates written without their dots and joined by a dash
    # (20231012-20241012) are not: they are the period a wage or contract claim turns on.
    # And the issuer's six digits set apart from the account (6-13, 6-12, 6-10-3), as some
    # passbooks and bank statements print it: no date is so grouped, so taking these costs
    # nothing, and a card left in clear costs much.
    (
        re.compile(
            rf"(?<![0-9])(?:[0-9]{{16,19}}"
            rf"|(?!{_DATE}(?=[^0-9]{{0,2}}[\-\u2010-\u2015\u2212]){_S}{_DATE}(?![0-9]))"
            rf"[0-9]{{4}}(?:{_S}[0-9]{{4}}){{3}}(?:{_S}[0-9]{{1,3}})?"
            rf"|[0-9]{{6}}{_S}(?:[0-9]{{10}}{_S}[0-9]{{3}}|[0-9]{{10,13}}))(?![0-9])"
        ),
        "[银行卡号]",
    ),
    # Mobile: 11 digits starting 1[3-9], optionally +86 and separators (3-4-4).
    (re.compile(rf"(?<![0-9])(?:\+?86{_S})?1[3-9][0-9]{_S}[0-9]{{4}}{_S}[0-9]{{4}}(?![0-9])"), "[手机号]"),
    # Landline: area code 0xx(x), optionally in brackets, and a 7-8 digit number (possibly split 3-4 or 4-4).
    (re.compile(rf"(?<![0-9])(?:\(0[1-9][0-9]{{1,2}}\)|（0[1-9][0-9]{{1,2}}）|0[1-9][0-9]{{1,2}}){_S}[0-9]{{3,4}}{_S}[0-9]{{4}}(?![0-9])"), "[电话]"),
]
