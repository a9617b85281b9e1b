"""The Library tab's search (issue 21): the search box ranks by words and meaning fused
(`engine.library.find`), and a photo's "More like this" ranks by image embedding
(`engine.library.similar`); both fill the grid as the review does (thumbnails, caption, labels),
ranked, a page at a time.

The encoder's text side loads at the first search of the process, not at start: the search box
says so while it loads (`needs_loading`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from engine import library

MOST = 240  # hits ranked per search: five grid pages
BY_WORDS = {"both": "by words and meaning", "words": "by words", "meaning": "by meaning"}


def needs_loading() -> bool:
    """Whether the next search by meaning first loads the encoder's text side (seconds)."""
    if not library.search_encoder_installed():
        return False
    from engine import get_engine

    return not get_engine().text_ready


def _items(hits: list[Any]) -> list[Any]:
    """Hits -> the review's items (state, who wrote the caption), in rank order."""
    items = []
    for hit in hits:
        item = library.photo(hit.path)
        if item is not None:
            items.append(item)
    return items


def search_view(folder: str | None, text: str, state: str, page: int, page_size: int,
                grid: Callable[[list[Any]], str]) -> tuple[str, str, int]:
    """(grid HTML, label, the page shown) for `text`, ranked by words and meaning fused."""
    answer = library.find(text, by="both", folder=folder, state=state, limit=MOST)
    hits = answer.hits
    pages = max(1, -(-len(hits) // page_size))
    page = max(0, min(int(page or 0), pages - 1))
    shown = _items(hits[page * page_size:(page + 1) * page_size])
    noun = "photo" if len(hits) == 1 else "photos"
    label = (f"{len(hits)}{'+' if len(hits) >= MOST else ''} {noun} for “{text}”, best first, "
             f"ranked {BY_WORDS[answer.by]} · page {page + 1} of {pages}")
    if answer.notes:
        label += " · " + " ".join(answer.notes)
    if not shown:
        return '<div class="lib-empty">No photos match; clear the search to see them all.</div>', label, page
    return grid(shown), label, page


def similar_view(folder: str | None, path: str, page_size: int,
                 grid: Callable[[list[Any]], str]) -> tuple[str, str, int]:
    """(grid HTML, label, 0): the photos that look most like the one at `path`, nearest first."""
    hits = library.similar(path, folder=folder, limit=page_size)
    label = (f"{len(hits)} photo{'s' if len(hits) != 1 else ''} most like {Path(path).name}, nearest first "
             "(by what they show) · press Enter in the search box to go back")
    if not hits:
        return '<div class="lib-empty">No other photo has been embedded yet.</div>', label, 0
    return grid(_items(hits)), label, 0
