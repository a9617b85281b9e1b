"""Int8 weights with dynamic int8 activations (BLIP's path on x86 CPUs), and the cache of
the quantized model beside its weights.

`quantize_int8(module)` swaps a module's `nn.Linear` layers for int8 ones in place: weights
int8 per output channel, activations quantized to int8 from their own range (no calibration
data needed) with one scale per batch row (`engine.int8_layers.RowwiseInt8Linear`), outputs in
float32. Per row, not per call: a photo's numbers, and so its caption, do not depend on the
other photos in its batch (a scan's batches of 8 and the Caption tab's single photo agree).

`load_int8(folder, load_float, build_empty)` quantizes once and keeps the result in
`folder/.int8/` (hidden: the weights check counts any other visible file as damage): later
loads read the small int8 state into an empty skeleton instead of loading the float weights
and quantizing them again. The cache is written atomically, carries
a manifest (source weights' stamp and a sampled fingerprint of their bytes, Loupe, torch,
format, sha256 of the data file) and is verified on every load; any mismatch rebuilds it,
never uses it.

Backend: torch's own dynamic quantization (`torch.ao.quantization.quantize_dynamic`, fbgemm
kernels). It is marked deprecated in favour of torchao, but torchao 0.18's
`Int8DynamicActivationInt8WeightConfig` runs eagerly through `torch._int_mm`, which on an AVX2
CPU without VNNI measured ~20x slower than fp32 (bench/README.md, "int8"); it is fast only
under torch.compile, which would need a C++ compiler on every user's machine. So the old API
stays, behind this one module.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("loupe.quantize")

#: bump when what `quantize_int8` produces changes: every cache is then rebuilt
FORMAT = 2
CACHE_DIR = ".int8"
BACKEND = "torch.ao dynamic qint8, per-channel weights, per-row activations (fbgemm)"


_DEPRECATIONS = (r".*torch\.ao\.quantization is deprecated",
                 r".*quantized tensor creation functions.*deprecated",
                 r".*TypedStorage is deprecated")


def _quiet_deprecations() -> None:
    """torch 2.14 warns on every use of torch.ao quantization and of quantized tensors
    (quantize_dynamic, quantize_per_channel, loading qint8 storages). Loupe chose this API on
    measurement (see the module docstring); a user must not see the warnings on each start.
    Filters added to the process's list where missing, not `warnings.catch_warnings` around each
    use: that swaps the process's list and puts it back, so with loads and cache reads on two
    threads one could put back a list without the other's filters (the warnings then reached
    the CLI's stderr). Called before each use: a `catch_warnings` elsewhere that ends may have
    put back a list from before they were added."""
    present = {f[1].pattern for f in warnings.filters if f[0] == "ignore" and f[1] is not None}
    for message in _DEPRECATIONS:
        if message not in present:
            warnings.filterwarnings("ignore", message=message)


# Also at import (`engine` imports this module first, on the main thread, before any other
# thread exists): added later, while another thread is inside `catch_warnings` (a scan's photo
# loaders are, around each decode, while the captioner loads), they would go into that
# thread's copy of the list and be dropped when it puts the original back, mid `torch.load`.
# In the list from the start, every copy has them.
_quiet_deprecations()


def int8_available() -> bool:
    """Whether this torch can run the int8 path here: x86 dynamic quantization kernels
    (fbgemm) present, and the API not yet removed from torch (it is marked deprecated)."""
    import torch

    quant = getattr(getattr(torch, "ao", None), "quantization", None)
    engines = set(getattr(torch.backends, "quantized", None) and torch.backends.quantized.supported_engines or ())
    return hasattr(quant, "quantize_dynamic") and bool(engines & {"fbgemm", "x86"})


def quantize_int8(module: Any) -> Any:
    """Quantize `module` in place and return it: every `nn.Linear` becomes a
    `RowwiseInt8Linear` (weights int8 per output channel; activations quantized per batch row,
    so each row's output depends on that row alone; inputs and outputs float32). CPU only.
    Other layers (convolutions, embeddings, norms, attention's matmuls) stay float32. A float32
    model must come in."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig

    from .int8_layers import RowwiseInt8Linear

    _quiet_deprecations()
    torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                                           mapping={torch.nn.Linear: RowwiseInt8Linear}, inplace=True)
    return module


def _empty_int8_like(module: Any) -> None:
    """Swap the float layers of an empty skeleton (any device, meta included) for int8 layers,
    without reading the float weights: load_state_dict then packs the cached ones. The new
    layers are built 1x1 (packing full-size placeholders would cost ~0.2 GB and a second
    packing for BLIP) and given the real shapes' attributes."""
    import torch

    from .int8_layers import RowwiseInt8Linear

    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:  # exactly what quantize_dynamic's mapping swaps
                new = RowwiseInt8Linear(1, 1, bias_=child.bias is not None, dtype=torch.qint8)
                new.in_features, new.out_features = child.in_features, child.out_features
                setattr(parent, name, new)


# --------------------------------------------------------------------------- the cache


def weights_stamp(folder: Path) -> str:
    """A sha256 naming the float weights in `folder`: from the install manifest's pinned file
    hashes when there is one (verified at install; cheap), else from hashing the files."""
    import hashlib

    from .files import sha256_file
    from .weights import MANIFEST

    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


#: sampled fingerprint of the float weights: this many chunks of this many bytes per file
SAMPLE_CHUNKS, SAMPLE_BYTES = 32, 64 * 1024


def weights_sample(folder: Path) -> str:
    """A sha256 of each weights file's size and 32 chunks of 64 KiB spread evenly over it (2 MB
    read per file, milliseconds). The install stamp trusts a kept size and mtime; this catches
    bytes changed behind them in any sampled region (a zeroed or overwritten half, a file
    replaced by one of the same size), so a cache made from other bytes is rebuilt from the
    float weights, whose load then fails and names the damaged file as the float path does."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}:".encode())
        step = max(SAMPLE_BYTES, size // SAMPLE_CHUNKS)
        with path.open("rb") as fh:
            for offset in range(0, size, step):
                fh.seek(offset)
                digest.update(fh.read(SAMPLE_BYTES))
    return digest.hexdigest()


def _expected(folder: Path) -> dict:
    import torch

    try:
        from importlib.metadata import version

        loupe = version("loupe")
    except Exception:  # not installed (a source checkout): the format number still guards
        loupe = "dev"
    return {"format": FORMAT, "backend": BACKEND, "weights": weights_stamp(folder),
            "sample": weights_sample(folder), "loupe": loupe, "torch": torch.__version__}


def cache_paths(folder: Path, name: str = "int8") -> tuple[Path, Path]:
    """(data file, manifest) of the int8 cache of the weights in `folder`."""
    return folder / CACHE_DIR / f"{name}.pt", folder / CACHE_DIR / f"{name}.json"


def cache_state(folder: Path, *, name: str = "int8", hashed: Callable[[], "Hashed | None"] | None = None) -> str:
    """"valid", "missing" or why the cache would be rebuilt (stale or damaged); hashes the data,
    or takes `hashed` (`hash_cache_soon`'s) when the file is still the one it hashed."""
    from .files import sha256_file

    data, manifest_path = cache_paths(folder, name)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError):
        return "manifest unreadable"
    expected = _expected(folder)
    changed = [k for k, v in expected.items() if manifest.get(k) != v]
    if changed:
        return "stale: " + ", ".join(changed) + " changed"
    try:
        if data.stat().st_size != manifest.get("size"):
            return "damaged: sha256 does not match"
        early = hashed() if hashed is not None else None
        sha = early.sha256 if early is not None and early.identity == _identity(data) else sha256_file(data)
        if sha != manifest.get("sha256"):
            return "damaged: sha256 does not match"
    except OSError:
        return "data file missing"
    return "valid"


class Hashed:
    """What `hash_cache_soon` found: the data file's sha256 and its identity (size, mtime_ns,
    inode, device) while it was read."""

    def __init__(self, identity: tuple, sha256: str) -> None:
        self.identity, self.sha256 = identity, sha256


def _identity(path: Path) -> tuple:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev


def hash_cache_soon(folder: Path, *, name: str = "int8") -> Callable[[], Hashed | None]:
    """The cache's data file hashed on a thread begun now (sha256: ~0.4 s for BLIP's 0.33 GB,
    outside the GIL, no torch needed), so that a cold start can begin it before torch is
    imported; calling the result waits for it (None: unreadable, or changed while read).
    `cache_state(hashed=...)` and `read_cache_soon(hashed=...)` take it."""
    from .files import sha256_file

    data = cache_paths(folder, name)[0]

    def digest() -> Hashed | None:
        try:
            before = _identity(data)
            sha = sha256_file(data)
            return Hashed(before, sha) if _identity(data) == before else None
        except OSError:
            return None

    return _soon(digest, "loupe-int8-hash")


def _soon(work: Callable[[], Any], name: str) -> Callable[[], Any]:
    """`work` on a thread of its own begun now; calling the result waits for its value."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix=name)
    try:
        return pool.submit(work).result
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one task


#: called with the weights folder once its float weights have loaded and are about to be
#: quantized (no valid cache: the first start after an install, or a rebuild; ~10-20 s for BLIP
#: in all); the CLI says so on stderr
building: list[Callable[[Path], None]] = []


class CacheRead:
    """What `read_cache_soon` found: the cache's `state` ("valid", "missing" or why it would be
    rebuilt) and, when valid, its state dict read with the int8 weights already packed."""

    def __init__(self, state: str, saved: dict | None = None) -> None:
        self.state, self.saved = state, saved


def read_cache_soon(folder: Path, *, name: str = "int8",
                    hashed: Callable[[], Hashed | None] | None = None) -> Callable[[], CacheRead]:
    """The cache checked and read on a thread begun now; calling the result returns the
    `CacheRead` (waiting for it). The check (sha256 over ~0.33 GB for BLIP, or `hashed`: that
    hash begun earlier by `hash_cache_soon`) and packing the int8 weights for fbgemm (~0.6-1 s
    for BLIP's 170 layers on an AVX2 core) run outside the GIL: begun before transformers'
    imports (seconds of Python holding the GIL), they run on the second core meanwhile and cost
    a cold start nothing. A read that fails leaves `saved` None: `load_int8` reads again and
    reports the failure as it would have."""

    def read() -> CacheRead:
        state = cache_state(folder, name=name, hashed=hashed)
        if state != "valid":
            return CacheRead(state)
        try:
            return CacheRead(state, _read_packed(cache_paths(folder, name)[0]))
        except Exception as exc:  # noqa: BLE001 - the load on the caller's thread says what failed
            log.debug("int8 cache read ahead failed (%s); read again on load", exc)
            return CacheRead(state)

    return _soon(read, "loupe-int8-read")


def _read_packed(data: Path) -> dict:
    """The cache file's {"state", "buffers"} with each qint8 layer's (weight, bias) replaced by
    its fbgemm packing (`int8_layers.Packed`), as `LinearPackedParams` would pack it on load."""
    import torch

    from .int8_layers import Packed

    _quiet_deprecations()
    # weights_only: the cache is plain tensors; a tampered file must not run code.
    saved = torch.load(data, map_location="cpu", weights_only=True)
    state = saved["state"]
    suffix = "._packed_params._packed_params"
    for key in [k for k in state if k.endswith(suffix)]:
        if state.get(key[: -len("_packed_params")] + "dtype") is torch.qint8:
            weight, bias = state[key]
            state[key] = (Packed(torch.ops.quantized.linear_prepack(weight, bias)), None)
    return saved


def load_int8(folder: Path, load_float: Callable[[], Any], build_empty: Callable[[], Any], *,
              name: str = "int8", read: Callable[[], CacheRead] | None = None) -> Any:
    """The int8 model of the float weights in `folder`, in eval mode on the CPU.

    From the cache in `folder/.int8/` when it is valid: `build_empty()` must return the
    model's float skeleton (weights' values irrelevant; on the meta device is best: nothing is
    allocated), whose layers are swapped for int8 ones and filled from the cache. Otherwise
    `load_float()` (the float32 model) is quantized and the cache (re)written atomically; a
    weights folder that cannot be written only costs the next load the same quantization.
    A cache that verifies but does not fit the skeleton is rebuilt too. `read`: the check and
    read already begun by `read_cache_soon` (else both are made here)."""
    data, manifest_path = cache_paths(folder, name)
    ahead = read() if read is not None else CacheRead(cache_state(folder, name=name))
    # Handed over, not kept: the read-ahead's future stays referenced from the loading frame,
    # which a reference cycle made by the imports beside it can keep, frozen, for as long as
    # the process lives (engine.long_lived); its copy of the weights (~0.1 GB for BLIP) must go.
    state, saved, ahead.saved = ahead.state, ahead.saved, None
    if state == "valid":
        try:
            return _from_cache(data, build_empty, saved)
        except _Misfit as exc:
            state = f"does not fit the model: {exc}"
    if state != "missing":
        log.warning("int8 cache in %s rebuilt (%s)", data.parent, state)
    float_model = load_float().eval()  # damaged weights fail here, before anything is said
    for tell in list(building):
        tell(folder)
    model = quantize_int8(float_model)
    del float_model
    try:
        _write_cache(model, data, manifest_path, _expected(folder))
    except OSError as exc:
        log.warning("int8 cache not saved in %s (%s); the next start quantizes again", data.parent, exc.strerror or exc)
        return model
    # Continue from the cache just written, as every later start will: the float model's
    # memory (its memory-mapped checkpoint stays resident while any of its tensors lives) goes.
    del model
    import gc

    gc.collect()  # transformers models hold reference cycles: without this the float one lingers
    return _from_cache(data, build_empty)


def _write_cache(model: Any, data: Path, manifest_path: Path, expected: dict) -> None:
    import tempfile

    import torch

    from .files import TEMP_PREFIX, atomic_write, cleanup_stale, fsync_dir, new_file_mode, sha256_file

    data.parent.mkdir(parents=True, exist_ok=True)
    cleanup_stale(data.parent)  # a build killed mid-write (~0.2 GB each); live builders' stay
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=".pt", dir=data.parent)
    try:
        # Straight to the temp file (not through bytes in memory): the state is ~250 MB for BLIP.
        with os.fdopen(fd, "wb") as fh:
            torch.save(_full_state(model), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, new_file_mode())  # readable like the weights beside it (mkstemp: 0600)
        manifest = dict(expected, sha256=sha256_file(Path(tmp)), size=os.path.getsize(tmp))
        os.replace(tmp, data)
        fsync_dir(data.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Data first, manifest last: a crash in between leaves a manifest that does not match.
    atomic_write(manifest_path, json.dumps(manifest, indent=2).encode("utf-8"))


def _full_state(model: Any) -> dict:
    """The state dict plus non-persistent buffers (position ids and the like): a skeleton
    built on the meta device has no values for those either."""
    state = model.state_dict()
    extra = {f"{k}": v for k, v in model.named_buffers() if k not in state}
    return {"state": state, "buffers": extra}


def _from_cache(data: Path, build_empty: Callable[[], Any], saved: dict | None = None) -> Any:
    """The skeleton filled from the cache file `data`, or from `saved` (`_read_packed`'s, read
    ahead on another thread: its packed weights are taken as they are)."""
    _quiet_deprecations()
    if saved is None:
        saved = _read_packed(data)
    model = build_empty()
    _empty_int8_like(model)
    model = model.to_empty(device="cpu")
    try:
        model.load_state_dict(saved["state"], strict=True)
        for key, value in saved["buffers"].items():
            owner, _, attr = key.rpartition(".")
            (model.get_submodule(owner) if owner else model).register_buffer(attr, value, persistent=False)
    except (RuntimeError, KeyError, AttributeError, TypeError, ValueError) as exc:
        raise _Misfit(str(exc).splitlines()[0][:200]) from None
    return model.eval()


class _Misfit(Exception):
    """A verified cache whose tensors do not match the skeleton (code changed, FORMAT not bumped)."""


def empty_transformers_model(cls: Any, folder: Path) -> Any:
    """A transformers model of class `cls` with the config (and generation config) in
    `folder`, on the meta device: the skeleton `load_int8` fills from its cache."""
    import torch

    config = cls.config_class.from_pretrained(folder, local_files_only=True)
    with torch.device("meta"):
        model = cls(config)
    if (folder / "generation_config.json").is_file():  # as from_pretrained would read it
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(folder, local_files_only=True)
    return model
