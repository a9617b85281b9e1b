"""The int8 Linear layer of Loupe's int8 path: one activation scale per batch row.

torch's dynamic int8 Linear (`torch.ao.nn.quantized.dynamic.Linear`, fbgemm kernels) picks one
activation scale per call, from the range of the whole input tensor. In a batch that makes a
photo's numbers depend on the other photos in it, so the same photo could get another caption
in a library scan (batches of 8) than in the Caption tab (one photo). This layer runs the same
kernel once per photo: once per row of the batch dimension in the vision encoder, and once per
photo's caption candidates in the decoder under beam search (`rows_per_scale` around
`generate`, from `models.blip_beams.one_scale_per_photo`: its rows are photo-major, `beams` each). So a photo is
quantized from its own range only and its output is bit-identical whatever else is in the
batch. The cost of the extra calls is in bench/README.md.

Imported only by `engine.quantize`, which imports torch lazily.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch
import torch.ao.nn.quantized.dynamic as nnqd
from torch.ao.nn.quantized.modules.linear import LinearPackedParams


_rows = threading.local()  # .per_scale: rows per activation scale in this thread's generate


@contextlib.contextmanager
def rows_per_scale(rows: int) -> Iterator[None]:
    """While inside, on this thread: layers marked `per_photo` take one activation scale per
    `rows` rows (one photo's caption candidates); a thread of its own each, so passes that run
    side by side on two threads keep theirs."""
    before = getattr(_rows, "per_scale", 1)
    _rows.per_scale = rows
    try:
        yield
    finally:
        _rows.per_scale = before


class Packed:
    """A layer's weight and bias already packed for fbgemm (`torch.ops.quantized.linear_prepack`),
    in place of its (weight, bias) in a state dict: `PackedParams` takes it as it is. Packing is
    most of the time of filling BLIP from its int8 cache; `engine.quantize` packs on another
    thread while transformers imports."""

    __slots__ = ("packed",)

    def __init__(self, packed: torch.ScriptObject) -> None:
        self.packed = packed


class PackedParams(LinearPackedParams):
    """`LinearPackedParams` (same state dict) whose loading also takes a `Packed` weight."""

    def set_weight_bias(self, weight, bias) -> None:  # noqa: D102
        if isinstance(weight, Packed):
            self._packed_params = weight.packed
            return
        super().set_weight_bias(weight, bias)

    def _get_name(self) -> str:
        return "LinearPackedParams"


class RowwiseInt8Linear(nnqd.Linear):
    """`nnqd.Linear` with the activation scale taken per row of dim 0, or per group of rows
    (`per_photo` layers inside `rows_per_scale`): input [N, ..., in] float32 -> output
    [N, ..., out] float32, each row (group) computed from its own rows alone. Same parameters
    and state dict as `nnqd.Linear` (built by `quantize_dynamic`'s mapping)."""

    #: whether `rows_per_scale` applies (the decoder's layers under beam search); else per row
    per_photo = False

    def __init__(self, in_features: int, out_features: int, bias_: bool = True, dtype: torch.dtype = torch.qint8) -> None:
        super().__init__(in_features, out_features, bias_, dtype=dtype)
        params = PackedParams(dtype)
        params._packed_params = self._packed_params._packed_params
        self._packed_params = params

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        group = getattr(_rows, "per_scale", 1) if self.per_photo else 1
        if x.dim() < 2 or x.shape[0] <= group:
            return super().forward(x)
        return torch.cat([super(RowwiseInt8Linear, self).forward(rows) for rows in x.split(group)])

    def _get_name(self) -> str:
        return "RowwiseInt8Linear"
