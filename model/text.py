"""Text normalisation and word segmentation shared by training and serving."""

from __future__ import annotations

import re
import unicodedata

import rjieba

# What retention (`triage purge`) leaves of a petition's text; training never reads such a petition.
PURGED_TEXT = "[已按保留期限删除]"
# What masking (service/pii.py) stores in place of a resident ID, a bank card, a mobile or a
# landline number, wherever it occurs: in a case number too (0531-2026-0001 becomes [电话]).
MASKED_NUMBER = re.compile(r"\[(?:身份证号|银行卡号|手机号|电话)\]")

# Full-width ASCII is common in petitions typed on Chinese IMEs; folding it lets
# "１２３３３" and "12333" be the same feature. NFKC would also fold the
# full-width Chinese punctuation that the offsets must keep, so only the ASCII
# block is folded (one-to-one, so character offsets are unchanged).
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FULLWIDTH[0x3000] = 0x20
# A lone surrogate (JSON allows "\ud800") is not text: the segmenter and the
# character n-grams cannot encode it. It becomes U+FFFD, still one character.
_FULLWIDTH.update(dict.fromkeys(range(0xD800, 0xE000), 0xFFFD))
_SPACE = re.compile(r"\s+")
# rjieba keeps runs such as "2016.4.19", "0769-12345" or "baidu.com" whole,
# where jieba's fallback segmenter splits them into "2016.4" "." "19"; these
# patterns redo jieba's split so both give the same tokens.
_ASCII_RUN = re.compile(r"[a-zA-Z0-9+#&._%\-]+")
# jieba.finalseg's re_skip: the split applied to runs the dictionary does not know.
_FINALSEG_SKIP = re.compile(r"([a-zA-Z0-9]+(?:\.\d+)?%?)")
# The only such runs in jieba's dictionary, which jieba keeps whole.
_DICTIONARY_ASCII = frozenset({"AT&T", "c#", "C#", "c++", "C++"})


def has_text(*fields: str) -> bool:
    """Whether any of `fields` holds a character a person can read: not only spaces and
    invisible format or control characters (zero-width spaces, byte-order marks,
    direction marks), which pasting from web pages and Word leaves behind. Such a
    petition was routed as if it said something, without review."""
    return any(not ch.isspace() and unicodedata.category(ch) not in ("Cc", "Cf") for field in fields for ch in field)


def normalize(text: str) -> str:
    """Same length as the input, so offsets computed on it hold for the original."""
    return text.translate(_FULLWIDTH)


# Numbers say little about which division should act, and how a board masks or prints
# them says a lot about the board: a phone number, an ID masked as asterisks or a
# case number would otherwise route a petition by where it was posted. Long digit
# runs (with their separators) and mask runs become blanks; shorter runs (dates,
# amounts, ages) become zeros, so that "2019年3月" and "2021年10月" are one pattern.
# Five-digit runs stay: the hotlines (12333, 12345) are words of their own.
_LONG_NUMBER = re.compile(r"[0-9*#xX][0-9*# -]{4,}[0-9*#xX]|[*#]{3,}")
_SHORT_NUMBER = re.compile(r"(?<![0-9])[0-9]{1,4}(?![0-9])")
NUMBER_VIEWS = ("digits", "long_blank", "placeholders")


def feature_view(normalized: str, numbers: str = "placeholders") -> str:
    """The text the word and character features read: `normalize`d text with numbers
    replaced as `numbers` says ("digits": as written; "long_blank": long numbers and
    masks blanked; "placeholders": also shorter numbers as zeros). Same length as the
    input, so offsets still hold."""
    if numbers == "digits":
        return normalized

    def long_blank(match: re.Match[str]) -> str:
        run = match.group()
        return " " * len(run) if sum(ch.isdigit() or ch in "*#" for ch in run) >= 6 or run[0] in "*#" else run

    viewed = _LONG_NUMBER.sub(long_blank, normalized)
    if numbers == "placeholders":
        viewed = _SHORT_NUMBER.sub(lambda m: "0" * len(m.group()), viewed)
    return viewed


def join_fields(title: str, body: str) -> str:
    """The one string every head reads: the title on the first line, then the body."""
    title = _SPACE.sub(" ", unicodedata.normalize("NFC", title or "")).strip()
    return f"{title}\n{body or ''}"


def title_of(text: str) -> str:
    return text.partition("\n")[0]


# How much of the end of a body counts as the request: petitions close with what
# they ask for, and the taxonomy labels what is asked, not every topic mentioned.
ASK_CHARS = 120


def ask_start(text: str) -> int:
    """Offset in `text` where the request region (`ask_of`) begins."""
    return max(text.find("\n") + 1, len(text) - ASK_CHARS)


def ask_of(text: str) -> str:
    return text[ask_start(text):]


def segment(text: str) -> list[str]:
    """jieba's segmentation (rjieba is a Rust build of the same dictionary and
    algorithm, about 30x faster here; tests/test_segmentation.py checks they agree)."""
    tokens = []
    for word in rjieba.cut(text):
        if word.isspace():
            continue
        # isascii() first: most tokens are Chinese, and it costs far less than the regex.
        if word.isascii() and _ASCII_RUN.fullmatch(word) and word not in _DICTIONARY_ASCII:
            tokens.extend(piece for piece in _FINALSEG_SKIP.split(word) if piece)
        else:
            tokens.append(word)
    return tokens
