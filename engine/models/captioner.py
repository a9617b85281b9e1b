"""BLIP captioning (Salesforce/blip-image-captioning-base) through transformers."""
from __future__ import annotations

import functools
import re
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL.Image import Image

from ..batching import Stop
from ..device import Placement
from ..errors import Cancelled
from ..results import Caption
from .base import Model


class Captioner(Model[Caption]):
    """BLIP: photo -> 384x384 pixel_values (+ the prefix's tokens) -> generate -> Caption."""

    def __init__(self, model: Any, processor: Any, placement: Placement) -> None:
        self.model = model
        self.processor = processor
        self.placement = placement
        size = getattr(processor.image_processor, "size", None) or {}
        #: the square the processor resizes to (384 in the pinned preprocessor_config.json)
        self.input_size = int(size.get("height") or size.get("shortest_edge") or 0)
        # The fast tokenizer is not safe to call from several loader threads at once.
        self._tokenize_lock = threading.Lock()

    @classmethod
    def read_ahead(cls, folder: Path) -> Any:
        """The int8 cache's data file hashed while torch imports (when there is one; unused when
        the placement turns out not to be int8)."""
        from ..quantize import cache_paths, hash_cache_soon

        try:
            found = cache_paths(folder)[0].is_file()
        except OSError:  # a .int8 folder this user may not enter: the load says what it means
            return None
        return hash_cache_soon(folder) if found else None

    @classmethod
    def load(cls, folder: Path, placement: Placement, ahead: Any = None) -> "Captioner":
        cache_read = None
        if placement.precision == "int8":
            from ..quantize import read_cache_soon

            # checking, reading and packing the int8 cache run on the other core while
            # transformers imports
            cache_read = read_cache_soon(folder, hashed=ahead)
        from .. import long_lived

        with long_lived.imports():
            from transformers import BlipForConditionalGeneration, BlipProcessor
            from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its "Loading weights" bar would clutter the CLI's stderr

        # local_files_only: once installed, loading never touches the network.
        processor = BlipProcessor.from_pretrained(folder, local_files_only=True)
        def load_float() -> Any:
            return BlipForConditionalGeneration.from_pretrained(folder, local_files_only=True, dtype=placement.dtype)

        if placement.precision == "int8":
            from ..quantize import empty_transformers_model, load_int8

            # vision encoder and text decoder (LM head included): every Linear layer
            model = load_int8(folder, load_float, lambda: empty_transformers_model(BlipForConditionalGeneration, folder),
                              read=cache_read)
        else:
            model = load_float()
        model.eval().to(placement.device)
        _fuse_vision_attention(model)
        from .blip_beams import one_scale_per_photo, share_image_across_beams

        share_image_across_beams(model)
        one_scale_per_photo(model)  # int8 only: a photo's beams in one kernel call per layer
        return cls(model, processor, placement)

    @classmethod
    def load_preprocessing(cls, folder: Path) -> "Captioner":
        """BLIP's processor alone (image processor config and tokenizer, ~MBs): no model."""
        from transformers import BlipProcessor

        return cls(None, BlipProcessor.from_pretrained(folder, local_files_only=True), Placement("cpu", "fp32"))

    def preprocess(self, image: Image, prefix: str | None = None, **_: Any) -> dict:
        """-> {"pixel_values": float32 [1, 3, 384, 384], and with a prefix "input_ids",
        "attention_mask": int64 [1, T]} on the CPU."""
        out = {"pixel_values": self.processor(images=[image], return_tensors="pt")["pixel_values"]}
        if prefix:
            with self._tokenize_lock:
                out.update(self.processor(text=[prefix], return_tensors="pt"))
        return out

    def collate(self, inputs: Sequence[dict]) -> dict:
        import torch

        batch = {}
        for key in inputs[0]:
            value = torch.cat([item[key] for item in inputs]).to(self.placement.device)
            batch[key] = value.to(self.placement.dtype) if key == "pixel_values" else value
        return batch

    def forward(self, batch: dict, *, max_new_tokens: int, num_beams: int,
                cancel: Stop | None = None, on_step: Callable[[float], None] | None = None,
                **_: Any) -> Any:
        """Token ids [N, <= T + max_new_tokens] from beam search (greedy when num_beams is 1).
        Raises Cancelled within one generation step of `cancel` being set. `on_step(fraction)`
        is called after each generation step with the share of `max_new_tokens` made (0-1],
        so a long batch can show progress."""
        import torch

        extra = {}
        if cancel is not None or on_step is not None:
            from transformers import StoppingCriteria, StoppingCriteriaList

            start = batch["input_ids"].shape[1] if "input_ids" in batch else 1

            class Step(StoppingCriteria):
                def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                    if on_step is not None:
                        on_step(min(1.0, (input_ids.shape[1] - start + 1) / max_new_tokens))
                    stop = cancel is not None and cancel.is_set()
                    return torch.full((input_ids.shape[0],), stop, dtype=torch.bool)

            extra["stopping_criteria"] = StoppingCriteriaList([Step()])
        if num_beams > 1:
            from .blip_beams import SharedImageCache

            # beams of one photo share its cross-attention keys/values (blip_beams.py)
            extra["past_key_values"] = SharedImageCache(num_beams)
        with torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                      suppress_tokens=self._never_generated, **extra)
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")  # the captions were cut short: not results
        return out

    def postprocess(self, outputs: Any, **_: Any) -> list[Caption]:
        """Token ids (batch x length, a tensor or lists) -> one Caption per row. Ids of special
        and unused tokens are dropped before decoding, so word pieces around them join up
        ("dog [unused16] ##s" -> "dogs") and no bracket token can reach the text."""
        rows = outputs.tolist() if hasattr(outputs, "tolist") else [list(r) for r in outputs]
        texts = self.processor.batch_decode([self._caption_ids(r) for r in rows], skip_special_tokens=True)
        return [Caption(_tidy(t)) for t in texts]

    @functools.cached_property
    def _debris_ids(self) -> tuple[frozenset[int], frozenset[int]]:
        """(ids never shown in a caption, ids of word pieces "##x"), from the tokenizer's vocab."""
        tokenizer = self.processor.tokenizer
        vocab = tokenizer.get_vocab()
        drop = {i for token, i in vocab.items() if _BRACKET_TOKEN.fullmatch(token)}
        drop.update(tokenizer.all_special_ids)
        return frozenset(drop), frozenset(i for token, i in vocab.items() if token.startswith("##"))

    @functools.cached_property
    def _never_generated(self) -> list[int]:
        """Ids the decoder may not pick ([UNK], [MASK], [unusedN], ...): with them out of the
        running it picks the best real word instead, so a caption is never only debris. The
        ids that end or pad a caption stay allowed."""
        tokenizer, config = self.processor.tokenizer, self.model.generation_config
        enders = {tokenizer.sep_token_id, tokenizer.pad_token_id, config.pad_token_id}
        eos = config.eos_token_id
        enders.update(eos if isinstance(eos, (list, tuple)) else [eos])
        return sorted(self._debris_ids[0] - enders)

    def _caption_ids(self, ids: list[int]) -> list[int]:
        drop, pieces = self._debris_ids
        kept = [i for i in ids if i not in drop]
        while kept and kept[0] in pieces:  # the rest of a word whose start is not there
            del kept[0]
        return kept


def _fuse_vision_attention(model: Any) -> None:
    """Run BLIP's vision attention through torch's fused scaled_dot_product_attention.

    transformers 5.23 writes it out (matmul, scale, softmax, matmul over 577x577 scores per
    head) and offers no SDPA for BLIP. The fused kernel computes the same attention without
    materialising the scores. Measured on a 2-core AVX-512 CPU in bf16 (best of 3, idle
    machine): one layer's attention at batch 8 105 -> 72 ms; the vision encoder 0.40 -> 0.37
    s/photo at batch 8 and 0.49 -> 0.47 s at batch 1. Outputs are unchanged in fp32 (the bench
    checks: cosine 1.0) and within bf16 rounding in bf16. Only modules of exactly the expected
    class and layout are changed; attention maps are no longer returned (Loupe never asks)."""
    import types

    try:
        from transformers.models.blip.modeling_blip import BlipAttention
    except ImportError:  # pragma: no cover - another transformers layout: keep its own code
        return

    def forward(self: Any, hidden_states: Any, **_: Any) -> tuple[Any, None]:
        import torch.nn.functional as F

        bsz, tokens, dim = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(bsz, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        context = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.projection(context.transpose(1, 2).reshape(bsz, tokens, dim)), None

    for module in model.modules():
        if type(module) is BlipAttention and hasattr(module, "qkv") and module.num_heads * module.head_dim == module.embed_dim:
            module.forward = types.MethodType(forward, module)


# BERT vocabulary entries that are no words: [PAD] [UNK] [CLS] [SEP] [MASK], BLIP's [DEC]/[ENC]
# and the 994 "[unusedN]" slots, which are plain vocab entries (not special) and so survive
# skip_special_tokens; a weak or fine-tuned model can emit them.
_BRACKET_TOKEN = re.compile(r"\[(?:unused\d+|[A-Z]+)\]")


def _tidy(text: str) -> str:
    """Decoded caption -> clean text: no bracket tokens, word pieces ("##s") joined to the word
    before them or dropped when nothing is before them, single spaces. A last guard: decoding
    through `postprocess` already leaves none of them."""
    text = _BRACKET_TOKEN.sub(" ", text)
    text = re.sub(r"(?<=\w)\s*##(?=\w)", "", text)  # "dog ##s" -> "dogs"
    text = re.sub(r"(?:^|(?<=\s))##+\w*", " ", text)  # a piece with no word before it
    # BLIP's word pieces leave " ' s" style gaps; collapse runs of spaces.
    return re.sub(r"\s+", " ", text).strip()
