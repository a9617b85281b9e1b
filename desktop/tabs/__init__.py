"""One module per tab of the page, each with a `build(...)` that lays out its components and
wires its events inside the current `gr.Tab`; `desktop.ui` assembles them. Pieces two tabs
share: `photo_drop` (the drop zone and example photos) and `first_run` (the download panel)."""
