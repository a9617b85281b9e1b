"""The data types of Loupe's models, and nothing else: a model's spec, its options, where its
weights come from (a source, each file pinned), the CPU classes its precisions are chosen by.

A leaf: it imports nothing of Loupe's but the error its checks raise (errors.py, itself a
leaf), so the registry, the device choice, the weights and the int8 cache can all read these
types without importing each other.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import UsageError

HF_ENDPOINT = "https://huggingface.co"

#: CPU classes, the keys of `ModelSpec.precisions`
NATIVE_BF16 = "native-bf16"  # avx512_bf16 or amx_bf16 (Zen 4+, Xeon since Cooper Lake)
X86_VNNI = "x86-vnni"  # int8 dot products in hardware (avx_vnni / avx512_vnni), no native bf16
X86_AVX2 = "x86-avx2"  # AVX2 without VNNI or bf16 (Zen 2/3, Intel before 12th gen)
OTHER = "other"  # no AVX2 (old x86, ARM, no /proc/cpuinfo)


@dataclass(frozen=True)
class WeightFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    kind: str  # "hf": a Hugging Face repo at a pinned commit; "url": files under a base URL
    files: tuple[WeightFile, ...]
    repo: str = ""
    revision: str = ""
    base_url: str = ""
    endpoint: str = ""  # hf only; empty means HF_ENDPOINT or huggingface.co

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def pin(self) -> str:
        """The weights' identity: the repo revision, or the files' sha256 prefixes."""
        return self.revision or ",".join(f.sha256[:12] for f in self.files)

    def url_for(self, filename: str) -> str:
        if self.kind == "url":
            return self.base_url.rstrip("/") + "/" + filename
        endpoint = self.endpoint or os.environ.get("HF_ENDPOINT") or HF_ENDPOINT
        return f"{endpoint.rstrip('/')}/{self.repo}/resolve/{self.revision}/{filename}"

    @property
    def host(self) -> str:
        """The server the files come from ("huggingface.co"), as people know it."""
        from urllib.parse import urlsplit

        return urlsplit(self.url_for(self.files[0].name if self.files else "x")).netloc or "the server"


@dataclass(frozen=True)
class Option:
    """One option (a model's or the scan's): its default and limits, written once for every
    front end (click flags, the UI's controls, validation, settings fallbacks).

    `kind` is int, str or bool. For int options `minimum`/`maximum` bound the value; for str
    options `maximum` is the length limit and an empty string means "none" (None), unless
    `choices` lists the values allowed, each with the words a person reads for it."""

    name: str  # the keyword the model's predict() (or the scan) takes
    label: str  # what a person reads beside the control
    kind: type
    default: Any
    minimum: int = 0
    maximum: int = 0
    help: str = ""
    cli: str = ""  # the command-line flag, e.g. "--max-tokens"
    choices: tuple[tuple[str, str], ...] = ()  # (value, words) for each value allowed
    setting: str = ""  # the settings.json key read when the option is not given ("": none)
    noun: str = ""  # what a wrong value is called in a message ("writer"); default: the name

    def values(self) -> tuple[str, ...]:
        return tuple(value for value, _ in self.choices)

    def check(self, value: Any) -> Any:
        """The value, normalised; raises UsageError naming the option and its limits."""
        if self.choices:
            if value not in self.values():
                noun = self.noun or self.name.replace("_", " ")
                raise UsageError(f"Unknown {noun} {value!r}; choose {', '.join(self.values()[:-1])} "
                                 f"or {self.values()[-1]}.")
            return value
        if self.kind is bool:
            return bool(value)
        if self.kind is str:
            if value is None:
                return None
            if not isinstance(value, str):
                raise UsageError(f"{self.label}: text expected")
            value = value.strip()
            if len(value) > self.maximum:
                raise UsageError(f"{self.label} is limited to {self.maximum} characters")
            return value or None
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise TypeError
            except TypeError:
                raise UsageError(f"{self.label} must be a whole number from {self.minimum} to {self.maximum}") from None
        if not self.minimum <= value <= self.maximum:
            raise UsageError(f"{self.label} must be from {self.minimum} to {self.maximum} (got {value})")
        return value


@dataclass(frozen=True)
class ModelSpec:
    """What Loupe knows about one model before loading it."""

    name: str  # the weights' name: `loupe models download NAME`
    task: str  # "caption" or "classify": what the engine and front ends call it by
    title: str
    summary: str  # what the task does, in a sentence (the command's help)
    source: Source  # where the weights come from, every file pinned to size and sha256
    loader: str  # "module:Class" implementing engine.models.base.Model; its `input_size`
    # (the short edge its own preprocessing resizes to) comes from the weights' own processor
    # config or transforms, and is the size every entry point decodes a photo at
    batch_size: int  # photos per forward pass (measured in bench/)
    license: str
    options: tuple[Option, ...] = field(default_factory=tuple)
    # CPU class (engine.device.cpu_class()) -> the precision that runs it fastest at equal
    # fidelity there, from the bench (bench/README.md); a class not listed runs fp32.
    # LOUPE_PRECISION overrides.
    precisions: Mapping[str, str] = field(default_factory=dict)
    # the precisions this model can run in; LOUPE_PRECISION=int8 means fp32 for one without it
    supported: tuple[str, ...] = ("fp32", "bf16")
    # (precision, beam search on) -> photos per forward pass where the bench measured another
    # size faster than batch_size (bench/README.md, "Batch size per setting")
    batch_sizes: Mapping[tuple[str, bool], int] = field(default_factory=dict)

    def batch_for(self, precision: str, options: Mapping[str, Any] | None = None) -> int:
        """Photos per forward pass for `precision` ("fp32", "bf16", "int8") and these options
        (beam search when `num_beams` > 1)."""
        beams = int((options or {}).get("num_beams") or 1) > 1
        return self.batch_sizes.get((precision, beams), self.batch_size)

    def model_class(self) -> Any:
        module, _, cls = self.loader.partition(":")
        return getattr(importlib.import_module(module), cls)

    def option(self, name: str) -> Option:
        for opt in self.options:
            if opt.name == name:
                return opt
        raise KeyError(name)

    def defaults(self) -> dict[str, Any]:
        return {opt.name: opt.default for opt in self.options}

    def check_options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every option of this model, defaults filled in, each checked against its limits.

        Raises UsageError for an unknown option or a value outside its limits."""
        given = dict(options or {})
        unknown = set(given) - {opt.name for opt in self.options}
        if unknown:
            raise UsageError(f"{self.task}: unknown option(s) {', '.join(sorted(unknown))}")
        return {opt.name: opt.check(given.get(opt.name, opt.default)) for opt in self.options}
