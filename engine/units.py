"""Sizes as people read them."""
from __future__ import annotations


def format_size(n_bytes: int) -> str:
    """Bytes in decimal units that fit: "991 MB", "1.20 GB", "250 KB", "12 bytes"."""
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:,.2f} GB"
    if n_bytes >= 1e6:
        return f"{n_bytes / 1e6:,.0f} MB"
    if n_bytes >= 1e3:
        return f"{n_bytes / 1e3:,.0f} KB"
    return f"{n_bytes} bytes"
