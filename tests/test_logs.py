"""engine.logs: one log file for the CLI and the app, in the folder LOUPE_HOME says."""
from __future__ import annotations

import logging

import pytest

from engine import logs


def _ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_loupe", False)]


def test_cli_then_app_share_one_file_and_the_token_filter_is_added(loupe_home):
    from desktop.logs import setup_logging as app_setup
    from desktop.server import token_filter

    path = logs.setup_logging()
    assert path == loupe_home / "logs" / "loupe.log"
    assert app_setup() == path  # the app after a command (`loupe` with no command)
    assert len(_ours()) == 1 and token_filter() in _ours()[0].filters
    token_filter().add("s3cret-token")
    logging.getLogger("loupe.test").info("url http://127.0.0.1/?token=s3cret-token")
    _ours()[0].flush()
    text = path.read_text(encoding="utf-8")
    assert "token=[redacted]" in text and "s3cret-token" not in text


def test_handler_follows_loupe_home_and_keeps_its_filters(loupe_home, tmp_path, monkeypatch):
    keep = logging.Filter("kept")
    logs.setup_logging(filters=[keep])
    monkeypatch.setenv("LOUPE_HOME", str(tmp_path / "other"))
    path = logs.setup_logging()
    assert path == tmp_path / "other" / "logs" / "loupe.log"
    assert len(_ours()) == 1 and _ours()[0].filters == [keep]


def test_unwritable_log_file_is_no_error(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "logs" / "loupe.log").mkdir(parents=True)  # a folder where the file should be
    monkeypatch.setenv("LOUPE_HOME", str(home))
    assert logs.setup_logging() is None and _ours() == []


def test_command_run_logs_counts_also_when_it_raises(loupe_home):
    with logs.command_run("library search", {"words": ["-boat"], "photos": list(range(9))}) as run:
        logs.note(hits=0)
        run.exit_code = 1
    logs.note(hits=5)  # outside any command: ignored
    with pytest.raises(RuntimeError), logs.command_run("caption", {}):
        raise RuntimeError("boom")
    _ours()[0].flush()
    lines = (loupe_home / "logs" / "loupe.log").read_text(encoding="utf-8").splitlines()
    assert "loupe library search: exit 1 in " in lines[0]
    assert lines[0].endswith("options {'words': ['-boat'], 'photos': '9 items'}; hits 0")
    assert "loupe caption: exit None in " in lines[1] and lines[1].endswith("no counts")
