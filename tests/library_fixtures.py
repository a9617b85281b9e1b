"""Test helpers for the library: a deterministic FakeEngine and a folder of real test files.

FakeEngine is ONLY for testing library logic (batching, resume, writers). Its captions come
from pixel statistics, so different photos get different captions; it records every call
(in memory, and optionally as JSON lines in a log file shared across processes).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from engine.results import Caption, Label, Labels

NOUNS = ["fox", "boat", "tree", "house", "bicycle", "lamp", "river", "cloud",
         "dog", "cat", "bridge", "tower", "flower", "train", "kite", "chair"]
ADJECTIVES = ["quiet", "busy", "sunny", "misty", "old", "modern", "small", "large"]
LABELS = ["tabby cat", "golden retriever", "seashore", "espresso", "sports car",
          "lakeside", "daisy", "volcano", "teddy bear", "mountain bike"]


def pixel_digest(image: Image.Image) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()[:12]


def color_word(image: Image.Image) -> str:
    mean = np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(axis=0)
    if mean.max() - mean.min() < 25:
        return "gray"
    return ("red", "green", "blue")[int(mean.argmax())]


# what blip-image-captioning-base's processor and ResNet18's transforms resize to
REAL_INPUT_SIZES = {"caption": 384, "classify": 256}


class FakeEngine:
    """Implements `engine.batching.Inference` in full (model_ids, batch_size, prepare, infer).

    `prepare` is the real decode (`engine.inference.load_photo` at the real models' input sizes),
    so the photos it is handed are the pixels a real model's preprocessing would start from."""

    def __init__(
        self, *, version: str = "1", batch_size: int = 4, delay: float = 0.0,
        log_path: str | os.PathLike[str] | None = None, fixed_caption: str | None = None,
    ) -> None:
        self.version = version
        self.batch = batch_size
        self.delay = delay
        self.log_path = str(log_path) if log_path else None
        self.fixed_caption = fixed_caption
        self.calls: list[tuple[str, list[str]]] = []
        self.loaded: set[str] = set()
        self._n = 0

    def model_ids(self) -> dict[str, str]:
        return {"caption": f"fake-caption@{self.version}", "classify": f"fake-classify@{self.version}", "precision": "fp32"}

    def _log(self, kind: str, images: list[Image.Image]) -> list[str]:
        digests = [pixel_digest(im) for im in images]
        self._n += 1
        self.calls.append((kind, digests))
        if self.log_path:
            line = json.dumps({"pid": os.getpid(), "n": self._n, "kind": kind, "digests": digests}) + "\n"
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())  # one write() with O_APPEND: whole lines even under SIGKILL
            finally:
                os.close(fd)
        return digests

    def batch_size(self, task: str, options=None) -> int:
        return self.batch

    def load(self, task: str) -> None:
        self.loaded.add(task)  # nothing to load: noted

    def prepare(self, task, photo, options):
        from engine.inference import load_photo

        return photo if isinstance(photo, Image.Image) else load_photo(REAL_INPUT_SIZES[task], photo)

    def infer(self, task, inputs, options, cancel=None, on_step=None):
        from engine.errors import Cancelled

        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if task == "caption":
            return self.caption(inputs, **options)  # no generation steps to tell (`on_step`)
        return self.classify(inputs, **options)

    def caption(self, images, *, prefix=None, max_new_tokens=30, num_beams=3):
        assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in images)
        digests = self._log("caption", images)
        if self.delay:
            time.sleep(self.delay)
        out = []
        for im, d in zip(images, digests):
            if self.fixed_caption is not None:
                out.append(Caption(self.fixed_caption))
                continue
            raw = bytes.fromhex(d)
            bright = "bright" if np.asarray(im).mean() > 110 else "dark"
            text = f"a {bright} {color_word(im)} {ADJECTIVES[raw[0] % 8]} {NOUNS[raw[1] % 16]} v{self.version} {d[:4]}"
            out.append(Caption(((prefix + " ") if prefix else "") + text))
        return out

    def classify(self, images, *, top=3):
        digests = self._log("classify", images)
        out = []
        for d in digests:
            raw = bytes.fromhex(d)
            picks = []
            for i in range(len(LABELS)):
                idx = (raw[2] + i * (1 + raw[3] % 3)) % len(LABELS)
                if idx not in picks:
                    picks.append(idx)
                if len(picks) == top:
                    break
            scores = [0.6, 0.25, 0.1, 0.03, 0.02][: len(picks)]
            out.append(Labels(tuple(Label(LABELS[i], s, i) for i, s in zip(picks, scores))))
        return out

    def inferred(self) -> list[str]:
        """Digests of every photo captioned, in order (one entry per time it was done)."""
        return [d for kind, ds in self.calls if kind == "caption" for d in ds]


# -- files

def photo_array(seed: int, size: tuple[int, int] = (96, 64), color: tuple[int, int, int] | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.array(color if color is not None else rng.integers(30, 226, 3), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    grad = ((xx / max(w - 1, 1)) * 40 - 20)[..., None]
    noise = rng.normal(0, 12, (h, w, 3))
    return np.clip(base + grad + noise, 0, 255).astype(np.uint8)


def exif_bytes(make: str = "LoupeCam", model: str = "Model 7", copyright: str = "(c) Tester") -> bytes:
    exif = Image.Exif()
    exif[0x010F] = make
    exif[0x0110] = model
    exif[0x8298] = copyright
    return exif.tobytes()


def save_photo(path: Path, seed: int, *, size=(96, 64), color=None, exif: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(photo_array(seed, size, color))
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
           ".gif": "GIF", ".bmp": "BMP"}[path.suffix.lower()]
    kwargs = {}
    if exif and fmt in ("JPEG", "PNG", "TIFF", "WEBP"):
        kwargs["exif"] = exif_bytes()
    if fmt == "JPEG":
        kwargs["quality"] = 90
    if fmt == "WEBP":
        kwargs["lossless"] = True
    im.save(path, fmt, **kwargs)
    return path


def bomb_png(path: Path, side: int = 30000) -> Path:
    """A tiny PNG whose header claims side x side pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


THIRD_PARTY_XMP = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:darktable="http://darktable.sf.net/"
   xmp:Rating="5" darktable:xmp_version="5">
   <dc:creator><rdf:Seq><rdf:li>Ann Other</rdf:li></rdf:Seq></dc:creator>
   <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li><rdf:li>family</rdf:li></rdf:Bag></dc:subject>
   <darktable:history><rdf:Seq><rdf:li darktable:operation="exposure" darktable:enabled="1"/></rdf:Seq></darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def make_tree(root: Path) -> dict[str, list[Path]]:
    """A nested folder of real files. Returns {"good": [...], "bad": [...], "ignored": [...]}."""
    good = [
        save_photo(root / "a.jpg", 1, exif=True, color=(200, 40, 40)),
        save_photo(root / "B.JPG", 2, exif=True, color=(40, 190, 50)),
        save_photo(root / "été à la plage.jpeg", 3, color=(40, 60, 210)),
        save_photo(root / "sub" / "c.Png", 4, exif=True),
        save_photo(root / "sub" / "deeper" / "d.TIF", 5, exif=True),
        save_photo(root / "sub" / "deeper" / "e.webp", 6, exif=True),
        save_photo(root / "sub" / "big.jpg", 7, size=(1600, 1200), exif=True),
        save_photo(root / "ro.jpg", 8, exif=True),
        save_photo(root / "anim.gif", 9),
    ]
    os.chmod(root / "ro.jpg", 0o444)
    (root / "a.jpg.xmp").write_text(THIRD_PARTY_XMP, encoding="utf-8")
    bad_dir = root / "bad"
    bad_dir.mkdir()
    full = (root / "a.jpg").read_bytes()
    (bad_dir / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (bad_dir / "empty.jpg").write_bytes(b"")
    (bad_dir / "text.jpg").write_text("this is not a photo\n")
    bomb_png(bad_dir / "bomb.png")
    bad = sorted(bad_dir.iterdir())
    ignored = [
        save_photo(root / ".hidden" / "h.jpg", 20),
        root / "._a.jpg",
        root / "notes.txt",
    ]
    (root / "._a.jpg").write_bytes(b"\x00\x05\x16\x07 apple double")
    (root / "notes.txt").write_text("not a photo")
    return {"good": good, "bad": bad, "ignored": ignored}


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def read_xmp_file(path: Path) -> dict:
    import pyexiv2

    img = pyexiv2.ImageData(Path(path).read_bytes())
    try:
        return img.read_xmp()
    finally:
        img.close()


def read_exif_file(path: Path) -> dict:
    import pyexiv2

    img = pyexiv2.ImageData(Path(path).read_bytes())
    try:
        return img.read_exif()
    finally:
        img.close()


def tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".loupe-tmp-*")]


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_like_scan(path: Path) -> Image.Image:
    """The photo the scan hands the captioner (the one decode every entry point uses)."""
    from engine.inference import load_photo

    return load_photo(REAL_INPUT_SIZES["caption"], path)


def index_captions(root: Path, captions: dict[str, str], *, seed: int = 100) -> dict[str, Path]:
    """Scan one real photo per caption into the default index (one subfolder and one
    FakeEngine(fixed_caption=...) each). Returns {caption: photo path}. FakeEngine's labels
    come from LABELS, so keep search words in tests clear of those."""
    from engine import library

    out = {}
    for i, caption in enumerate(captions):
        folder = Path(root) / f"s{i}"
        out[caption] = save_photo(folder / captions[caption], seed + i)
        library.scan(folder, engine=FakeEngine(fixed_caption=caption), write="none")
    return out


__all__ = ["FakeEngine", "index_captions", "make_tree", "save_photo", "bomb_png", "decoded", "read_xmp_file", "read_exif_file",
           "tmp_files", "sha", "pixel_digest", "load_like_scan", "THIRD_PARTY_XMP"]
