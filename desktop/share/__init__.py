"""Share on this network: Loupe's Caption and Classify tabs for a phone or the next desk.

    session.py    a running share: its own guarded server on a network address, token, expiry
    page.py       the shared page (built from the Caption and Classify tab builders)
    guard.py      the local guard plus an allow-list of the shared page's routes
    gate.py       the person at this computer first, visitors after
    addresses.py  which addresses a share may use
    qr.py         the link as a QR code
    panel.py      "Share on this network" in Loupe's own page

Nothing here is imported by Loupe at start-up except gate.py (no gradio, no model).
"""
