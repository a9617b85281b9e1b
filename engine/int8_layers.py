"""The int8 Linear layer of Loupe's int8 path: one activation scale per batch row.

torch's dynamic int8 Linear (`torch.ao.nn.quantized.dynamic.Linear`, fbgemm kernels) picks one
activation scale per call, from the range of the whole input tensor. In a batch that makes a
photo's numbers depend on the other photos in it, so the same photo could get another caption
in a library scan (batches of 8) than in the Caption tab (one photo). This layer runs the same
kernel once per photo: once per row of the batch dimension in the vision encoder, and once per
photo's caption candidates in the decoder under beam search (`rows_per_scale`, set by
`models.blip_beams.one_scale_per_photo`: its rows are photo-major, `beams` each). So a photo is
quantized from its own range only and its output is bit-identical whatever else is in the
batch. The cost of the extra calls is in bench/README.md.

Imported only by `engine.quantize`, which imports torch lazily.
"""
from __future__ import annotations

import torch
import torch.ao.nn.quantized.dynamic as nnqd


class RowwiseInt8Linear(nnqd.Linear):
    """`nnqd.Linear` with the activation scale taken per group of `rows_per_scale` rows of dim
    0: input [N, ..., in] float32 -> output [N, ..., out] float32, each group computed from its
    own rows alone. Same parameters and state dict as `nnqd.Linear` (built by
    `quantize_dynamic`'s mapping)."""

    #: rows of dim 0 that share one activation scale: 1 (each row its own), or one photo's
    #: caption candidates in beam search (one kernel call reads the weights once for them all)
    rows_per_scale = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        group = self.rows_per_scale
        if x.dim() < 2 or x.shape[0] <= group:
            return super().forward(x)
        return torch.cat([super(RowwiseInt8Linear, self).forward(rows) for rows in x.split(group)])

    def _get_name(self) -> str:
        return "RowwiseInt8Linear"
