"""Choose where and in what precision the models run.

bf16 is used where the hardware computes it natively (CUDA with bf16, x86 CPUs with
AVX512-BF16 or AMX); elsewhere fp32. `LOUPE_PRECISION` or the `precision` setting overrides.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Placement:
    device: str  # "cuda", "mps" or "cpu"
    precision: str  # "fp32" or "bf16"

    @property
    def dtype(self):  # torch.dtype; torch imported lazily
        import torch

        return torch.bfloat16 if self.precision == "bf16" else torch.float32


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose(precision: str | None = None, device: str | None = None) -> Placement:
    import torch

    from .paths import load_settings

    settings = load_settings()
    device = device or os.environ.get("LOUPE_DEVICE") or settings.get("device") or "auto"
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    precision = precision or os.environ.get("LOUPE_PRECISION") or settings.get("precision") or "auto"
    if precision not in PRECISIONS:
        from .errors import UsageError

        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        elif device == "cpu":
            precision = "bf16" if cpu_has_native_bf16() else "fp32"
        else:
            precision = "fp32"
    return Placement(device=device, precision=precision)
