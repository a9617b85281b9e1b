"""Plain results that flow from the models to the UI, the CLI and the library writers."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Caption:
    text: str

    def to_text(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Label:
    name: str
    score: float
    index: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Labels:
    top: tuple[Label, ...] = field(default_factory=tuple)

    def to_text(self) -> str:
        """One line per label, most likely first: " 93.1%  tabby cat"."""
        return "\n".join(f"{label.score:6.1%}  {label.name}" for label in self.top)

    def as_confidences(self) -> dict[str, float]:
        """The mapping gr.Label takes."""
        return {label.name: label.score for label in self.top}

    def to_dict(self) -> dict[str, Any]:
        return {"labels": [label.to_dict() for label in self.top]}
