"""Beam search for BLIP's text decoder with the photo's cross-attention kept once per photo.

transformers' beam search repeats each photo's 577 image features once per beam; the decoder
then projects every copy to cross-attention keys and values (12 layers), keeps them in the
cache once per beam and reorders that cache at every step (`index_select` over beams x 577 x
768 per layer). The copies are the same numbers, and a beam never moves to another photo, so
none of that work changes a token. `SharedImageCache` is transformers' own
`EncoderDecoderCache` whose cross-attention half holds one entry per photo and is never
reordered; `share_image_across_beams` makes the decoder's cross-attention read it: keys and
values projected from one copy of each photo's features, read in place by each of its beams. Other caches (plain
`generate`, greedy search) take transformers' own code, unchanged.

The tokens equal those of transformers' beam search (tests/test_models.py on the tiny model;
`bench --only accuracy` on the full-size one); the cost is in bench/README.md.
"""
from __future__ import annotations

import math
import types
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache


class SharedImageCache(EncoderDecoderCache):
    """Self-attention cache per caption candidate (rows = photos x beams, reordered as beams
    move), cross-attention cache per photo (rows = photos; keys/values [photos, heads, 577, 64],
    written at the first step and never reordered: a beam stays with its photo)."""

    def __init__(self, beams: int) -> None:
        super().__init__(DynamicCache(), DynamicCache())
        #: candidates per photo: generate's rows are photos x beams, photo-major
        self.beams = beams

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:  # noqa: D102
        self.self_attention_cache.reorder_cache(beam_idx)


def share_image_across_beams(model: Any) -> int:
    """Make the cross-attention layers of BLIP's text decoder in `model` read a
    `SharedImageCache` when generate is given one. Returns how many layers were changed (0 for
    another layout, which then keeps transformers' code)."""
    try:
        from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention
    except ImportError:  # pragma: no cover - another transformers layout
        return 0
    decoder = getattr(model, "text_decoder", None)
    changed = 0
    for module in decoder.modules() if decoder is not None else ():
        cross = getattr(getattr(module, "crossattention", None), "self", None)
        if type(cross) is BlipTextSelfAttention and cross.layer_idx is not None:
            cross.forward = types.MethodType(_cross_attention, cross)
            changed += 1
    return changed


def one_scale_per_photo(model: Any) -> int:
    """Make the int8 layers of BLIP's text decoder in `model` (`RowwiseInt8Linear`) take one
    activation scale per photo's caption candidates during `model.generate` (`num_beams` rows
    each, photo-major), instead of one per candidate: one kernel call then reads a layer's
    weights once for a photo's beams, not once per beam, and the numbers of a photo still
    depend on that photo alone. The cross-attention's keys and values (projected from one row
    per photo under `SharedImageCache`) keep one scale per row. Returns how many layers take it
    (0 without int8 layers: generate is left as it was)."""
    decoder = getattr(model, "text_decoder", None)
    layers = [module for name, module in (decoder.named_modules() if decoder is not None else ())
              if hasattr(module, "per_photo")
              and not name.endswith(("crossattention.self.key", "crossattention.self.value"))]
    if not layers:
        return 0
    from ..int8_layers import rows_per_scale

    for layer in layers:
        layer.per_photo = True
    generate = model.generate

    def generate_per_photo(*args: Any, **kwargs: Any) -> Any:
        with rows_per_scale(kwargs.get("num_beams") or model.generation_config.num_beams or 1):
            return generate(*args, **kwargs)

    model.generate = generate_per_photo
    return len(layers)


def _cross_attention(self: Any, hidden_states: torch.Tensor, attention_mask: Any = None,
                     encoder_hidden_states: torch.Tensor | None = None,
                     encoder_attention_mask: torch.Tensor | None = None,
                     past_key_values: Any = None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """BlipTextSelfAttention.forward for cross-attention over a SharedImageCache.
    hidden_states [photos x beams, T, 768] -> ([photos x beams, T, 768], None)."""
    if encoder_hidden_states is None or not isinstance(past_key_values, SharedImageCache):
        return type(self).forward(self, hidden_states, attention_mask=attention_mask,
                                  encoder_hidden_states=encoder_hidden_states,
                                  encoder_attention_mask=encoder_attention_mask,
                                  past_key_values=past_key_values, **kwargs)
    beams = past_key_values.beams
    rows, tokens, _ = hidden_states.shape
    photos = rows // beams
    heads, size = self.num_attention_heads, self.attention_head_size
    cache = past_key_values.cross_attention_cache
    if past_key_values.is_updated.get(self.layer_idx):
        keys, values = cache.layers[self.layer_idx].keys, cache.layers[self.layer_idx].values
    else:
        image = encoder_hidden_states[::beams]  # generate repeated each photo's features per beam
        shape = (photos, image.shape[1], heads, size)
        keys = self.key(image).view(shape).transpose(1, 2)
        values = self.value(image).view(shape).transpose(1, 2)
        keys, values = cache.update(keys, values, self.layer_idx)
        past_key_values.is_updated[self.layer_idx] = True
    # Each beam asks its photo's keys and values in the product transformers makes for a row
    # ([T, 64] x [64, 577] per head), one beam at a time: folding the beams into one product
    # ([beams x T, 64]) reads the keys once but changed float rounding on AVX2 BLAS kernels, and
    # int8 then turned that into other tokens. The keys are read in place, never copied.
    query = self.query(hidden_states).view(rows, tokens, heads, size).transpose(1, 2)
    query = query.unflatten(0, (photos, beams))  # [photos, beams, heads, T, 64]
    mask = encoder_attention_mask[::beams] if encoder_attention_mask is not None else None
    contexts = []
    for beam in range(beams):
        scores = torch.matmul(query[:, beam], keys.transpose(-1, -2)) / math.sqrt(size)
        # transformers 5.23 passes the image mask as `attention_mask` and its cross-attention
        # then reads `encoder_attention_mask` (None); BLIP's image mask is all ones anyway.
        if mask is not None:
            scores = scores + mask.to(scores.device)
        contexts.append(torch.matmul(torch.softmax(scores, dim=-1), values))  # [photos, heads, T, 64]
    context = torch.stack(contexts, dim=1).flatten(0, 1)  # [photos x beams, heads, T, 64]
    context = context.permute(0, 2, 1, 3).contiguous()
    return context.view(rows, tokens, heads * size), None
