"""`loupe` as a person runs it: real subprocesses, real files, tiny models installed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from image_corpus import gradient


def loupe(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "loupe", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def photo(tmp_path):
    p = tmp_path / "photo one.jpg"
    gradient(120, 90, 3).save(p)
    return p


@pytest.mark.parametrize("args", [[], ["caption"], ["classify"], ["models"], ["models", "download"],
                                  ["models", "import"], ["models", "status"], ["models", "verify"],
                                  ["library"], ["library", "scan"], ["library", "search"]])
def test_every_command_has_help(args):
    proc = loupe(*args, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: loupe " + " ".join(args))


def test_help_shows_the_registry_defaults_and_limits():
    from engine.models.registry import for_task

    text = " ".join(loupe("caption", "--help").stdout.split())
    for opt in for_task("caption").options:
        assert opt.cli in text
    beams = for_task("caption").option("num_beams")
    assert f"[default: {beams.default}; {beams.minimum}<=x<={beams.maximum}]" in text
    text = " ".join(loupe("library", "scan", "--help").stdout.split())
    assert "--top" in text and "--beams" in text and "--max-tokens" in text


def test_caption_and_classify_text_and_json(installed, photo):
    proc = loupe("caption", photo, "--beams", "1", "--max-tokens", "8")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.strip()
    assert text and "\n" not in text

    proc = loupe("caption", photo, photo, "--json", "--beams", "1", "--max-tokens", "8")
    data = json.loads(proc.stdout)
    assert [d["path"] for d in data] == [str(photo)] * 2 and data[0]["text"] == text

    proc = loupe("classify", photo, "--top", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    labels = json.loads(proc.stdout)[0]["labels"]
    assert len(labels) == 2 and labels[0]["score"] >= labels[1]["score"]
    proc = loupe("classify", photo)
    assert len(proc.stdout.strip().splitlines()) == 3 and "%" in proc.stdout


def test_missing_weights_is_one_line_with_what_to_do(tiny_sources, photo):
    proc = loupe("caption", photo)
    assert proc.returncode == 4
    assert proc.stderr.count("\n") == 1 and "loupe models download" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_some_bad_photos_do_not_stop_the_rest(installed, photo, tmp_path):
    missing = tmp_path / "gone.jpg"
    proc = loupe("classify", photo, missing, "--json")
    assert proc.returncode == 3
    data = json.loads(proc.stdout)
    assert "labels" in data[0] and data[1]["error"] == "no such file"
    assert proc.stderr.strip() == f"loupe: {missing}: no such file"


def test_an_empty_photo_name_is_named_as_such_not_as_a_folder(installed, photo):
    proc = loupe("classify", photo, "")
    assert proc.returncode == 3
    assert proc.stderr.strip() == "loupe: '': an empty name, not a photo"


@pytest.mark.parametrize("args, code", [(["classify", "x.jpg", "--top", "0"], 2),
                                        (["caption", "x.jpg", "--beams", "50"], 2),
                                        (["caption", "x.jpg", "--max-tokens", "0"], 2),
                                        (["models", "remove", "nonsense"], 2),
                                        (["models", "import", "/no/such/folder"], 2)])
def test_usage_errors(installed, args, code, tmp_path):
    if args[0] in ("caption", "classify"):
        gradient().save(tmp_path / "x.jpg")
        args = [args[0], tmp_path / "x.jpg", *args[2:]]
    proc = loupe(*args)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("loupe: ") and "Traceback" not in proc.stderr


def test_models_status(installed):
    proc = loupe("models", "status", "--json")
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["blip-base"]["installed"] and rows["resnet18"]["installed"] and rows["siglip-base"]["installed"]
    assert loupe("models", "verify").stdout.count(": ok") == 3
    assert "installed" in loupe("models", "status").stdout


AUDIT = r"""
import socket, sys
connects = []
def hook(event, args):
    if event == "socket.connect":
        connects.append(repr(args[1]))
sys.addaudithook(hook)
from loupe.cli import main
rc = main(sys.argv[1:])
heavy = [m for m in ("gradio", "PySide6", "webview", "fastapi") if m in sys.modules]
print("RESULT", rc, connects, heavy, file=sys.stderr)
"""


def test_caption_makes_no_connection_and_imports_no_gui(installed, photo):
    proc = subprocess.run([sys.executable, "-c", AUDIT, "caption", str(photo), "--max-tokens", "5"],
                          capture_output=True, text=True, timeout=180)
    result = proc.stderr.strip().splitlines()[-1]
    assert result == "RESULT 0 [] []", proc.stderr


def test_commands_leave_nothing_in_the_temp_folder_and_log_each_run(installed, photo, tmp_path, loupe_home):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)  # the test process pins its own; a person has none
    for args in (["caption", photo, "--beams", "1", "--max-tokens", "5"], ["classify", photo, "--top", "2"]):
        proc = subprocess.run([sys.executable, "-m", "loupe", *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
    # issue 11: every run left an empty torchinductor_<user> here
    assert sorted(p.name for p in tmp.iterdir()) == []
    assert (loupe_home / "cache" / "torchinductor").is_dir()  # torch's folder, in Loupe's cache

    # issue 11: the CLI wrote no log; now the app's file has one line per command
    lines = [line for line in (loupe_home / "logs" / "loupe.log").read_text(encoding="utf-8").splitlines()
             if " loupe.cli: " in line]
    assert len(lines) == 2, lines
    assert "INFO loupe.cli: loupe caption: exit 0 in " in lines[0]
    assert "'num_beams': 1" in lines[0] and "'max_new_tokens': 5" in lines[0] and lines[0].endswith("photos 1, failed 0")
    assert "loupe classify: exit 0" in lines[1] and "'top': 2" in lines[1]


def test_a_bug_is_one_line_on_the_terminal_and_a_traceback_in_the_log(installed, photo, loupe_home,
                                                                       monkeypatch, capsys):
    from engine import inference
    from loupe.cli import main

    def broken(self, task, photos, **options):
        raise KeyError("a bug\nover two lines")

    monkeypatch.setattr(inference.Engine, "run", broken)
    assert main(["caption", str(photo)]) == 1
    err = capsys.readouterr().err
    log_path = loupe_home / "logs" / "loupe.log"
    assert err == f"loupe: unexpected error (KeyError: 'a bug\\nover two lines'); details in {log_path}\n"
    log = log_path.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in log and "in broken" in log
    assert "loupe caption: exit 1" in log
