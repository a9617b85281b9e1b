"""The `loupe` command: a thin click CLI over `engine`, and the door to the window.

    loupe                      the window (imports `desktop` only then)
    loupe caption|classify     photos -> captions / labels
    loupe models ...           weights: status, download, import, verify, remove
    loupe library ...          folders: scan, search, export, undo, scans

Options, their defaults and limits come from the model registry (engine.models.registry);
expected failures are `engine.errors.LoupeError`s, printed as one line with their exit code.
"""
