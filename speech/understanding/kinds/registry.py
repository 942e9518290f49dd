"""Slot kinds by name: the registry a flow's `kind:` is looked up in.

Adding a kind: a class with the `Kind` methods (base.py) in the module of its family, and
one line in `KINDS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from .answers import Choice, FreeText, YesNo
from .base import Dictionaries, Kind, KindError
from .claim import CLAIM_KINDS, ClaimKind
from .personal import Date, Digits, IdNumber, Phone, PersonName
from .quantities import Money, Number, Rating

Factory = Callable[[Mapping[str, Any], Dictionaries], Kind]

KINDS: dict[str, Factory] = {
    "person_name": PersonName,
    "phone": Phone,
    "id_number": IdNumber,
    "digits": Digits,
    "date": Date,
    "yes_no": YesNo,
    "choice": Choice,
    "rating": Rating,
    "number": Number,
    "money": Money,
    "free_text": FreeText,
    **{name: (lambda name: lambda options, d: ClaimKind(name, options, d))(name) for name in CLAIM_KINDS},
}


class KindRegistry:
    """Builds a slot's kind from its name and options, over one dictionaries folder."""

    def __init__(self, dictionaries: Path, kinds: Mapping[str, Factory] = KINDS) -> None:
        self.dictionaries = Dictionaries(dictionaries)
        self.kinds = dict(kinds)

    @classmethod
    def from_config(cls, config_dir: Path) -> "KindRegistry":
        """The config folder (holding `dictionaries/`) or the dictionaries folder itself."""
        config_dir = Path(config_dir)
        folder = config_dir / "dictionaries" if (config_dir / "dictionaries").is_dir() else config_dir
        return cls(folder)

    def make(self, name: str, options: Mapping[str, Any] | None = None) -> Kind:
        factory = self.kinds.get(name)
        if factory is None:
            raise KindError(f"kind: unknown kind {name!r} (known: {', '.join(sorted(self.kinds))})")
        return factory(options or {}, self.dictionaries)
