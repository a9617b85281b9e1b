"""What the benchmark runs on, built locally and cached under bench/.cache (git-ignored).

- BLIP with the real shapes of Salesforce/blip-image-captioning-base and random weights,
  installed into a Loupe home exactly as `weights._commit` would leave it (manifest included),
  plus a LOUPE_SOURCES file whose sizes and sha256 match, so `Engine`, `loupe caption` and
  `Captioner.load(folder, placement)` all load it as if it were the real download.
- torchvision `resnet18()` with random weights, saved as a state dict, installed the same way.
- Photo-like JPEGs: 4000x3000 (12 MP, quality 90) and 640x480.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from engine.weights import sha256_file

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / ".cache"
HOME = CACHE / "home"  # LOUPE_HOME for every Loupe process the benchmark starts
MODELS = HOME / "data" / "models"
SOURCES_JSON = CACHE / "sources.json"
PHOTOS = CACHE / "photos"
SEED = 1234
FORMAT = 4  # bump when the models built here change, to rebuild them
PHOTO_FORMAT = 5  # the same for the photos

# config.json of Salesforce/blip-image-captioning-base (revision 82a3776). BlipConfig()'s
# defaults differ from it: text num_attention_heads 8 (here 12) and vision initializer_range
# 1e-10 (here 0.02). Shapes would be the same, so a wrong value would load silently.
BLIP_CONFIG = {
    "architectures": ["BlipForConditionalGeneration"],
    "image_text_hidden_size": 256,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "logit_scale_init_value": 2.6592,
    "model_type": "blip",
    "projection_dim": 512,
    "label_smoothing": 0.0,
    "text_config": {
        "attention_probs_dropout_prob": 0.0,
        "bos_token_id": 30522,
        "encoder_hidden_size": 768,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "hidden_size": 768,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": 3072,
        "is_decoder": True,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "model_type": "blip_text_model",
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "pad_token_id": 0,
        "projection_dim": 768,
        "sep_token_id": 102,
        "use_cache": True,
        "vocab_size": 30524,
    },
    "vision_config": {
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "hidden_act": "gelu",
        "hidden_size": 768,
        "image_size": 384,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": 3072,
        "layer_norm_eps": 1e-05,
        "model_type": "blip_vision_model",
        "num_attention_heads": 12,
        "num_channels": 3,
        "num_hidden_layers": 12,
        "patch_size": 16,
        "projection_dim": 512,
    },
}
BERT_VOCAB = 30522  # bert-base-uncased; BLIP adds [DEC] (bos, 30522) and [ENC] (30523)


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# --------------------------------------------------------------------------- BLIP


def _vocab() -> list[str]:
    """A BERT-style vocabulary of the real size; the words are made up (timing only)."""
    import random

    rng = random.Random(SEED)
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = "abcdefghijklmnopqrstuvwxyz"
    seen = set(tokens)
    tokens += [c for c in letters + "0123456789.,'-!?"]
    seen.update(tokens)
    while len(tokens) < BERT_VOCAB:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(2, 9)))
        if rng.random() < 0.3:
            word = "##" + word
        if word not in seen:
            seen.add(word)
            tokens.append(word)
    return tokens


def build_blip(folder: Path) -> None:
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(_vocab())}, do_lower_case=True,
                              model_max_length=512)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    assert len(tokenizer) == BLIP_CONFIG["text_config"]["vocab_size"], len(tokenizer)
    assert tokenizer.convert_tokens_to_ids("[DEC]") == 30522 and tokenizer.sep_token_id == 102
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 384, "width": 384}), tokenizer=tokenizer)
    processor.save_pretrained(folder)

    torch.manual_seed(SEED)
    config = BlipConfig(**BLIP_CONFIG)
    assert config.text_config.num_attention_heads == 12 and config.vision_config.initializer_range == 0.02
    model = BlipForConditionalGeneration(config).eval()
    # Every path must do the same work: 20 new tokens for every photo. A trained model stops
    # at [SEP]; this random one is kept from ever choosing it (the paths also pass
    # min_new_tokens where they can, but `loupe caption` cannot be told to).
    with torch.no_grad():
        model.text_decoder.cls.predictions.bias[config.text_config.sep_token_id] = -1e4
    config.save_pretrained(folder)
    # The real checkpoint is a 990 MB pickle (pytorch_model.bin), loaded with weights_only;
    # save the same format so load time and memory are like the real thing.
    # It also stores the LM head tied to the word embeddings as a second copy (hence 990 MB).
    state = model.state_dict()
    state["text_decoder.cls.predictions.decoder.weight"] = state["text_decoder.cls.predictions.decoder.weight"].clone()
    torch.save(state, folder / "pytorch_model.bin")


# --------------------------------------------------------------------------- ResNet


def build_resnet(folder: Path) -> None:
    import torch
    from torchvision.models import resnet18

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    torch.save(resnet18().state_dict(), folder / "resnet18-f37072fd.pth")


# --------------------------------------------------------------------------- install


def _install(name: str, folder: Path, revision: str) -> dict:
    """Write the manifest `weights._commit` writes and return the LOUPE_SOURCES entry."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    entry = {"files": [{"name": p.name, "size": p.stat().st_size, "sha256": sha256_file(p)} for p in files]}
    manifest = {
        "name": name,
        "revision": revision,
        "files": {f["name"]: f["sha256"] for f in entry["files"]},
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (folder / ".loupe-weights.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return entry


def ensure_models() -> None:
    stamp = CACHE / f".models-v{FORMAT}"
    if stamp.exists() and SOURCES_JSON.exists():
        return
    started = time.perf_counter()
    log("building full-size random BLIP-base and ResNet-18 (once; cached in bench/.cache)")
    build_blip(MODELS / "blip-base")
    build_resnet(MODELS / "resnet18")
    blip = _install("blip-base", MODELS / "blip-base", "bench-random")
    blip.update(title="BLIP-base shapes, random weights (bench)", revision="0" * 40)
    resnet = _install("resnet18", MODELS / "resnet18", "bench-random")
    resnet.update(title="ResNet-18, random weights (bench)")
    SOURCES_JSON.write_text(json.dumps({"blip-base": blip, "resnet18": resnet}, indent=2), encoding="utf-8")
    stamp.touch()
    log(f"models ready in {time.perf_counter() - started:.0f} s")


def env() -> dict[str, str]:
    """Environment for every Loupe process: its own home, the bench weights, offline."""
    out = dict(os.environ)
    out.update(
        LOUPE_HOME=str(HOME),
        LOUPE_SOURCES=str(SOURCES_JSON),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        GRADIO_ANALYTICS_ENABLED="False",
        TRANSFORMERS_VERBOSITY="error",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT.parent), os.environ.get("PYTHONPATH")])),
    )
    out.pop("LOUPE_PRECISION", None)
    out.pop("LOUPE_DEVICE", None)
    return out


# --------------------------------------------------------------------------- photos


def _photo(rng, width: int, height: int):
    """A photo-like picture: smooth sky/ground gradients, soft blobs of colour, object-like
    shapes with edges, texture at several scales and sensor grain (JPEG entropy like a real
    photo's: a 12-MP one at quality 90 is a few MB)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    w0, h0 = width // 8, height // 8
    y = np.linspace(0, 1, h0)[:, None, None]
    sky = rng.uniform(60, 230, 3)
    ground = rng.uniform(20, 160, 3)
    horizon = rng.uniform(0.3, 0.7)
    base = np.where(y < horizon, sky * (0.7 + 0.3 * y / horizon), ground * (1.2 - 0.4 * y))
    base = np.broadcast_to(base, (h0, w0, 3)).copy()
    small = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(small)
    for _ in range(rng.integers(6, 14)):
        x, yy = rng.integers(0, w0), rng.integers(0, h0)
        r = int(rng.integers(max(2, w0 // 30), max(3, w0 // 5)))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse([x - r, yy - r, x + r, yy + r], fill=colour)
        else:
            draw.polygon([(x + int(rng.integers(-r, r)), yy + int(rng.integers(-r, r))) for _ in range(5)], fill=colour)
    small = small.filter(ImageFilter.GaussianBlur(0.6))
    img = np.asarray(small.resize((width, height), Image.BICUBIC), dtype=np.float32)
    for scale, amp in ((64, 10.0), (16, 8.0), (4, 6.0)):
        n = rng.normal(0, amp, (height // scale + 1, width // scale + 1, 1)).astype(np.float32)
        n = np.asarray(Image.fromarray(n[:, :, 0], mode="F").resize((width, height), Image.BILINEAR))
        img += n[:, :, None]
    # Grain sets the entropy, hence the file size (12 MP: ~3 MB, like a phone's at quality 90),
    # and the file size sets the decode time: Huffman decoding is not skipped by Image.draft.
    img += rng.normal(0, 7.0, (height, width, 3)).astype(np.float32)
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def ensure_photos(count: int) -> dict[str, list[Path]]:
    import numpy as np

    out = {}
    for label, (w, h) in (("12mp", (4000, 3000)), ("640", (640, 480))):
        folder = PHOTOS / f"{label}-v{PHOTO_FORMAT}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        made = 0
        started = time.perf_counter()
        for i in range(count):
            p = folder / f"photo-{i:03d}.jpg"
            if not p.exists():
                rng = np.random.default_rng(SEED + i)
                tmp = p.with_suffix(".tmp")
                _photo(rng, w, h).save(tmp, "JPEG", quality=90)
                os.replace(tmp, p)
                made += 1
            paths.append(p)
        if made:
            log(f"made {made} {w}x{h} JPEGs in {time.perf_counter() - started:.0f} s")
        out[label] = paths
    return out


def scan_folder(photos: list[Path], n: int) -> Path:
    """A folder holding only the first n photos (hard links), for the library scan."""
    folder = CACHE / f"scan-{photos[0].parent.name}-{n}"
    folder.mkdir(parents=True, exist_ok=True)
    for p in photos[:n]:
        target = folder / p.name
        if not target.exists():
            try:
                os.link(p, target)
            except OSError:
                import shutil

                shutil.copyfile(p, target)
    return folder


# --------------------------------------------------------------------------- real photos


def real_photos(n: int = 25) -> list[tuple[str, "object"]]:
    """n real photos for fidelity checks, offline: scikit-image's bundled colour photos, each
    whole and as three crops (other framing, often another top-1 for a classifier), in order.
    Returns [(name, PIL RGB image)]; ValueError when n is more than there are (28)."""
    from PIL import Image
    from skimage import data

    sources = [("astronaut", data.astronaut()), ("chelsea", data.chelsea()), ("coffee", data.coffee()),
               ("rocket", data.rocket()), ("motorcycle", data.stereo_motorcycle()[0]),
               ("immunohistochemistry", data.immunohistochemistry()), ("hubble", data.hubble_deep_field())]
    out = []
    for name, arr in sources:
        im = Image.fromarray(arr).convert("RGB")
        w, h = im.size
        out += [(name, im), (f"{name}-topleft", im.crop((0, 0, w * 2 // 3, h * 2 // 3))),
                (f"{name}-bottomright", im.crop((w // 3, h // 3, w, h))),
                (f"{name}-centre", im.crop((w // 4, h // 4, w * 3 // 4, h * 3 // 4)))]
    if n > len(out):
        raise ValueError(f"only {len(out)} real photo views")
    return out[:n]
