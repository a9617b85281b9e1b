"""The protocol every Loupe model follows, as transformers' pipelines do:
`load` once, then `predict` = `postprocess(forward(preprocess(images)))`, each step apart so
the batch scanner and the benchmark can time and overlap them separately."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Generic, Protocol, Sequence, TypeVar

from PIL.Image import Image

from ..device import Placement

R = TypeVar("R", covariant=True)


class Model(Protocol, Generic[R]):
    #: the short edge the model looks at; the loader may decode JPEGs at a reduced scale to it
    input_size: int

    @classmethod
    def load(cls, folder: Path, placement: Placement) -> "Model[R]": ...

    def preprocess(self, images: Sequence[Image], **options: Any) -> Any: ...

    def forward(self, inputs: Any, **options: Any) -> Any: ...

    def postprocess(self, outputs: Any, **options: Any) -> list[R]: ...

    def predict(self, images: Sequence[Image], **options: Any) -> list[R]: ...
