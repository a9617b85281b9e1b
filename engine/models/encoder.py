"""SigLIP image-text encoder (google/siglip-base-patch16-224) through transformers' native
classes: photos and words as unit vectors in one space, for search by meaning.

Two towers from the one checkpoint, loaded apart so each costs memory only when used: the
vision tower (`SiglipVisionModel`) where photos are embedded (the scan), the text tower
(`SiglipTextModel`) at the first query (`embed_text`), not at start. Each tower's
`pooler_output` is SigLIP's embedding (`SiglipModel.get_image_features` /
`get_text_features` return the same); Loupe normalises it to unit length, so a dot product
is the cosine similarity that search ranks by.

Image steps follow `base.Model` (preprocess / collate / forward / postprocess); the text side has
its own three (`preprocess_text` / `forward_text` / `postprocess_text`). Queries are padded to
the model's 64 tokens, as SigLIP was trained (its text embedding is read at the last position).
"""
from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from PIL.Image import Image

from ..device import Placement
from .base import Model

#: SigLIP's text length: queries are padded (and cut) to it, as in training
TEXT_TOKENS = 64


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Each tower is loaded from the whole checkpoint, so transformers reports the other
    tower's weights as "unexpected" in a table on stderr: expected here, and noise in the CLI."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


class Encoder(Model[Any]):
    """SigLIP: photo -> float32 [3, S, S] (S from preprocessor_config.json: 224) -> vision
    tower -> unit vector (numpy float32 [D], D = 768); text -> 64 token ids -> text tower ->
    unit vector in the same space."""

    def __init__(self, folder: Path, vision: Any, image_processor: Any, placement: Placement) -> None:
        self.folder = Path(folder)
        self.vision = vision
        self.image_processor = image_processor
        self.placement = placement
        size = getattr(image_processor, "size", None) or {}
        self.input_size = int(size.get("height") or size.get("shortest_edge") or 0)
        self._text: Any = None
        self._tokenizer: Any = None
        self._text_lock = threading.Lock()  # one text tower load; the tokenizer is not thread-safe

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, folder: Path, placement: Placement, ahead: Any = None) -> "Encoder":
        """The vision tower from verified weights in `folder` (the text tower waits for the
        first query). int8: quantized once and cached in `folder/.int8/` (engine.quantize)."""
        from .. import long_lived

        with long_lived.imports():
            from transformers import SiglipVisionModel

        folder = Path(folder)
        vision = _load_tower(SiglipVisionModel, folder, placement, "int8-vision")
        return cls(folder, vision, _image_processor(folder), placement)

    @classmethod
    def load_preprocessing(cls, folder: Path) -> "Encoder":
        """The image processor alone (preprocessor_config.json): no weights loaded."""
        return cls(Path(folder), None, _image_processor(Path(folder)), Placement("cpu", "fp32"))

    @property
    def text_loaded(self) -> bool:
        """Whether the text tower is in memory (the first query loads it: a front end says so)."""
        return self._text is not None

    def load_text(self) -> None:
        """Load the text tower and tokenizer now (else the first `embed_text` does)."""
        with self._text_lock:
            if self._text is None:
                from transformers import SiglipTextModel, SiglipTokenizer

                with _quiet_transformers():
                    self._tokenizer = SiglipTokenizer.from_pretrained(self.folder, local_files_only=True)
                self._text = _load_tower(SiglipTextModel, self.folder, self.placement, "int8-text")

    # ------------------------------------------------------------------ photos
    def preprocess(self, image: Image, **_: Any) -> dict:
        """One RGB photo -> {"pixel_values": float32 [1, 3, S, S]} on the CPU (SigLIP's own
        processor: resized to S x S, bicubic, scaled to [-1, 1])."""
        return {"pixel_values": self.image_processor(images=[image], return_tensors="pt")["pixel_values"]}

    def collate(self, inputs: Sequence[dict]) -> dict:
        import torch

        pixels = torch.cat([item["pixel_values"] for item in inputs]).to(self.placement.device)
        return {"pixel_values": pixels.to(self.placement.dtype)}

    def forward(self, batch: dict, **_: Any) -> Any:
        """The vision tower's pooled embedding: float [N, D]."""
        import torch

        with torch.inference_mode():
            return self.vision(pixel_values=batch["pixel_values"]).pooler_output

    def postprocess(self, outputs: Any, **_: Any) -> list:
        """float [N, D] -> one unit-length numpy float32 [D] per photo, in batch order."""
        return list(_unit_rows(outputs))

    # ------------------------------------------------------------------ words
    def preprocess_text(self, texts: Sequence[str]) -> dict:
        """Queries -> {"input_ids": int64 [N, 64]} (SiglipTokenizer: lower case, punctuation
        dropped, padded to 64 tokens as in training, longer text cut)."""
        self.load_text()
        # a query may hold characters no tokenizer takes (lone surrogates: bytes of a command
        # line that are not UTF-8, or a page's broken text): they become U+FFFD, never a crash
        texts = [t.encode("utf-8", "surrogateescape" if _escaped_only(t) else "replace")
                 .decode("utf-8", "replace") for t in texts]
        with self._text_lock:
            return dict(self._tokenizer(list(texts), padding="max_length", max_length=TEXT_TOKENS,
                                        truncation=True, return_tensors="pt"))

    def forward_text(self, batch: dict) -> Any:
        """The text tower's pooled embedding: float [N, D]."""
        import torch

        self.load_text()
        with torch.inference_mode():
            return self._text(input_ids=batch["input_ids"].to(self.placement.device)).pooler_output

    def postprocess_text(self, outputs: Any) -> list:
        return list(_unit_rows(outputs))

    def embed_text(self, texts: Sequence[str]) -> Any:
        """Queries -> numpy float32 [N, D], unit rows (loads the text tower on first use)."""
        import numpy as np

        rows = self.postprocess_text(self.forward_text(self.preprocess_text(texts)))
        return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def _image_processor(folder: Path) -> Any:
    from transformers import SiglipImageProcessor

    with _quiet_transformers():
        return SiglipImageProcessor.from_pretrained(folder, local_files_only=True)


def _load_tower(cls: Any, folder: Path, placement: Placement, cache_name: str) -> Any:
    """One tower of the checkpoint in `folder`, on `placement` (local files only: no network)."""
    def load_float() -> Any:
        with _quiet_transformers():
            return cls.from_pretrained(folder, local_files_only=True, dtype=placement.dtype)

    if placement.precision == "int8":
        from ..quantize import empty_transformers_model, load_int8

        with _quiet_transformers():
            model = load_int8(folder, load_float, lambda: empty_transformers_model(cls, folder), name=cache_name)
    else:
        model = load_float()
    return model.eval().to(placement.device)


def _unit_rows(outputs: Any) -> Iterator[Any]:
    import torch

    rows = torch.nn.functional.normalize(outputs.float(), dim=-1).cpu().numpy()
    yield from rows


def _escaped_only(text: str) -> bool:
    """Whether every lone surrogate in `text` is an escaped byte (U+DC80-U+DCFF, as Python decodes
    a command line's non-UTF-8 bytes), which surrogateescape turns back into that byte."""
    return all("\udc80" <= ch <= "\udcff" for ch in text if "\ud800" <= ch <= "\udfff")
