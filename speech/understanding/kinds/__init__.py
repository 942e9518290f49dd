"""Slot kinds: what a slot holds and how its answer is read, checked, read back and heard.

One module per family (answers, quantities, personal, claim); `registry.KINDS` maps each
kind name to it. A flow slot names its kind (`kind: rating`) and gives its `options`.
"""

from .base import Heard, Kind, KindError, Reading
from .registry import KINDS, KindRegistry

__all__ = ["Heard", "KINDS", "Kind", "KindError", "KindRegistry", "Reading"]
