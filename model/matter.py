"""Same-matter linking: which petitions describe one matter (重复信访, 群体性苗头).

Petitions are linked by what they are about, never by who wrote them. Before any
comparison the text loses what identifies a person: ID, phone and card numbers,
every other digit run (dates, amounts), and names after the words that introduce
them ("我叫", "本人", "姓名"). What is left is cut into character 3-grams, and a
MinHash signature estimates the Jaccard similarity of two petitions' 3-grams.
A banded LSH table finds the candidates of a query without comparing it with
every stored petition.

Two letters written from one template about two employers share most of their
3-grams; what tells them apart is the organisation, project or place they name.
So a pair is linked only when its text is similar enough *and* its anchors (names
ending in 公司, 项目, 村 ... ) do not contradict each other. Organisation and place
names are not persons: they may be shown as the words that make a group one matter.

Signatures are computed from the codepoints with fixed seeds, so every process
(every service worker, every training run) gets the same signature for a text.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from model.identifiers import NUMBER_PATTERNS
from model.text import MASKED_NUMBER

NUM_PERM = 128
BANDS, ROWS = 32, 4  # LSH: a pair becomes a candidate with probability 1-(1-J^4)^32
SHINGLE = 3
# Similarity (estimated Jaccard of 3-grams) from which two petitions are one matter;
# benchmarks/linking.py measures precision and recall around it.
LINK_THRESHOLD = 0.5
# Lookups whose signatures are kept for the petition being stored next (at least the threads of a worker).
RECENT_KEPT = 64
SEED = 19
# A letter states its matter long before this many characters; the rare longer ones
# would cost a lookup ten times the usual.
MAX_CHARS = 3000

_MASK = "#"
_PII = [
    # Resident ID, bank card, mobile, landline: found as service/pii.py finds them before storage,
    # so that a letter in clear and the same letter as stored lose the same characters; plus the
    # placeholders masking leaves and the asterisk runs some boards put in their place. Other digit
    # runs become "0" below.
    *(pattern for pattern, _ in NUMBER_PATTERNS),
    re.compile(rf"{MASKED_NUMBER.pattern}|[*＊×xX]{{3,}}"),
    # The writer's address in a letter's form (住址, 家庭住址, 联系地址, 通讯地址): it says where the
    # writer lives, not what the matter is, and its place names would otherwise be anchors that keep
    # two writers' letters about one matter apart and tie one writer's letters together. A
    # workplace's address (单位地址) is the matter's, and stays.
    re.compile(r"(?:(?<=住址[:：])|(?<=[系讯庭]地址[:：]))[^,，。;；、\s]+"),
]
# A name after the words that introduce one, in prose or in a letter's form (信访人：, 反映人：).
# Names elsewhere are not found; the anchors below never use a person's name, and two letters
# that differ only in a name stay similar.
_NAME = re.compile(r"(我叫|本人|姓名[:：]?|名叫|我是|(?:信访|反映|投诉|举报|申请|联系|来信)人[:：]?)"
                   r"([\u4e00-\u9fff]{2,3})(?=[，,。.、；;：:\s(（]|$)")
_TITLE = re.compile(r"[\u4e00-\u9fff](先生|女士|师傅|老师|同志|大爷|阿姨)")
# Digit runs that are not part of a place code such as "A3区" (boards code places that way).
_DIGITS = re.compile(r"(?<![A-Za-z0-9])[0-9]+(?:\.[0-9]+)?")
_NOT_WORD = re.compile(r"[\W_]+")

# Anchors: the thing a matter is about, by the suffix that ends its name. A pair naming different
# things of one kind (two employers, two projects, two villages) is not linked: anchors_conflict.
_ANCHOR_KINDS = {
    "organisation": "有限责任公司|有限公司|分公司|公司|集团|工厂|厂|医院|学校|中学|小学|幼儿园|酒店|银行|合作社|"
                    "超市|购物广场|购物中心|大药房|药房|药店|商店|商行|商场|百货|便利店|专卖店|饭店|餐厅|酒楼|店",
    "project": "项目部|项目|工地|工程|楼盘|小区|花园|家园|广场|园区|开发区|矿",
    "place": "街道|社区|村|镇|乡|县|区|市",
}
_SUFFIX = re.compile("|".join(f"(?P<{k}>{v})" for k, v in _ANCHOR_KINDS.items()))
# Characters that end a name when read backwards from its suffix ("在华建公司" -> "华建").
_STOP = set("在的和与及是了向到从对给被把将我你他她们该本此这那某其个所之于为由找去来说叫")
# 家 ends a name only as a counter (一家超市, 两家公司; after 这, 那, 该 it is cut there anyway):
# in 万家百货 or 家乐福 it is part of the name, and cutting there left the shop unnamed.
_COUNTED = set("一两几每哪整多")
_GENERIC = {"建筑", "劳务", "物业", "保安", "科技", "工程", "建设", "实业", "发展", "贸易", "投资", "置业", "地产", "房地产",
            "人民", "政府", "原来", "原", "老", "新", "当地", "全", "各", "一", "用人", "施工", "承包", "总", "子"}
_NAME_WINDOW = 6


def _masked(text: str) -> str:
    # Identity fields masked; punctuation kept, so that an anchor's name stops at a sentence break.
    text = unicodedata.normalize("NFKC", text)
    for pattern in _PII:
        text = pattern.sub(_MASK, text)
    text = _NAME.sub(lambda m: m.group(1) + _MASK, text)
    text = _TITLE.sub(lambda m: _MASK + m.group(1), text)
    return _DIGITS.sub("0", text)


def normalize_for_linking(text: str) -> str:
    """The text as linking reads it: identity fields and numbers masked, punctuation dropped.

    Parameters
    ----------
    text : str
        A petition (title and body, any width of digits).

    Returns
    -------
    str
        Identity numbers and names after introducing words are dropped, other digit runs
        become ``0``; only letters, digits and Chinese characters remain.
    """
    return _NOT_WORD.sub("", _masked(text))


def anchors_of(text: str) -> dict[str, frozenset[str]]:
    """`anchors` of a petition as written."""
    return anchors(_masked(text))


def anchors(masked: str) -> dict[str, frozenset[str]]:
    """Names of organisations, projects and places in a masked text (punctuation kept), by kind.

    Each is the up to six characters before a suffix, cut at the last function word
    ("在", "的", "我们" ...), mask or punctuation; generic names ("建筑公司", "该公司") are left out.
    """
    found: dict[str, set[str]] = {}
    previous_end = 0
    for match in _SUFFIX.finditer(masked):
        # A name does not run back over the anchor before it ("A区华建公司" names 华建, not 区华建).
        window = masked[max(previous_end, match.start() - _NAME_WINDOW):match.start()]
        previous_end = match.end()
        cut = max((i for i, ch in enumerate(window)
                   if ch in _STOP or not (ch.isalnum() and ch.isprintable()) or (ch == "家" and i and window[i - 1] in _COUNTED)),
                  default=-1)
        name = window[cut + 1:].lstrip("0")
        if len(name) < 2 and not (name and name.isascii() and name.isalpha()):
            continue
        if name in _GENERIC or (name[-2:] in _GENERIC and len(name) <= 3):
            continue
        found.setdefault(match.lastgroup or "", set()).add(name)
    return {kind: frozenset(names) for kind, names in found.items()}


def _bigrams(names: frozenset[str]) -> set[str]:
    return {n[i:i + 2] for n in names for i in range(max(1, len(n) - 1))}


def anchors_conflict(a: dict[str, frozenset[str]], b: dict[str, frozenset[str]]) -> bool:
    """True when, for one kind, each side names something the other does not and those
    names do not overlap.

    Names both mention are set aside first (a template's fixed words can look like a
    name). Overlap is at least half the character pairs of the shorter side, so
    "恒远建筑" and "恒远" agree while "督促恒远建筑" and "督促鑫达劳务" do not."""
    for kind in a.keys() & b.keys():
        only_a, only_b = _bigrams(a[kind] - b[kind]), _bigrams(b[kind] - a[kind])
        if only_a and only_b and 2 * len(only_a & only_b) < min(len(only_a), len(only_b)):
            return True
    return False


def shared_words(texts: Sequence[str], top: int = 8) -> list[str]:
    """The anchors (organisation, project, place names) most of `texts` mention: the
    words that make them one matter. Persons' names are never anchors."""
    counts: dict[str, int] = {}
    for text in texts:
        for names in anchors_of(text).values():
            for name in names:
                counts[name] = counts.get(name, 0) + 1
    need = max(2, (len(texts) + 1) // 2)
    common = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= need]
    # "滨江" adds nothing beside "滨江花园".
    return [w for w in common if not any(w != longer and w in longer for longer in common)][:top]


# --- MinHash ------------------------------------------------------------------------

_M = np.uint64(0xFFFFFFFFFFFFFFFF)
_rng = np.random.default_rng(SEED)
_A = _rng.integers(1, 2**63, NUM_PERM, dtype=np.uint64) | np.uint64(1)  # odd multipliers: multiply-shift hashing
_B = _rng.integers(0, 2**63, NUM_PERM, dtype=np.uint64)
_BAND_MIX = _rng.integers(1, 2**63, ROWS, dtype=np.uint64) | np.uint64(1)
_EMPTY = np.full(NUM_PERM, np.iinfo(np.uint32).max, dtype=np.uint32)


def _mix(x: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser: spreads the packed codepoints over all 64 bits.
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def shingles(normalized: str) -> np.ndarray:
    """The distinct character 3-grams of a normalised text, as 64-bit hashes."""
    codes = np.frombuffer(normalized.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < SHINGLE:
        codes = np.concatenate([codes, np.zeros(SHINGLE - len(codes), np.uint64)]) if len(codes) else codes
    if not len(codes):
        return codes
    packed = (codes[:-2] << np.uint64(42)) | (codes[1:-1] << np.uint64(21)) | codes[2:]
    return _mix(np.unique(packed))


def signature(normalized: str) -> np.ndarray:
    """MinHash signature (NUM_PERM uint32) of a normalised text's 3-grams (of its first MAX_CHARS)."""
    hashed = shingles(normalized[:MAX_CHARS])
    if not len(hashed):
        return _EMPTY.copy()
    with np.errstate(over="ignore"):
        values = np.multiply.outer(hashed, _A)
        values += _B
    # The shift keeps order, so the smallest value shifted is the smallest shifted value:
    # one pass over the shingles' hashes fewer.
    return (values.min(axis=0) >> np.uint64(32)).astype(np.uint32)


def _band_keys(signatures: np.ndarray) -> np.ndarray:
    """(n, BANDS) uint64: one hash per band of ROWS signature values."""
    sig = signatures.astype(np.uint64).reshape(len(signatures), BANDS, ROWS)
    with np.errstate(over="ignore"):
        return _mix((sig * _BAND_MIX).sum(axis=2, dtype=np.uint64))


@dataclass(frozen=True)
class Match:
    """A stored petition similar to the query: its key, and the estimated Jaccard similarity."""

    key: str
    similarity: float


class MatterIndex:
    """Stored petitions' signatures and anchors, searchable for the same matter.

    Parameters
    ----------
    threshold : float, default=LINK_THRESHOLD
        Estimated Jaccard similarity of masked 3-grams from which a pair is one matter.

    Attributes
    ----------
    latest : float
        The latest `when` stored (-inf while empty).

    Notes
    -----
    The band hashes of the first rows are kept sorted (binary search per band); rows
    added since are compared directly, and sorted in once they are a sixteenth of
    the index. Rows no lookup needs any more are removed with `drop`. Thread-safe: a
    service worker adds, queries and drops from several threads.
    """

    def __init__(self, threshold: float = LINK_THRESHOLD) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold: {threshold!r} is not in (0, 1]")
        self.threshold = threshold
        self._lock = threading.RLock()
        self._keys: list[str] = []
        self._when: list[float] = []
        self.latest = float("-inf")
        self._anchors: list[dict[str, frozenset[str]]] = []
        self._positions: dict[str, int] = {}
        self._sigs = np.empty((0, NUM_PERM), np.uint32)
        self._bands = np.empty((0, BANDS), np.uint64)
        self._size = 0
        self._sorted_upto = 0
        self._order = np.empty((BANDS, 0), np.int64)
        self._sorted = np.empty((BANDS, 0), np.uint64)
        # Texts looked up lately, with what was computed for them: a petition is looked up
        # just before it is stored, and storing it need not compute all that again.
        self._recent: dict[str, tuple[dict[str, frozenset[str]], np.ndarray]] = {}

    def _prepared(self, text: str, keep: bool = False) -> tuple[dict[str, frozenset[str]], np.ndarray]:
        """The anchors and signature of `text`: from a recent lookup, or computed (and, with
        `keep`, remembered for RECENT_KEPT lookups)."""
        with self._lock:
            found = self._recent.get(text) if keep else self._recent.pop(text, None)
        if found is not None:
            return found
        masked = _masked(text)
        found = anchors(masked), signature(_NOT_WORD.sub("", masked))
        if keep:
            with self._lock:
                self._recent[text] = found
                while len(self._recent) > RECENT_KEPT:
                    del self._recent[next(iter(self._recent))]
        return found

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: object) -> bool:
        return key in self._positions

    def keys_between(self, since: float, until: float) -> list[str]:
        """Keys stored with `when` in [since, until], in the order they were added."""
        with self._lock:
            return [k for k, w in zip(self._keys, self._when, strict=True) if since <= w <= until]

    def links_between(self, since: float, until: float, limit: int = 50) -> tuple[list[str], dict[str, set[str]]]:
        """The keys stored with `when` in [since, until], in the order they were added, each with
        the keys among them it is linked to: those `query_key(key, limit, since, until)` finds for
        each key, linked both ways. Found for all the keys at once from their own band hashes:
        a lookup per key compares it with every stored petition sharing a band with it, whenever
        received, which for a look-back of weeks in a year of petitions took seconds."""
        with self._lock:
            whens = np.fromiter(self._when, np.float64, count=self._size)
            rows = np.flatnonzero((whens >= since) & (whens <= until))
            keys = [self._keys[row] for row in rows.tolist()]
            sigs, anchor_list = self._sigs[rows], [self._anchors[row] for row in rows.tolist()]
            # Kept since each row was added: no need to compute them again for every row of the look-back.
            bands = self._bands[rows]
        links: dict[str, set[str]] = {key: set() for key in keys}
        for query, match in zip(*(side.tolist() for side in _links(sigs, anchor_list, self.threshold, limit, bands)), strict=True):
            links[keys[query]].add(keys[match])
            links[keys[match]].add(keys[query])
        return keys, links

    def when(self, key: str) -> float:
        """The `when` stored with `key`; KeyError when it is not stored (or was dropped)."""
        with self._lock:
            return self._when[self._positions[key]]

    def whens(self, keys: Iterable[str]) -> dict[str, float]:
        """`when` of each of `keys` still stored, in the order of `keys`.

        Keys not stored are left out: a key found by one lookup may have been dropped
        (`drop`) before the next, and is then outside any window asked for."""
        with self._lock:
            return {key: self._when[position] for key in keys if (position := self._positions.get(key)) is not None}

    def add(self, key: str, text: str, when: float = 0.0) -> None:
        """Stores one petition (unless its key is already there); `when` is a timestamp in seconds."""
        self.add_many([(key, text, when)])

    def add_many(self, items: Iterable[tuple[str, str, float]]) -> None:
        prepared = []
        for key, text, when in items:
            anchor, sig = self._prepared(text)
            prepared.append((key, when, anchor, sig))
        with self._lock:
            prepared = [p for p in prepared if p[0] not in self._positions]
            if not prepared:
                return
            sigs = np.stack([p[3] for p in prepared])
            self._grow(self._size + len(prepared))
            start = self._size
            self._sigs[start:start + len(prepared)] = sigs
            self._bands[start:start + len(prepared)] = _band_keys(sigs)
            for offset, (key, when, anchor, _sig) in enumerate(prepared):
                self._positions[key] = start + offset
                self._keys.append(key)
                self._when.append(when)
                self._anchors.append(anchor)
                self.latest = max(self.latest, when)
            self._size += len(prepared)
            if self._size - self._sorted_upto > max(256, self._sorted_upto // 16):
                self._sort()

    def drop(self, keys: Iterable[str]) -> int:
        """Removes stored petitions: those no lookup will ask for again.

        Parameters
        ----------
        keys : iterable of str
            Keys to drop; those not stored are ignored.

        Returns
        -------
        int
            How many rows were dropped.

        Notes
        -----
        The rows kept stay in the order they were added, so every lookup, `links_between`
        and `components` among them finds what an index built from them alone would find
        (ties keep going to the earlier row). The arrays are copied to the size of the rows
        kept, which is what frees the memory, and the band hashes sorted again: one pass
        over the index, meant to be done rarely. Texts looked up lately (kept for the
        petition stored next) belong to no row and stay.
        """
        with self._lock:
            gone = [position for key in set(keys) if (position := self._positions.get(key)) is not None]
            if not gone:
                return 0
            keep = np.ones(self._size, bool)
            keep[gone] = False
            rows = np.flatnonzero(keep)
            kept = rows.tolist()
            # Fancy indexing copies: the old, larger arrays are freed once replaced.
            self._sigs, self._bands = self._sigs[rows], self._bands[rows]
            # The lists are changed in place: the objects a worker has frozen (service/heap.py)
            # stay the ones it holds.
            self._keys[:] = [self._keys[row] for row in kept]
            self._when[:] = [self._when[row] for row in kept]
            self._anchors[:] = [self._anchors[row] for row in kept]
            # A new mapping, swapped in whole: `in` is asked without the lock.
            self._positions = {key: position for position, key in enumerate(self._keys)}
            self._size = len(kept)
            self.latest = max(self._when, default=float("-inf"))
            self._sort()
            return len(gone)

    def _grow(self, needed: int) -> None:
        if needed <= len(self._sigs):
            return
        capacity = max(needed, 2 * len(self._sigs), 1024)
        sigs = np.empty((capacity, NUM_PERM), np.uint32)
        bands = np.empty((capacity, BANDS), np.uint64)
        sigs[:self._size], bands[:self._size] = self._sigs[:self._size], self._bands[:self._size]
        self._sigs, self._bands = sigs, bands

    def _sort(self) -> None:
        bands = self._bands[:self._size].T
        self._order = np.argsort(bands, axis=1, kind="stable")
        self._sorted = np.take_along_axis(bands, self._order, axis=1)
        self._sorted_upto = self._size

    def _candidates(self, bands: np.ndarray) -> np.ndarray:
        found = []
        for b in range(BANDS):
            ordered, key = self._sorted[b], bands[b]
            lo = int(ordered.searchsorted(key))
            # Most bands of a query match no stored petition: the end of the run is looked for
            # only when there is one.
            if lo < len(ordered) and ordered[lo] == key:
                found.append(self._order[b, lo:int(ordered.searchsorted(key, "right"))])
        tail = self._bands[self._sorted_upto:self._size]
        if len(tail):
            found.append(self._sorted_upto + np.flatnonzero((tail == bands).any(axis=1)))
        return np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)

    def query(self, text: str, limit: int = 5, since: float | None = None, until: float | None = None,
              exclude: str | None = None) -> list[Match]:
        """Stored petitions about the same matter as `text`, most similar first.

        Parameters
        ----------
        text : str
            The petition to look up (it need not be stored).
        limit : int, default=5
            At most this many matches.
        since, until : float, optional
            Only petitions stored with `when` in [since, until].
        exclude : str, optional
            A key to leave out (the query's own, when it is stored).
        """
        anchor, sig = self._prepared(text, keep=True)
        return self._query(sig, anchor, limit, since, until, exclude)

    def query_key(self, key: str, limit: int = 50, since: float | None = None, until: float | None = None) -> list[Match]:
        """Like `query`, for a petition already stored under `key`; none when it is not stored
        (a key found by an earlier lookup may have been dropped since)."""
        with self._lock:
            position = self._positions.get(key)
            if position is None:
                return []
            sig, anchor = self._sigs[position].copy(), self._anchors[position]
        return self._query(sig, anchor, limit, since, until, key)

    def _query(self, sig: np.ndarray, anchor: dict[str, frozenset[str]], limit: int,
               since: float | None, until: float | None, exclude: str | None) -> list[Match]:
        bands = _band_keys(sig[None, :])[0]
        with self._lock:
            rows = self._candidates(bands)
            if not len(rows):
                return []
            similarity = (self._sigs[rows] == sig).mean(axis=1)
            keep = similarity >= self.threshold
            rows, similarity = rows[keep], similarity[keep]
            matches = []
            for row, sim in sorted(zip(rows.tolist(), similarity.tolist(), strict=True), key=lambda rs: (-rs[1], rs[0])):
                key, when = self._keys[row], self._when[row]
                if key == exclude or (since is not None and when < since) or (until is not None and when > until):
                    continue
                if anchors_conflict(anchor, self._anchors[row]):
                    continue
                matches.append(Match(key, round(sim, 4)))
                if len(matches) >= limit:
                    break
        return matches

    def nbytes(self) -> int:
        """Bytes held by the arrays (the Python lists and anchor sets come on top)."""
        return int(self._sigs.nbytes + self._bands.nbytes + self._order.nbytes + self._sorted.nbytes)


def components(index: MatterIndex, keys: Sequence[str], since: float | None = None, until: float | None = None) -> list[list[str]]:
    """`keys` (stored in `index`) split into groups linked directly or through others,
    each in the order of `keys`, the groups in the order of their first member."""
    parent = {k: k for k in keys}

    def root(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for key in keys:
        for match in index.query_key(key, limit=50, since=since, until=until):
            if match.key in parent:
                a, b = root(key), root(match.key)
                if a != b:
                    parent[b] = a
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(root(key), []).append(key)
    return list(groups.values())


# Texts prepared per worker process at a time when linking in processes.
PREPARE_BATCH = 2_000


def _prepare(texts: Sequence[str]) -> tuple[list[dict[str, frozenset[str]]], np.ndarray]:
    """Anchors and MinHash signatures of `texts`, as MatterIndex computes them."""
    anchors_list, sigs = [], np.empty((len(texts), NUM_PERM), np.uint32)
    for i, text in enumerate(texts):
        masked = _masked(text)
        anchors_list.append(anchors(masked))
        sigs[i] = signature(_NOT_WORD.sub("", masked))
    return anchors_list, sigs


def _similar_pairs(sigs: np.ndarray, threshold: float, bands: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j, of every two rows sharing the hash of at least one band (the candidates
    MatterIndex finds, for all rows at once) whose similarity is `threshold` or above, each pair
    once, and their similarities. Candidates are weighed band by band as they are found and only
    the similar ones kept: they far outnumber the pairs kept, and held all at once, those of a
    year of petitions took more memory than all else a service worker holds. `bands`: the rows'
    band hashes when the caller holds them already (MatterIndex does), else computed here."""
    bands = _band_keys(sigs) if bands is None else bands
    n = len(bands)
    width = sigs.shape[1]
    # Candidates are first weighed on the low byte of each signature value: equal values have
    # equal low bytes, so a pair whose low bytes agree too seldom cannot be similar, and only the
    # few others are compared on the whole values. Texts sharing a stock phrase share a band,
    # and such candidates, nearly all dissimilar, were most of a wide look-back's time.
    low = sigs.astype(np.uint8)
    found = []
    for b in range(bands.shape[1]):
        order = np.argsort(bands[:, b], kind="stable")
        keys = bands[order, b]
        # In the band's order, so that the rows of a run are read from one place in memory.
        ordered = np.take(low, order, axis=0)
        # Rows with equal keys are neighbours once sorted: pair each with the ones d
        # places on, for growing d, as long as any run is still that long.
        active = np.arange(n - 1)
        d = 1
        while len(active):
            active = active[active + d < n]
            active = active[keys[active] == keys[active + d]]
            # In slices small enough for the bytes compared to stay in the processor's cache.
            for start in range(0, len(active), 8192):
                at = active[start:start + 8192]
                # A count over the width is the mean computed below, exactly: a similar pair passes.
                agree = (np.take(ordered, at, axis=0) == np.take(ordered, at + d, axis=0)).sum(axis=1, dtype=np.int32)
                at = at[agree / width >= threshold]
                i, j = order[at], order[at + d]
                close = (sigs[i] == sigs[j]).mean(axis=1) >= threshold
                i, j = i[close], j[close]
                found.append(np.minimum(i, j).astype(np.int64) * n + np.maximum(i, j))
            d += 1
    codes = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
    pairs = np.column_stack([codes // n, codes % n])
    return pairs, (sigs[pairs[:, 0]] == sigs[pairs[:, 1]]).mean(axis=1)


def _links(sigs: np.ndarray, anchor_list: Sequence[dict[str, frozenset[str]]], threshold: float,
           limit: int = 50, bands: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(query, match) rows: each row linked to its `limit` most similar rows (ties: the earlier
    row) at `threshold` or above whose anchors do not conflict, as `MatterIndex.query_key`
    finds them one row at a time; found for all rows at once (`bands`: see _similar_pairs)."""
    pairs, similar = _similar_pairs(sigs, threshold, bands)
    # anchors_conflict is symmetric: checked once per pair.
    agree = np.fromiter((not anchors_conflict(anchor_list[i], anchor_list[j]) for i, j in pairs.tolist()),
                        dtype=bool, count=len(pairs))
    pairs, similar = pairs[agree], similar[agree]
    query = np.concatenate([pairs[:, 0], pairs[:, 1]])
    match = np.concatenate([pairs[:, 1], pairs[:, 0]])
    similarity = np.concatenate([similar, similar])
    order = np.lexsort((match, -similarity, query))
    query, match = query[order], match[order]
    first = np.searchsorted(query, query, "left")
    kept = np.arange(len(query)) - first < limit
    return query[kept], match[kept]


def link_matters(texts: Sequence[str], threshold: float = LINK_THRESHOLD, n_jobs: int | None = None) -> list[str]:
    """A matter id per text: texts linked directly or through others share one.

    The links are those of `components` over a MatterIndex holding every text (each
    text linked to its 50 most similar ones without conflicting anchors), found for all
    texts at once: candidate pairs by sorting the band hashes, weighed as they are found,
    rather than one lookup per text.

    Parameters
    ----------
    texts : sequence of str
        Petitions (title and body joined).
    threshold : float, default=LINK_THRESHOLD
    n_jobs : int, optional
        Processes that mask the texts and compute their signatures (joblib).

    Returns
    -------
    list of str
        ``"M<n>"`` per text, numbered in order of first appearance; a text linked to
        no other has a matter of its own.
    """
    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    texts = list(texts)
    n = len(texts)
    if n == 0:
        return []
    if n_jobs is None or n_jobs == 1 or n <= PREPARE_BATCH:
        anchor_list, sigs = _prepare(texts)
    else:
        parts = Parallel(n_jobs=n_jobs)(delayed(_prepare)(texts[i:i + PREPARE_BATCH]) for i in range(0, n, PREPARE_BATCH))
        # The worker processes would otherwise stay, idle, holding memory, for minutes.
        get_reusable_executor().shutdown(wait=True)
        anchor_list = [a for part, _ in parts for a in part]
        sigs = np.concatenate([s for _, s in parts])
    query, match = _links(sigs, anchor_list, threshold)
    graph = coo_matrix((np.ones(len(query)), (query, match)), shape=(n, n))
    labels = connected_components(graph, directed=False)[1]
    # Numbered by their first text.
    first_of = np.full(labels.max() + 1, n)
    np.minimum.at(first_of, labels, np.arange(n))
    number = np.empty(len(first_of), np.int64)
    number[np.argsort(first_of)] = np.arange(1, len(first_of) + 1)
    return [f"M{m}" for m in number[labels].tolist()]
