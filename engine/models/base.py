"""The protocol every Loupe model follows, as transformers' pipelines do: `load` once, then
per photo `preprocess`, per batch `collate` -> `forward` -> `postprocess`.

The steps are apart so that every entry point feeds a model the same tensor for the same file:
the engine's request path and the library scanner call the same `preprocess` on the same
decoded photo (the scanner from its loader threads), and batching (`collate`) only stacks
tensors that were made one photo at a time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Generic, Sequence, TypeVar

from PIL.Image import Image

from ..device import Placement

R = TypeVar("R")


class Model(Generic[R]):
    """Base of the model classes named in the registry (`ModelSpec.loader`)."""

    #: the short edge, in pixels, the model's own preprocessing resizes a photo to; read from
    #: the weights' processor config or transforms. Photos are decoded at it (JPEG draft).
    input_size: int

    @classmethod
    def read_ahead(cls, folder: Path) -> Any:
        """Begin, on a helper thread, what `load` will read from `folder` that needs no library
        (hashing a cache file): the engine calls this before it imports torch, and hands the
        result to `load` as `ahead`. None (the default): nothing to begin."""
        return None

    @classmethod
    def load(cls, folder: Path, placement: Placement, ahead: Any = None) -> "Model[R]":
        """Load verified weights from `folder` onto `placement`'s device and precision.
        `ahead`: what `read_ahead(folder)` began, or None.

        For precision "int8" a model with an int8 path (its registry `precisions` name int8)
        quantizes once through `engine.quantize.load_int8`, which caches the result beside the
        weights; a model without one is handed fp32 by `engine.device.choose`."""
        raise NotImplementedError

    @classmethod
    def load_preprocessing(cls, folder: Path) -> "Model[R]":
        """An instance that can only prepare photos (`input_size`, `preprocess`): its processor
        config or transforms read from verified weights in `folder`, no weights loaded. The
        engine prepares every photo through it, whoever asks (the same tensor everywhere), so
        a process that only decodes (a Ray decode task, a loader thread) never loads a model."""
        raise NotImplementedError

    def preprocess(self, image: Image, **options: Any) -> Any:
        """One RGB photo (as `engine.images.load_image` returns it) -> its model input, on the CPU.
        Safe to call from several threads at once."""
        raise NotImplementedError

    def collate(self, inputs: Sequence[Any]) -> Any:
        """Inputs of `preprocess` -> one batch on the model's device."""
        raise NotImplementedError

    def forward(self, batch: Any, **options: Any) -> Any:
        raise NotImplementedError

    def postprocess(self, outputs: Any, **options: Any) -> list[R]:
        """Raw outputs -> one result per photo, in batch order."""
        raise NotImplementedError

    def predict(self, images: Sequence[Image], **options: Any) -> list[R]:
        """The whole pipeline over decoded photos (options already checked by the registry)."""
        batch = self.collate([self.preprocess(im, **options) for im in images])
        return self.postprocess(self.forward(batch, **options), **options)
