"""The one image loader: every photo enters Loupe through `load_image`.

It only reads the user's file. It returns an 8-bit RGB `PIL.Image` with EXIF orientation
applied, transparency composited on white and 16-bit data rescaled; anything it cannot read
safely becomes an `UnreadableImage` naming the file and the reason.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UnreadableImage

# Formats a camera, phone or scanner produces (JPEG includes multi-picture MPO). Others (EPS, which runs Ghostscript; ICO;
# PSD; exotic formats with fragile decoders) are refused before any decoder runs.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
)
# The largest camera sensors are ~100 MP. Pillow warns above its own limit and refuses at
# twice it; Loupe raises that limit to its own and treats the warning as a refusal too.
MAX_PIXELS = 120_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# .jfif and .jpe are JPEG under names some browsers and old Windows tools save.
EXTENSIONS = EXTENSIONS | {".jfif"}
# Camera RAW files are captioned from the JPEG preview the camera embedded (LibRaw through
# rawpy: the largest preview, as digiKam and darktable show before developing). Demosaicing the
# raw itself would cost seconds a photo and give the model nothing the preview lacks.
RAW_EXTENSIONS: frozenset[str] = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"})
# Formats Loupe knows but cannot decode here: suffix -> (reason key, why), counted as left out
# by the scan (engine/library/leave_out.py words them) instead of being passed over silently.
UNDECODED: dict[str, tuple[str, str]] = {}

try:  # HEIC/HEIF from phones, when the optional plugin is installed.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    ALLOWED_FORMATS = ALLOWED_FORMATS + ("HEIF",)
    EXTENSIONS = EXTENSIONS | {".heic", ".heif"}
except ImportError:  # pragma: no cover - optional
    UNDECODED.update({s: ("no-decoder-heif", "pillow-heif is not installed") for s in (".heic", ".heif")})

from PIL import features as _features  # noqa: E402

if _features.check("avif"):  # Pillow 11.3+ wheels decode AVIF (libavif) themselves
    ALLOWED_FORMATS = ALLOWED_FORMATS + ("AVIF",)
    EXTENSIONS = EXTENSIONS | {".avif"}
else:  # pragma: no cover - a Pillow built without libavif
    UNDECODED[".avif"] = ("no-decoder-avif", "this Pillow was built without AVIF")

try:  # JPEG XL through the maintained Pillow plugin, when installed (Pillow has no decoder of its own)
    import pillow_jxl  # noqa: F401

    ALLOWED_FORMATS = ALLOWED_FORMATS + ("JXL",)
    EXTENSIONS = EXTENSIONS | {".jxl"}
except ImportError:
    UNDECODED[".jxl"] = ("no-decoder-jxl", "pillow-jxl-plugin is not installed")

try:
    import rawpy as _rawpy

    EXTENSIONS = EXTENSIONS | RAW_EXTENSIONS
except ImportError:  # pragma: no cover - the rawpy wheel is a dependency; a source build may lack it
    _rawpy = None
    UNDECODED.update({s: ("no-decoder-raw", "rawpy is not installed") for s in RAW_EXTENSIONS})


def is_raw_name(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in RAW_EXTENSIONS


def undecoded_reason(path: str | os.PathLike[str]) -> str | None:
    """The left-out reason key for a photo format Loupe cannot decode here, else None."""
    hit = UNDECODED.get(Path(path).suffix.lower())
    return hit[0] if hit else None


def is_photo_name(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in EXTENSIONS


def load_image(
    path: str | os.PathLike[str],
    *,
    draft_size: tuple[int, int] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Read `path` as an RGB image.

    `draft_size` lets JPEG decode at a reduced scale that is still at least that size
    (several times faster for 12-MP photos that a model shrinks to 384 px anyway).
    """
    if not os.fspath(path).strip():  # Path("") is ".", which would be reported as a folder
        raise UnreadableImage(repr(os.fspath(path)), "an empty name, not a photo")
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise UnreadableImage(p, "no such file") from None
    except OSError as exc:
        raise UnreadableImage(p, f"cannot open ({exc.strerror or exc})") from None
    if p.is_dir():
        raise UnreadableImage(p, "is a folder, not a photo")
    if size == 0:
        raise UnreadableImage(p, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            source, formats = (_raw_preview(p), ("JPEG", "TIFF")) if is_raw_name(p) else (p, ALLOWED_FORMATS)
            with Image.open(source, formats=formats) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise UnreadableImage(
                        p, f"too large ({width}x{height} pixels; the limit is {max_pixels:,})"
                    )
                if draft_size and im.format in ("JPEG", "MPO"):
                    im.draft("RGB", draft_size)
                im.seek(0)  # animations: the first frame only
                im.load()
                return _to_rgb(ImageOps.exif_transpose(im))
    except UnreadableImage:
        raise
    except UnidentifiedImageError:
        raise UnreadableImage(p, "not an image Loupe can read (" + _allowed_text() + ")") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnreadableImage(p, "refused: too many pixels (possible decompression bomb)") from None
    except PermissionError:
        raise UnreadableImage(p, "permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        # Pillow's decoders report truncation and corruption through these.
        raise UnreadableImage(p, f"damaged or truncated image ({_short(exc)})") from None
    except MemoryError:
        raise UnreadableImage(p, "image too large to decode in memory") from None


def _raw_preview(path: Path) -> "io.BytesIO":
    """The largest preview a camera embedded in a RAW file, as encoded bytes (JPEG, or a
    bitmap LibRaw hands over re-encoded as TIFF). UnreadableImage when there is none."""
    import io

    if _rawpy is None:  # pragma: no cover
        raise UnreadableImage(path, "a RAW file, and rawpy is not installed")
    try:
        with _rawpy.imread(str(path)) as raw:
            thumb = raw.extract_thumb()
    except (_rawpy.LibRawNoThumbnailError, _rawpy.LibRawUnsupportedThumbnailError):
        raise UnreadableImage(path, "a RAW file without an embedded preview") from None
    except (_rawpy.LibRawError, OSError, ValueError) as exc:
        raise UnreadableImage(path, f"damaged or unsupported RAW file ({_short(exc)})") from None
    if thumb.format == _rawpy.ThumbFormat.JPEG:
        return io.BytesIO(bytes(thumb.data))
    buf = io.BytesIO()
    Image.fromarray(thumb.data).save(buf, "TIFF")
    buf.seek(0)
    return buf


def _allowed_text() -> str:
    names = sorted({"JPEG" if f == "MPO" else f for f in ALLOWED_FORMATS})
    return ", ".join(names)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:120]


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im.copy() if im.readonly else im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_depth_to_rgb(im)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "L" and "transparency" in im.info:
        return _to_rgb(im.convert("LA"))
    if mode == "RGB" or mode in ("1", "L", "CMYK", "YCbCr", "LAB", "HSV"):
        return im.convert("RGB")
    return im.convert("RGB")


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    """Scale 16-bit (and 32-bit/float) grey to 8 bits by its range, never by clipping."""
    import numpy as np

    arr = np.asarray(im)
    if arr.dtype.kind == "f":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
            scaled = np.zeros(arr.shape, dtype=np.uint8)
        else:
            scaled = ((np.nan_to_num(arr, nan=lo) - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
    else:
        arr = arr.astype(np.int64)
        top = 65535 if arr.max(initial=0) <= 65535 and arr.min(initial=0) >= 0 else int(arr.max())
        lo = min(0, int(arr.min(initial=0)))
        span = max(top - lo, 1)
        scaled = ((arr - lo) * 255 // span).astype(np.uint8)
    return Image.fromarray(scaled, mode="L").convert("RGB")
