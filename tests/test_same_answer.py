"""Same photo, same answer: the Caption and Classify tabs, `loupe caption`/`loupe classify` and
a library scan feed each model the same tensor for the same file, so captions are equal and
label scores equal to float tolerance (issue 11: a scan used to pre-shrink photos whose short
side exceeded the model's size, and decoded JPEGs for the classifier at the captioner's size).

Tiny models through the real download path; each entry point used as a person uses it (the
UI's own handlers, the CLI in a subprocess, `library.scan` on a folder)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from image_corpus import gradient

# (name, size, how it is saved): sizes around and far above both models' input sizes (384 for
# the captioner, 256 for the classifier), both orientations, odd aspect ratios.
CASES = [
    ("portrait.png", (480, 640), "png"),  # the example: short side 480 > 384
    ("landscape-12mp.jpg", (4000, 3000), "jpg"),  # JPEG draft decoding at each model's size
    ("panorama.jpg", (2400, 500), "jpg"),
    ("tall.jpg", (300, 1200), "jpg"),
    ("small.png", (200, 150), "png"),  # below both sizes
    ("exactly-384.jpg", (384, 512), "jpg"),
    ("rotated.jpg", (900, 600), "jpg-exif-6"),  # EXIF orientation 6: shown as portrait
    ("cmyk.tif", (800, 1000), "tif-cmyk"),
]


def _photo(path, size, how, seed):
    w, h = size
    image = gradient(w, h, seed=seed)
    # a few shapes, so downscaling differences would show in the pixels
    arr = np.asarray(image).copy()
    arr[h // 4: h // 2, w // 5: w // 2] = (200, 40, 40)
    arr[h // 2: h // 2 + max(2, h // 50), :] = 10
    image = Image.fromarray(arr)
    if how == "png":
        image.save(path)
    elif how == "jpg":
        image.save(path, quality=92)
    elif how == "jpg-exif-6":
        exif = Image.Exif()
        exif[0x0112] = 6
        image.save(path, quality=92, exif=exif)
    elif how == "tif-cmyk":
        image.convert("CMYK").save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    return [_photo(root / name, size, how, seed) for seed, (name, size, how) in enumerate(CASES)]


def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", "loupe", *map(str, args), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return {d["path"]: d for d in json.loads(proc.stdout)}


def test_every_entry_point_gives_the_same_caption_and_labels(installed, folder, tmp_path):
    from desktop.tabs.caption import caption_photo
    from desktop.tabs.classify import classify_photo
    from engine import library
    from engine.models.registry import for_task

    beams = for_task("caption").option("num_beams").default
    tokens = for_task("caption").option("max_new_tokens").default
    # 1. the Caption and Classify tabs' handlers, with the controls at their defaults
    tab = {str(p): (caption_photo(str(p), "", tokens, beams), classify_photo(str(p))) for p in folder}
    # 2. the command line, all photos in one call (batched)
    cli_captions, cli_labels = _cli("caption", *folder), _cli("classify", *folder)
    # 3. a library scan of the folder (the index holds what the scan got)
    summary = library.scan(folder[0].parent, write="none")
    assert summary.done == len(folder) and not summary.problems
    library.export(tmp_path / "index.json")
    scanned = {d["path"]: d for d in json.loads((tmp_path / "index.json").read_text())}

    captions = {str(p): tab[str(p)][0] for p in folder}
    assert len(set(captions.values())) > 1, "the photos should not all get the same caption"
    for p in map(str, folder):
        assert cli_captions[p]["text"] == captions[p] == scanned[p]["caption"], p
        top = for_task("classify").option("top").default
        from_tab = tab[p][1]
        from_cli = {l["name"]: l["score"] for l in cli_labels[p]["labels"]}
        from_scan = {l["name"]: l["score"] for l in scanned[p]["labels"]}
        assert len(from_tab) == len(from_cli) == len(from_scan) == top, p
        assert list(from_tab) == list(from_cli) == list(from_scan), p
        for name in from_tab:
            assert abs(from_tab[name] - from_cli[name]) <= 1e-6 and abs(from_tab[name] - from_scan[name]) <= 1e-6, (
                p, name, from_tab[name], from_cli[name], from_scan[name])


def test_the_scan_and_the_request_path_prepare_identical_tensors(installed, folder):
    """The tensor level, for the photos where the old scan resampled: the scanner's loader
    step (`engine.prepare` on the path) equals what the UI and CLI hand the model."""
    import torch

    from engine import get_engine
    from engine.inference import load_photo
    from engine.models.registry import for_task

    engine = get_engine()
    for task in ("caption", "classify"):
        options = for_task(task).check_options()
        size = engine.model(task).input_size
        for p in folder:
            from_path = engine.prepare(task, p, options)
            from_image = engine.prepare(task, load_photo(size, p), options)
            a = from_path["pixel_values"] if task == "caption" else from_path
            b = from_image["pixel_values"] if task == "caption" else from_image
            assert torch.equal(a, b), (task, p.name)
    # the decode size is the model's own (its processor / transforms), and JPEG drafting picks
    # the smallest scale that stays at or above it: for the real models' sizes, a 12 MP JPEG
    # reaches the classifier (256) at 1/8 (500x375) and the captioner (384) at 1/4 (1000x750)
    big = folder[1]
    assert engine.model("classify").input_size == 256  # the tiny ResNet uses the real transforms
    from tiny_models import IMAGE_SIZE

    assert engine.model("caption").input_size == IMAGE_SIZE  # read from the tiny processor's config
    assert engine.decode("classify", big).size == load_photo(256, big).size == (500, 375)
    assert load_photo(384, big).size == (1000, 750)
