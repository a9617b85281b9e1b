"""Choose where and in what precision the models run.

bf16 is used where the hardware computes it natively (CUDA with bf16, x86 CPUs with
AVX512-BF16 or AMX); on other CPUs int8 (int8 weights, dynamic int8 activations: the fastest
at equal fidelity there, measured in bench/README.md); elsewhere fp32. `LOUPE_PRECISION` or the
`precision` setting overrides. int8 runs on the CPU only.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

PRECISIONS = ("auto", "fp32", "bf16", "int8")


@dataclass(frozen=True)
class Placement:
    device: str  # "cuda", "mps" or "cpu"
    precision: str  # "fp32", "bf16" or "int8" (int8 weights; activations float32 between layers)

    @property
    def dtype(self):  # torch.dtype of weights that stay float and of activations; torch imported lazily
        import torch

        return torch.bfloat16 if self.precision == "bf16" else torch.float32


#: the CPU features that decide the fast path, as /proc/cpuinfo names them
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """Which of CPU_FLAGS this CPU has (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(CPU_FLAGS).intersection(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_class() -> str:
    """The CPU class in the bench's terms, e.g. "AVX2+FMA, no AVX-512, no VNNI, no native bf16"."""
    f = cpu_flags()
    if not f:
        return "unknown (no /proc/cpuinfo flags)"
    parts = ["AVX2+FMA" if {"avx2", "fma"} <= f else ("AVX2" if "avx2" in f else "no AVX2")]
    parts.append("AVX-512" if "avx512f" in f else "no AVX-512")
    vnni = [n for n in ("avx512_vnni", "avx_vnni") if n in f]
    parts.append(("VNNI (" + ", ".join(vnni) + ")") if vnni else "no VNNI")
    bf16 = [n for n in ("avx512_bf16", "amx_bf16") if n in f]
    parts.append(("native bf16 (" + ", ".join(bf16) + ")") if bf16 else "no native bf16")
    if "amx_int8" in f:
        parts.append("AMX int8")
    return ", ".join(parts)


def choose(precision: str | None = None, device: str | None = None) -> Placement:
    import torch

    from .paths import load_settings

    settings = load_settings()
    device = device or os.environ.get("LOUPE_DEVICE") or settings.get("device") or "auto"
    device_asked = device
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
    if precision == "int8" and not _int8_available():
        from .errors import UsageError

        raise UsageError("int8 needs torch's x86 (fbgemm) quantized kernels, which this torch lacks: use fp32 or bf16")
    if precision == "int8" and device != "cpu":
        if device_asked not in (None, "auto"):
            from .errors import UsageError

            raise UsageError(f"int8 runs on the CPU only: set the device to cpu (or auto), or the precision to fp32 or bf16 for {device}")
        device = "cpu"  # asked for int8 by name: the CPU path, even where a GPU is present
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        elif device == "cpu":
            # int8 only where it was measured: x86 CPUs with fbgemm (bench/README.md, "int8")
            precision = "bf16" if cpu_has_native_bf16() else ("int8" if _int8_available() else "fp32")
        else:
            precision = "fp32"
    return Placement(device=device, precision=precision)


def _int8_available() -> bool:
    from .quantize import int8_available

    return int8_available()


def describe() -> str:
    """One line for `loupe models status`: the path the models run on, and what chose it.
    Raises UsageError for a bad LOUPE_PRECISION / LOUPE_DEVICE or setting, as `choose` does."""
    from .paths import load_settings

    placement = choose()
    if os.environ.get("LOUPE_PRECISION"):
        why = "LOUPE_PRECISION"
    elif load_settings().get("precision"):
        why = "the precision setting"
    else:
        why = "auto"
    line = f"Runs on: {placement.device}/{placement.precision} ({why})"
    if placement.device == "cpu":
        line += f"; CPU: {cpu_class()}"
    if placement.precision == "int8":
        line += "; int8 weights are made once from the installed ones and kept beside them"
    return line
