"""Units a person reads: the one formatter of byte sizes."""
from __future__ import annotations

_UNITS = ("KB", "MB", "GB", "TB")


def format_size(n_bytes: int | float) -> str:
    """A byte count in decimal units (1 KB = 1000 bytes, like the README and file managers).

    About three significant digits: "512 B", "4.1 KB", "250 KB", "47.0 MB", "990 MB", "1.2 GB".
    Negative counts keep their sign. Never "0 MB" for a small file: the unit follows the size.
    """
    sign = "-" if n_bytes < 0 else ""
    value = float(abs(n_bytes))
    if value < 1000:
        return f"{sign}{int(value)} B"
    for unit in _UNITS:
        value /= 1000
        text = f"{value:.1f}" if value < 99.95 else f"{value:.0f}"
        # Decide on the rounded text, so 999.6 KB is "1.0 MB", never "1000 KB".
        if float(text) < 1000 or unit == _UNITS[-1]:
            return f"{sign}{text} {unit}"
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """A time left, as people say it: "40 s", "4 min", "2 h 5 min" (never "0 s")."""
    s = int(round(seconds))
    if s < 60:
        return f"{max(s, 1)} s"
    if s < 3600:
        return f"{round(s / 60)} min"
    return f"{s // 3600} h {round(s % 3600 / 60)} min"
