"""Where Loupe keeps its things: data (weights, index), config (settings), cache and logs.

`LOUPE_HOME` puts everything under one folder (tests, portable installs); otherwise the
platform's user folders are used. The weights folder can also be moved by a setting.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import platformdirs

APP = "Loupe"


def _home() -> Path | None:
    value = os.environ.get("LOUPE_HOME")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP, appauthor=False))


def config_dir() -> Path:
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir(APP, appauthor=False))


def cache_dir() -> Path:
    """Files Loupe can always rebuild (torch's compile cache); safe to delete."""
    home = _home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP, appauthor=False))


def log_dir() -> Path:
    home = _home()
    return home / "logs" if home else Path(platformdirs.user_log_dir(APP, appauthor=False))


def settings_file() -> Path:
    return config_dir() / "settings.json"


def load_settings() -> dict[str, Any]:
    try:
        return json.loads(settings_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def save_setting(key: str, value: Any) -> None:
    """Set one setting (None removes it); written atomically so a crash never empties it."""
    settings = load_settings()
    if value is None:
        settings.pop(key, None)
    else:
        settings[key] = value
    from .files import atomic_write

    settings_file().parent.mkdir(parents=True, exist_ok=True)
    atomic_write(settings_file(), json.dumps(settings, indent=2, sort_keys=True).encode("utf-8"))


def weights_dir() -> Path:
    custom = load_settings().get("weights_dir")
    return Path(custom).expanduser() if custom else data_dir() / "models"
