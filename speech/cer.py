"""Character error rate, the measure for Chinese recognition."""

from __future__ import annotations

import unicodedata


def normalize_for_cer(text: str) -> str:
    """Drop spaces and punctuation; Chinese is scored character by character."""
    return "".join(
        ch for ch in unicodedata.normalize("NFKC", text)
        if not ch.isspace() and not unicodedata.category(ch).startswith("P")
    )


def edit_distance(ref: str, hyp: str) -> int:
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def character_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference length) after normalization, for pooling over a corpus."""
    ref, hyp = normalize_for_cer(reference), normalize_for_cer(hypothesis)
    return edit_distance(ref, hyp), len(ref)


def character_error_rate(reference: str, hypothesis: str) -> float:
    edits, length = character_errors(reference, hypothesis)
    return edits / length if length else float(bool(normalize_for_cer(hypothesis)))
