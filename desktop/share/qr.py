"""The share's link as a QR code, drawn by segno (pure Python, no image library needed)."""
from __future__ import annotations


def qr_svg(url: str, *, scale: int = 5, title: str = "QR code of the share link") -> str:
    """An inline <svg> of `url` (error correction M, dark on white, 4-module quiet zone)."""
    import segno

    return segno.make(url, error="m", micro=False).svg_inline(
        scale=scale, dark="#111", light="#fff", title=title)


def qr_terminal(url: str) -> str:
    """`url` as a QR code in block characters, for `loupe --browser --share` in a terminal."""
    import io

    import segno

    out = io.StringIO()
    segno.make(url, error="m", micro=False).terminal(out=out, compact=True, border=2)
    return out.getvalue()
