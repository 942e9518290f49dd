"""How alike two Chinese names sound: recognizer homophones ("假钞" for 贾超) and near misses
("中会" for 周慧, "将小明" for 谢晓明) against a name we know (a policy record's).

Each character is reduced to its toneless pinyin (every reading, for characters with several:
surnames such as 曾 zeng/ceng, 单 shan/dan), split into initial and final, with the pairs callers
and recognizers confuse folded together (zh/z, ch/c, sh/s, n/l, ing/in, eng/en). Two syllables
are alike (1.0) when they fold to the same sound, half alike (0.5) when they share their initial
or their final, and unlike otherwise; names are compared syllable by syllable, aligned with
rapidfuzz when their lengths differ.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Sequence

from rapidfuzz.distance import Levenshtein

_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r",
             "z", "c", "s", "y", "w")
_FOLD_INITIAL = {"zh": "z", "ch": "c", "sh": "s", "l": "n"}
_FOLD_FINAL = {"ing": "in", "eng": "en", "v": "u", "ve": "ue", "van": "uan", "vn": "un"}


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def split_syllable(syllable: str) -> tuple[str, str]:
    """"zhong" → ("zh", "ong"); "an" → ("", "an")."""
    for initial in _INITIALS:
        if syllable.startswith(initial) and len(syllable) > len(initial):
            return initial, syllable[len(initial):]
    return "", syllable


@lru_cache(maxsize=8192)
def sounds(ch: str) -> tuple[tuple[str, str], ...]:
    """Every folded (initial, final) reading of one character; () for a non-Chinese character."""
    if not _is_cjk(ch):
        return ()
    from pypinyin import Style, pinyin

    readings = pinyin(ch, style=Style.NORMAL, heteronym=True, errors="ignore")
    out = []
    for syllable in (readings[0] if readings else []):
        initial, final = split_syllable(syllable.replace("ü", "v"))
        out.append((_FOLD_INITIAL.get(initial, initial), _FOLD_FINAL.get(final, final)))
    return tuple(dict.fromkeys(out))


def syllable_similarity(a: str, b: str) -> float:
    """1.0 same (folded) sound, 0.5 same initial or same final, 0.0 otherwise."""
    if a == b:
        return 1.0
    best = 0.0
    for ia, fa in sounds(a):
        for ib, fb in sounds(b):
            if ia == ib and fa == fb:
                return 1.0
            if ia == ib or fa == fb:
                best = 0.5
    return best


def sound_key(name: str) -> str:
    """Toneless, folded pinyin of a name (first reading of each character): equal keys sound alike."""
    parts = []
    for ch in name:
        s = sounds(ch)
        if s:
            parts.append("".join(s[0]))
    return " ".join(parts)


def name_similarity(a: str, b: str) -> float:
    """0..1: how alike two names sound (1.0 = homophones, e.g. 假钞 / 贾超)."""
    a = "".join(ch for ch in a if _is_cjk(ch))
    b = "".join(ch for ch in b if _is_cjk(ch))
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    if len(a) == len(b):
        return sum(syllable_similarity(x, y) for x, y in zip(a, b)) / len(a)
    # Different lengths ("贺强" heard for 贺志强): align by sound, then score the aligned pairs;
    # every character without a partner counts as unlike.
    ka = [sound_key(ch) or ch for ch in a]
    kb = [sound_key(ch) or ch for ch in b]
    score = 0.0
    for op, i, j in _alignment(ka, kb):
        if op in ("equal", "replace"):
            score += syllable_similarity(a[i], b[j])
    return score / max(len(a), len(b))


def _alignment(ka: list[str], kb: list[str]) -> Iterable[tuple[str, int, int]]:
    """(op, i, j) pairs of a minimal edit alignment of two syllable sequences."""
    i = j = 0
    for op in Levenshtein.editops(ka, kb):
        while i < op.src_pos and j < op.dest_pos:
            yield "equal", i, j
            i, j = i + 1, j + 1
        if op.tag == "replace":
            yield "replace", op.src_pos, op.dest_pos
            i, j = op.src_pos + 1, op.dest_pos + 1
        elif op.tag == "delete":
            i, j = op.src_pos + 1, op.dest_pos
        else:  # insert
            i, j = op.src_pos, op.dest_pos + 1
    while i < len(ka) and j < len(kb):
        yield "equal", i, j
        i, j = i + 1, j + 1


def given_name_similarity(a: str, b: str, surname_length: int = 1) -> float:
    """How alike the given names sound (the characters after the surname): family members share
    the surname, so a name matches a record's only if the given name matches too."""
    return name_similarity(a[surname_length:], b[surname_length:]) if len(a) > surname_length < len(b) else 0.0


def same_person(heard: str, known: str, threshold: float = 0.75) -> bool:
    """Is `heard` (recognized, possibly with homophones) the name `known` (from a record)?

    The whole name must sound alike (≥ threshold), and so must the given name on its own: family
    members share the surname, and 谢建军 is not 谢建国, nor 郑远 郑娟. Recognizers garble
    surnames more than given names, so "中会" may still be 周慧.
    """
    if not heard or not known:
        return False
    if heard == known:
        return True
    if name_similarity(heard, known) < threshold:
        return False
    if len(known) >= 2 and len(heard) >= 2:
        return given_name_similarity(heard, known) >= threshold
    return True


def best_match(heard: str, candidates: Iterable[str], threshold: float = 0.75) -> str | None:
    """The candidate name `heard` most likely is (by sound), if one is alike enough."""
    scored = [(name_similarity(heard, c), c) for c in dict.fromkeys(candidates) if c and same_person(heard, c, threshold)]
    if not scored:
        return None
    scored.sort(key=lambda x: -x[0])
    if len(scored) > 1 and scored[1][0] == scored[0][0] and scored[1][1] != scored[0][1]:
        return None  # two different names sound just as alike: no basis to choose
    return scored[0][1]


class SoundAlikes:
    """Words of two syllables or more, found again where a recognizer wrote other characters of
    the same sounds, tones aside (部队 for 不对, 过 是 for 过世)."""

    def __init__(self, words: Iterable[str], max_run: int | None = None) -> None:
        self._words = sorted({w for w in words if len(w) >= 2}, key=len)
        self._max_run = max_run  # units joined at most (default: the longest word's characters)
        self._by_sound: dict[tuple[str, ...], str] | None = None  # built on first use (pypinyin)

    def respell(self, units: Sequence[str]) -> list[str]:
        """`units` (characters, or a recognizer's words) with each run of whole units that sounds
        exactly like one of the words written as that word; at each place the longest run first."""
        from pypinyin import lazy_pinyin

        if self._by_sound is None:
            self._by_sound = {tuple(lazy_pinyin(w)): w for w in self._words}
        longest = self._max_run or max((len(w) for w in self._words), default=0)
        sounds_of = [tuple(lazy_pinyin(u)) for u in units]
        out: list[str] = []
        i = 0
        while i < len(units):
            for n in range(min(longest, len(units) - i), 0, -1):
                sound = tuple(x for s in sounds_of[i:i + n] for x in s)
                word = self._by_sound.get(sound) if len(sound) >= 2 else None
                if word is not None:
                    out.append(word)
                    i += n
                    break
            else:
                out.append(units[i])
                i += 1
        return out


__all__ = ["SoundAlikes", "best_match", "given_name_similarity", "name_similarity", "same_person", "sound_key", "sounds",
           "split_syllable", "syllable_similarity"]
