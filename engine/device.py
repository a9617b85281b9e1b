"""Choose where and in what precision each model runs.

The default precision on a CPU depends on its class (what it computes natively) and is written
per model in the registry (`ModelSpec.precisions`), from the bench's measurements: int8
weights with dynamic int8 activations for BLIP on x86 CPUs (1.4x fp32 on a 2-core AVX2 Zen 3,
bench/README.md "int8"; faster than bf16 where the CPU has native bf16 too); bf16 for the
other models where the CPU has native bf16 (AVX512-BF16 or AMX); fp32 elsewhere. On CUDA bf16
where supported. `LOUPE_PRECISION=fp32|bf16|int8` or the `precision` setting overrides for
every model; int8 runs on the CPU only, and a model without an int8 path (the classifier:
dynamic int8 only covers Linear layers, ResNet is convolutions) runs fp32 when int8 is asked.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Collection, Mapping

PRECISIONS = ("auto", "fp32", "bf16", "int8")

#: the CPU features that decide the fast path, as /proc/cpuinfo names them
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")

#: CPU classes, the keys of `ModelSpec.precisions` (data: engine/models/spec.py)
from .models.spec import NATIVE_BF16, OTHER, X86_AVX2, X86_VNNI  # noqa: E402,F401


@dataclass(frozen=True)
class Placement:
    device: str  # "cuda", "mps" or "cpu"
    precision: str  # "fp32", "bf16" or "int8" (int8 weights; activations float32 between layers)

    @property
    def dtype(self):  # torch.dtype of float weights and activations; torch imported lazily
        import torch

        return torch.bfloat16 if self.precision == "bf16" else torch.float32


#: torch's CPU capability (the kernels its ATen dispatch picks, on every OS) -> the flags it implies
_CAPABILITY_FLAGS = {"AVX2": {"avx2", "fma"}, "AVX512": {"avx2", "fma", "avx512f"}}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """Which of CPU_FLAGS this CPU has. AVX2 / AVX-512 from torch's own report
    (`torch.backends.cpu.get_cpu_capability()`: the same on Linux, Windows and macOS; honours
    ATEN_CPU_CAPABILITY); the bf16 and VNNI extensions, which torch does not report, from the
    OS where it says them (Linux /proc/cpuinfo, macOS sysctl), else assumed absent (the
    class is then the safe x86-avx2)."""
    import torch

    flags = set(_CAPABILITY_FLAGS.get(torch.backends.cpu.get_cpu_capability().upper(), ()))
    extensions = _os_cpu_flags()
    if flags:  # torch's report wins for what it covers (ATEN_CPU_CAPABILITY can lower it)
        extensions &= {"avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni"}
        if "avx512f" not in flags:
            extensions -= {"avx512_bf16", "avx512_vnni"}
    return frozenset(CPU_FLAGS).intersection(flags | extensions)


def _os_cpu_flags() -> set[str]:
    """CPU_FLAGS as the OS lists them: Linux /proc/cpuinfo, macOS `sysctl machdep.cpu`; empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(CPU_FLAGS).intersection(line.split(":", 1)[1].split())
    except OSError:
        pass
    import platform

    if platform.system() == "Darwin" and platform.machine() == "x86_64":
        import subprocess

        try:
            words = subprocess.run(["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                                   capture_output=True, text=True, timeout=5).stdout.lower().split()
        except (OSError, subprocess.SubprocessError):
            return set()
        named = {"avx2": "avx2", "fma": "fma", "avx512f": "avx512f", "avx512vnni": "avx512_vnni",
                 "avx512bf16": "avx512_bf16"}
        return {named[w] for w in words if w in named}
    return set()


def cpu_has_native_bf16() -> bool:
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_class() -> str:
    """This CPU's class: NATIVE_BF16, X86_VNNI, X86_AVX2 or OTHER."""
    f = cpu_flags()
    if cpu_has_native_bf16():
        return NATIVE_BF16
    if "avx2" not in f:
        return OTHER
    return X86_VNNI if f & {"avx_vnni", "avx512_vnni"} else X86_AVX2


def cpu_description() -> str:
    """The CPU class and the flags behind it, e.g. "x86-avx2 (avx2 fma; no avx512f, no
    avx512_bf16, no amx_bf16, no amx_int8, no avx512_vnni, no avx_vnni)"."""
    f = cpu_flags()
    if not f:
        return f"{cpu_class()} (no CPU flags readable)"
    have = [n for n in CPU_FLAGS if n in f]
    lack = [f"no {n}" for n in CPU_FLAGS if n not in f]
    return f"{cpu_class()} ({' '.join(have)}; {', '.join(lack)})" if lack else f"{cpu_class()} ({' '.join(have)})"


def asked_precision(precision: str | None = None) -> str:
    """The precision asked for: the argument, else LOUPE_PRECISION, else the `precision`
    setting, else "auto". UsageError for a name not in PRECISIONS."""
    from .paths import load_settings

    precision = precision or os.environ.get("LOUPE_PRECISION") or load_settings().get("precision") or "auto"
    if precision not in PRECISIONS:
        from .errors import UsageError

        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def choose(precision: str | None = None, device: str | None = None,
           precisions: Mapping[str, str] | None = None, supported: Collection[str] | None = None) -> Placement:
    """Where and how one model runs. `precisions` is the model's registry entry (CPU class ->
    precision; absent classes run fp32); without it the CPU default is bf16 on CPUs with native
    bf16, else fp32. `supported`: the precisions the model has (int8 asked for a model without
    it means fp32). A precision asked by name wins; int8 asked by name moves an "auto" device to
    the CPU. UsageError for a bad
    name, int8 with a GPU named, or int8 where this torch has no int8 kernels."""
    import torch

    from .paths import load_settings

    device = device or os.environ.get("LOUPE_DEVICE") or load_settings().get("device") or "auto"
    device_asked = device
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    precision = asked_precision(precision)
    if precision == "int8":
        from .errors import UsageError

        if not _int8_available():
            raise UsageError("int8 needs torch's x86 (fbgemm) int8 kernels, which this torch lacks: use fp32 or bf16")
        if device != "cpu":
            if device_asked != "auto":
                raise UsageError(f"int8 runs on the CPU only: set the device to cpu (or auto), "
                                 f"or the precision to fp32 or bf16 for {device}")
            device = "cpu"
        if supported is not None and "int8" not in supported:
            precision = "fp32"  # this model has no int8 path
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        elif device == "cpu":
            cls = cpu_class()
            if precisions is None:
                precision = "bf16" if cls == NATIVE_BF16 else "fp32"  # int8 only when asked (registry)
            else:
                precision = precisions.get(cls, "fp32")
            if precision == "int8" and not _int8_available():
                precision = "fp32"
        else:
            precision = "fp32"
    return Placement(device=device, precision=precision)


def _int8_available() -> bool:
    from .quantize import int8_available

    return int8_available()


def describe(specs: Any = None) -> list[str]:
    """Two lines for `loupe models status`: the path each model runs on and what chose it, and
    the CPU class with its flags, e.g. ["Runs on: cpu; blip-base int8, resnet18 fp32 (auto)",
    "CPU class: x86-avx2 (avx2 fma; no avx512f, ...)"]. `specs` defaults to the registry's
    models. Raises UsageError for a bad LOUPE_PRECISION / LOUPE_DEVICE or setting, as `choose`."""
    from .paths import load_settings

    if specs is None:
        from .models.registry import MODELS as specs
    placements = [(spec.name, choose(precisions=spec.precisions, supported=spec.supported)) for spec in specs]
    devices = sorted({p.device for _, p in placements})
    if os.environ.get("LOUPE_PRECISION"):
        why = "LOUPE_PRECISION"
    elif load_settings().get("precision"):
        why = "the precision setting"
    else:
        why = "auto"
    if "mps" in devices:
        devices = ["mps (Apple silicon GPU)" if d == "mps" else d for d in devices]
    line = f"Runs on: {', '.join(devices)}; " + ", ".join(f"{n} {p.precision}" for n, p in placements) + f" ({why})"
    if any(p.precision == "int8" for _, p in placements):
        line += "; int8 weights are made once from the installed ones and kept beside them"
    return [line, f"CPU class: {cpu_description()}"]
