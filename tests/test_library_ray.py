"""The library scan on a local Ray cluster (2 CPUs) with the tiny models: the same index,
sidecars and search results as a local scan, a model actor killed mid-scan, resume."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine import library

from library_fixtures import read_xmp_file, save_photo, sha

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'loupe[ray]'): the --ray scan is not tested")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'loupe[ray]')")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module (Ray's start costs seconds and memory); the scans find
    it already connected. The object store is kept small: prepared photos are ~0.2 MB here."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    ray.init(address="local", num_cpus=2, object_store_memory=200 * 1024 * 1024, include_dashboard=False,
             log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def make_folder(root: Path, n: int = 10) -> list[Path]:
    """Real photos of several sizes, one copy of another, one that is not a photo."""
    photos = [save_photo(root / f"p{i:02}.jpg", i, size=(320 + 16 * i, 240), exif=i % 2 == 0) for i in range(n)]
    photos.append(save_photo(root / "sub" / "q.png", 99, size=(200, 300)))
    shutil.copy(photos[0], root / "sub" / "copy of p00.jpg")
    (root / "broken.jpg").write_bytes(b"not a photo")
    return photos


def exported(tmp_path: Path, db: Path, root: Path) -> dict[str, tuple]:
    out = tmp_path / f"{db.stem}.json"
    library.export(out, db_path=db)
    rows = json.loads(out.read_text(encoding="utf-8"))
    return {str(Path(r["path"]).relative_to(root)): (r["caption"], [(l["name"], round(l["score"], 3)) for l in r["labels"]],
                                                     r["hash"], r["settings_key"]) for r in rows}


def sidecars(root: Path) -> dict[str, tuple]:
    out = {}
    for x in sorted(root.rglob("*.xmp")):
        meta = read_xmp_file(x)
        out[str(x.relative_to(root))] = (meta.get("Xmp.loupe.caption") or meta.get("Xmp.dc.description"),
                                         meta.get("Xmp.dc.subject"))
    return out


def test_ray_scan_equals_local_scan_and_resumes(cluster, installed, tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_PRECISION", "fp32")  # batch make-up differs: keep scores exact
    local, remote = tmp_path / "local", tmp_path / "ray"
    make_folder(local)
    shutil.copytree(local, remote)
    before = {p: sha(p) for p in remote.rglob("*.jpg")}

    a = library.scan(local, db_path=tmp_path / "a.db", batch_size=4)
    seen = []
    b = library.scan(remote, db_path=tmp_path / "b.db", batch_size=4, ray_address="local", progress=seen.append)

    counts = lambda s: (s.total, s.done, s.skipped, s.failed, s.written, len(s.problems), s.decisions_text())
    assert counts(b) == counts(a) == (13, 11, 0, 1, 12, 1, ", 1 duplicate"), b.problems
    assert [p.reason for p in b.problems] == [p.reason for p in a.problems]
    assert exported(tmp_path, tmp_path / "b.db", remote) == exported(tmp_path, tmp_path / "a.db", local)
    assert sidecars(remote) == sidecars(local) and len(sidecars(remote)) == 12
    assert {p: sha(p) for p in remote.rglob("*.jpg")} == before  # sidecars: originals untouched
    assert seen and seen[-1].done == 13 and seen[-1].inferred == 11

    words = exported(tmp_path, tmp_path / "a.db", local)["p03.jpg"][1][0][0].split()[0]
    hits = lambda db, root: [str(Path(h.path).relative_to(root)) for h in library.search(words, db_path=db)]
    assert hits(tmp_path / "b.db", remote) == hits(tmp_path / "a.db", local) != []

    again = library.scan(remote, db_path=tmp_path / "b.db", batch_size=4, ray_address="local")
    assert (again.done, again.skipped, again.duplicates, again.failed, again.written) == (0, 11, 1, 1, 0)


def _actor_pids() -> list[int]:
    """Processes of Loupe's model actors (Ray names them after the class in their title)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "ModelActor" in cmd:
                pids.append(int(entry.name))
    return pids


def test_killing_a_model_actor_mid_scan_still_does_each_photo_once(cluster, installed, tmp_path):
    root = tmp_path / "photos"
    photos = [save_photo(root / f"p{i:02}.jpg", i, size=(256, 192)) for i in range(16)]
    killed: list[tuple[int, int]] = []  # (pid, photos done when it was killed)
    lock = threading.Lock()

    def progress(p) -> None:
        with lock:
            if p.inferred >= 2 and not killed:
                pids = _actor_pids()
                assert pids, "no model actor process found"
                os.kill(pids[0], signal.SIGKILL)  # as a node losing the process: no goodbye
                killed.append((pids[0], p.inferred))

    summary = library.scan(root, db_path=tmp_path / "k.db", batch_size=2, ray_address="local", progress=progress)
    assert killed and killed[0][1] < len(photos), "the actor was not killed mid-scan"
    assert (summary.done, summary.failed, summary.skipped) == (16, 0, 0), summary.problems
    out = tmp_path / "scan.json"
    library.export(out, scan_id=summary.scan_id, db_path=tmp_path / "k.db")
    items = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(Path(r["path"]).name for r in items) == [p.name for p in photos]
    assert all(r["status"] == "done" for r in items)
    assert all(p.with_name(p.name + ".xmp").exists() for p in photos)

    again = library.scan(root, db_path=tmp_path / "k.db", batch_size=2, ray_address="local")
    assert (again.done, again.skipped) == (0, 16)


def test_cli_without_ray_says_how_to_install_in_one_line(installed, tmp_path):
    """A Python where `import ray` fails (a stub that raises ImportError first on the path)."""
    stub = tmp_path / "stub"
    (stub / "ray").mkdir(parents=True)
    (stub / "ray" / "__init__.py").write_text("raise ImportError('no ray here')\n")
    (tmp_path / "photos").mkdir()
    save_photo(tmp_path / "photos" / "a.jpg", 1)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(stub), str(ROOT)]))
    out = subprocess.run([sys.executable, "-m", "loupe", "library", "scan", str(tmp_path / "photos"), "--ray"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == "loupe: Ray is not installed: pip install 'loupe[ray]'"
    assert not (tmp_path / "photos" / "a.jpg.xmp").exists()


def test_stop_keeps_what_was_recorded_and_the_next_run_resumes(cluster, installed, tmp_path):
    root = tmp_path / "photos"
    photos = [save_photo(root / f"p{i:02}.jpg", i, size=(256, 192)) for i in range(12)]
    cancel = threading.Event()

    def progress(p) -> None:
        if p.inferred >= 2:
            cancel.set()  # what the Stop button does

    first = library.scan(root, db_path=tmp_path / "s.db", batch_size=2, ray_address="local",
                         progress=progress, cancel=cancel)
    assert first.cancelled and 2 <= first.done < len(photos)
    assert library.scans(db_path=tmp_path / "s.db")[-1]["status"] == "cancelled"
    done = [p for p in photos if p.with_name(p.name + ".xmp").exists()]
    assert len(done) == first.done  # each recorded photo has its sidecar, no other has

    rest = library.scan(root, db_path=tmp_path / "s.db", batch_size=2, ray_address="local")
    assert (rest.done, rest.skipped, rest.cancelled) == (len(photos) - first.done, first.done, False)


def test_the_library_tab_scans_on_the_cluster_typed_in_its_options(cluster, installed, tmp_path):
    """The Library tab's Scan with "local" in its Ray field: the same handler a click runs,
    through Ray, to a finished scan whose photos are all in the index."""
    import re

    from desktop.tabs import library as library_tab

    folder = tmp_path / "Trip"
    make_folder(folder, n=4)
    assert library_tab._ray_installed()
    *_, last = library_tab.run_scan(str(folder), "quick", "", "sidecar", "darktable", "keep", False, 10, "", "all",
                                    "local")
    line = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", last[0])).strip()
    assert line.startswith("Done"), line
    assert library.photos(folder=str(folder), state="done").total == 5  # 4 + sub/q.png; the copy is a duplicate
    assert len(list(folder.rglob("*.xmp"))) == 6  # the duplicate's sidecar too


# ---------------------------------------------------------------------- the CLI, as a person runs it
def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.update(kwargs.pop("env", {}))
    return subprocess.Popen([sys.executable, "-m", "loupe", "library", "scan", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _marked(mark: str) -> list[str]:
    """Live processes started under LOUPE_TEST_RUN=mark (the CLI, and the Ray it started:
    raylet, gcs_server, ray:: workers inherit the environment); zombies have none."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"LOUPE_TEST_RUN={mark}".encode() in env:
                found.append(f"{entry.name} {cmd[:120]}")
    return found


def _done_in_index(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT count(*) FROM scan_items WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet, or busy: ask again


@pytest.mark.parametrize("where", ["local", "ray"])
def test_ctrl_c_stops_keeps_what_was_done_says_so_and_the_next_run_does_the_rest(installed, tmp_path, where):
    """Ctrl-C in a terminal (SIGINT to the whole process group) during `loupe library scan`,
    on this machine and with --ray: no traceback (Ray's included), exit 130, the summary and
    one line saying how many photos were kept; the index says cancelled; no Ray process
    stays; the next run (also a clean stderr: only Loupe's lines) does only the rest."""
    root, db = tmp_path / "photos", tmp_path / "i.db"
    photos = [save_photo(root / f"p{i:02}.jpg", i, size=(320, 240)) for i in range(24)]
    ray_args = ["--ray"] if where == "ray" else []
    mark = f"ctrl-c-{os.getpid()}-{where}"
    proc = _cli(str(root), "--db", str(db), "--batch-size", "2", *ray_args,
                env={"LOUPE_TEST_RUN": mark}, start_new_session=True)
    deadline = time.monotonic() + 240
    while _done_in_index(db) < 1:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no photo done in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    kept = _done_in_index(db)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in out + err
    assert 1 <= kept < len(photos), (kept, out, err)
    assert err.splitlines() == [f"Stopped: {kept} photos captioned and kept; run the same command again to resume."], err
    assert len(out.splitlines()) == 1 and out.startswith(f"{root}: {kept} captioned, 0 already done"), out
    assert library.scans(db_path=db)[-1]["status"] == "cancelled"
    assert len(list(root.glob("*.xmp"))) == kept
    deadline = time.monotonic() + 15
    while _marked(mark) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _marked(mark) == []

    rest = _cli(str(root), "--db", str(db), "--batch-size", "2", *ray_args)
    out, err = rest.communicate(timeout=300)
    assert rest.returncode == 0, (out, err)
    # stderr is no terminal: no progress bar, and nothing from Ray (notices, warnings, logs)
    assert err.splitlines() == [], err
    assert len(out.splitlines()) == 1, out
    assert out.startswith(f"{root}: {len(photos) - kept} captioned, {kept} already done, 0 unreadable"), out
    assert len(list(root.glob("*.xmp"))) == len(photos)


def test_ctrl_c_while_the_cluster_is_starting_is_as_quiet(installed, tmp_path):
    """Ctrl-C as soon as Ray's first worker exists, before any photo is done (the review's case:
    Ray Data then started its execution after Stop, and Ray printed a notice): exit 130, only
    the "Stopped" line on stderr, no Ray process left."""
    root, db = tmp_path / "photos", tmp_path / "i.db"
    for i in range(8):
        save_photo(root / f"p{i:02}.jpg", i, size=(320, 240))
    mark = f"ctrl-c-early-{os.getpid()}"
    proc = _cli(str(root), "--db", str(db), "--ray", env={"LOUPE_TEST_RUN": mark}, start_new_session=True)
    deadline = time.monotonic() + 120
    while not any(" ray::" in p for p in _marked(mark)):  # Ray's first worker: the job is starting
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "Ray did not start in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    kept = _done_in_index(db)
    assert proc.returncode == 130, (out, err)
    assert err.splitlines() == [f"Stopped: {kept} photo{'s' if kept != 1 else ''} captioned and kept; "
                                "run the same command again to resume."], err
    deadline = time.monotonic() + 15
    while _marked(mark) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _marked(mark) == []


@pytest.fixture
def web_server():
    """A port that answers, but not as Ray does (a dashboard, a wrong port): Ray itself would
    retry it for ~14 minutes."""
    import http.server

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "nosuchhost:6379", "WEB", "ray://WEB"])
def test_a_cluster_that_cannot_be_reached_is_one_line_and_exit_2_in_seconds(installed, tmp_path, address, web_server):
    address = address.replace("WEB", web_server)
    (tmp_path / "photos").mkdir()
    save_photo(tmp_path / "photos" / "a.jpg", 1)
    started = time.monotonic()
    proc = _cli(str(tmp_path / "photos"), "--db", str(tmp_path / "i.db"), "--ray", address)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, err
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"loupe: Cannot reach the Ray cluster at {address}: "), err
    reason = err.split(": ", 2)[2]
    assert (("nothing accepts connections on port 1" in reason) or ("no computer named nosuchhost" in reason)
            or (f"answers on port {web_server.rpartition(':')[2]} of 127.0.0.1, but not Ray" in reason)), reason
    assert not (tmp_path / "photos" / "a.jpg.xmp").exists()


def test_a_decode_task_prepares_the_same_tensors_without_loading_a_model(installed):
    """`decode_row` (what each Ray decode task runs) holds the models' preprocessing only, and
    its tensors equal those a loaded model's own processor / transforms make (the local scan,
    the Caption tab and the CLI all prepare through the same `Engine.prepare`)."""
    import pickle

    import torch

    from engine.inference import Engine, load_photo
    from engine.library import ray_scan
    from engine.models.registry import TASKS, for_task

    photo = save_photo(Path(os.environ["LOUPE_HOME"]) / "p.jpg", 3, size=(640, 480))
    models = {task: for_task(task).check_options() for task in TASKS}
    row = ray_scan.decode_row({"id": 0, "path": str(photo), "tasks": list(TASKS)}, models=models)
    worker = ray_scan.worker_engine()
    assert row["error"] == "" and worker._models == {}  # no weights loaded in a decode task
    inputs = pickle.loads(row["inputs"])

    loaded = Engine()
    for task in TASKS:
        model = loaded.model(task)
        direct = model.preprocess(load_photo(model.input_size, photo), **models[task])
        a = inputs[task]["pixel_values"] if task == "caption" else inputs[task]
        b = direct["pixel_values"] if task == "caption" else direct
        assert torch.equal(a, b), task
