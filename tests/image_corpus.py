"""Generates photos in every mode the loader must handle, and files it must refuse."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def gradient(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    x = np.broadcast_to(np.linspace(0, 215, w, dtype=np.float32)[None, :], (h, w))
    y = np.broadcast_to(np.linspace(0, 215, h, dtype=np.float32)[:, None], (h, w))
    base = np.stack([x, y, (x + y) / 2], axis=2)
    noise = rng.integers(0, 40, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def good_photos(folder: Path) -> dict[str, Path]:
    """Readable photos, one per tricky case. Returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    def save(name: str, im: Image.Image, **kw) -> None:
        out[name] = folder / name
        im.save(out[name], **kw)

    save("plain.jpg", gradient(80, 60, 1), quality=90)
    # Orientation 6: stored landscape, shown portrait (rotate 270 to display).
    exif = Image.Exif()
    exif[0x0112] = 6
    save("rotated.jpg", gradient(80, 40, 2), exif=exif.tobytes())
    save("cmyk.jpg", gradient(64, 48, 3).convert("CMYK"))
    pal = gradient(64, 48, 4).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    save("palette.png", pal, transparency=0)
    rgba = gradient(64, 48, 5).convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 0))  # fully transparent: must come out white
    save("transparent.png", rgba)
    la = Image.new("LA", (32, 32), (0, 0))
    save("la.png", la)
    sixteen = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (48, 1))
    save("sixteen.png", Image.fromarray(sixteen))  # mode I;16
    save("sixteen.tif", Image.fromarray(sixteen))
    frames = [gradient(40, 30, 10 + i) for i in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out["animated.gif"] = folder / "animated.gif"
    save("grey.bmp", gradient(40, 30, 6).convert("L"))
    save("photo.webp", gradient(64, 48, 7), quality=80)
    save("UPPER.JPEG", gradient(50, 40, 8))
    return out


def bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files the loader must refuse. Returns name -> (path, a word the reason contains)."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}
    buf = io.BytesIO()
    gradient(400, 300, 9).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    out["truncated.jpg"] = (folder / "truncated.jpg", "truncated")
    (folder / "empty.jpg").write_bytes(b"")
    out["empty.jpg"] = (folder / "empty.jpg", "empty")
    (folder / "notes.jpg").write_text("these are not the pixels you are looking for\n" * 20)
    out["notes.jpg"] = (folder / "notes.jpg", "not an image")
    (folder / "random.png").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out["random.png"] = (folder / "random.png", "not an image")
    # A PNG header promising 12000x12000 pixels in a tiny file.
    Image.new("1", (12000, 12000)).save(folder / "bomb.png", optimize=True)
    out["bomb.png"] = (folder / "bomb.png", "pixels")
    Image.new("RGB", (32, 32), "red").save(folder / "icon.ico", format="ICO")
    out["icon.ico"] = (folder / "icon.ico", "not an image")
    png = io.BytesIO()
    gradient(64, 48, 11).save(png, "PNG")
    raw = bytearray(png.getvalue())
    raw[60:80] = b"\x00" * 20  # corrupt the pixel data, keep the header
    (folder / "corrupt.png").write_bytes(bytes(raw))
    out["corrupt.png"] = (folder / "corrupt.png", "damaged")
    (folder / "a-folder.jpg").mkdir(exist_ok=True)
    out["a-folder.jpg"] = (folder / "a-folder.jpg", "folder")
    out["missing.jpg"] = (folder / "missing.jpg", "no such file")
    return out
