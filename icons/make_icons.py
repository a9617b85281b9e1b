"""Render icons/loupe.svg into the committed icon files. Run after editing the SVG:

    python icons/make_icons.py

Writes loupe-{16,32,48,64,128,256,512,1024}.png, loupe.ico (Windows: 16-256 in one file) and
loupe.icns (macOS: 16-1024). Needs `rsvg-convert` (Debian/Ubuntu: `apt-get install
librsvg2-bin`; macOS: `brew install librsvg`) and Pillow. ImageMagick's own SVG renderer is not
used: it mis-draws clip paths. The PNGs are re-saved by Pillow without text chunks or
timestamps, so re-running on the same SVG gives the same bytes (no spurious git changes).
"""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "loupe.svg"
PNG_SIZES = (16, 32, 48, 64, 128, 256, 512, 1024)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)  # Windows uses up to 256 from an .ico
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)  # what Pillow's ICNS writer stores


def render(size: int) -> Image.Image:
    """The SVG drawn at size x size pixels (RGBA), straight from the vector (no resampling)."""
    tool = shutil.which("rsvg-convert")
    if tool is None:
        sys.exit("make_icons: rsvg-convert not found; install it (apt-get install librsvg2-bin, "
                 "or brew install librsvg)")
    png = subprocess.run([tool, "--width", str(size), "--height", str(size), "--format", "png",
                          str(SOURCE)], check=True, capture_output=True, timeout=60).stdout
    with Image.open(io.BytesIO(png)) as img:
        img = img.convert("RGBA")
    if img.size != (size, size):
        raise SystemExit(f"make_icons: rsvg-convert gave {img.size}, wanted {size}x{size}")
    return img


def main() -> int:
    images = {size: render(size) for size in sorted(set(PNG_SIZES + ICO_SIZES + ICNS_SIZES))}
    for size in PNG_SIZES:
        out = HERE / f"loupe-{size}.png"
        images[size].save(out, format="PNG", optimize=True)
        print(f"wrote {out.relative_to(HERE.parent)}")
    # .ico and .icns: each size its own rendering (append_images), not a downscale of the largest.
    largest = max(ICO_SIZES)
    images[largest].save(HERE / "loupe.ico", format="ICO", sizes=[(s, s) for s in ICO_SIZES],
                         append_images=[images[s] for s in ICO_SIZES if s != largest])
    print("wrote icons/loupe.ico")
    largest = max(ICNS_SIZES)
    images[largest].save(HERE / "loupe.icns", format="ICNS",
                         append_images=[images[s] for s in ICNS_SIZES if s != largest])
    print("wrote icons/loupe.icns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
