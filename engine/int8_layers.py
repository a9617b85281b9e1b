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


class RowwiseInt8Linear(nnqd.Linear):
    """`nnqd.Linear` with the activation scale taken per row of dim 0, or per group of rows
    (`per_photo` layers inside `rows_per_scale`): input [N, ..., in] float32 -> output
    [N, ..., out] float32, each row (group) computed from its own rows alone. Same parameters
    and state dict as `nnqd.Linear` (built by `quantize_dynamic`'s mapping)."""

    #: whether `rows_per_scale` applies (the decoder's layers under beam search); else per row
    per_photo = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        group = getattr(_rows, "per_scale", 1) if self.per_photo else 1
        if x.dim() < 2 or x.shape[0] <= group:
            return super().forward(x)
        return torch.cat([super(RowwiseInt8Linear, self).forward(rows) for rows in x.split(group)])

    def _get_name(self) -> str:
        return "RowwiseInt8Linear"
