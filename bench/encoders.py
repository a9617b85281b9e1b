"""`python -m bench.encoders`: the image-text encoder candidates for search by meaning (issue 21),
side by side on this machine, full size with random weights.

Each candidate is built from its real config through transformers' native classes (no remote
code) and saved as safetensors under bench/.cache/encoders/NAME, as the real download would be:

- siglip-base-patch16-224 (google/siglip-base-patch16-224): SiglipConfig() defaults are that
  checkpoint's config (text 768 wide, 12 layers, vocab 32000, 64 tokens; vision B/16 at 224).
- siglip2-base-patch32-256 (google/siglip2-base-patch32-256): the fixed-resolution SigLIP 2
  checkpoints load as SiglipModel; Gemma vocabulary of 256,000, vision B/32 at 256.
- clip-vit-base-patch32 (openai/clip-vit-base-patch32): CLIPConfig() defaults are that config.

Rows, per candidate and precision (fp32; int8 = Loupe's own `engine.quantize.quantize_int8`,
Linear layers only; bf16 = the whole tower cast, on CPUs with native bf16 only): image embedding s/photo at the shipped batch (8) and one photo at a time,
text embedding ms per query (SigLIP pads every query to its 64 tokens, as it was trained; CLIP
runs a typical 16-token query), load time of each tower, memory (RSS added by each tower and
both, each in its own subprocess so the figures are that tower's alone), and the fidelity gate
(min cosine vs fp32 embeddings over 16 bench photos and 8 queries; >= 0.995 passes;
random weights: it measures int8 rounding on these shapes, not the trained model's).

The machine is shared: candidates are timed alternately in one process (round robin, medians),
and each is also quoted as a ratio to BLIP's vision encoder (int8, batch 8, the shipped scan's
own cost driver) timed in the same rounds, so the share of the shipped scan it adds is
  added = ratio x BLIP-vision s/photo (idle) / shipped scan s/photo (idle)
with the idle figures of the same CPU class from `make bench` (see SCAN_IDLE below).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .fixtures import CACHE, MODELS, PHOTOS, log
from .sysinfo import Contention, rss_mb

ENCODERS = CACHE / "encoders"
BATCH = 8  # the scan's batch (BLIP's): the encoder runs on the same decoded photos
SEED = 1234
# Idle figures on a 2-core AVX2 Zen 3 (make bench on main 3ff5258, /work/shared/field-notes.md):
# the shipped scan (3 beams x 12 tokens, caption + labels) and BLIP's vision encoder alone.
SCAN_IDLE = {"scan_s": 3.05, "blip_vision_int8_b8_s": 0.81}
LIMITS = {"added_share": 0.25, "memory_mb": 700.0, "cosine": 0.995}

# name -> (family, published ImageNet zero-shot top-1, licence, source of the figure)
CANDIDATES = {
    "siglip-base-patch16-224": ("siglip", 76.2, "Apache-2.0", "SigLIP paper (Zhai et al. 2023), table; model card"),
    "siglip2-base-patch32-256": ("siglip", 74.0, "Apache-2.0", "SigLIP 2 paper (Tschannen et al. 2025), table"),
    "clip-vit-base-patch32": ("clip", 63.2, "MIT", "CLIP paper (Radford et al. 2021), ViT-B/32 zero-shot"),
}


def config_for(name: str):
    """The candidate's real config (see the module docstring)."""
    from transformers import CLIPConfig, SiglipConfig

    if name == "siglip-base-patch16-224":
        return SiglipConfig()
    if name == "siglip2-base-patch32-256":
        return SiglipConfig(text_config={"vocab_size": 256000}, vision_config={"image_size": 256, "patch_size": 32})
    if name == "clip-vit-base-patch32":
        return CLIPConfig()
    raise KeyError(name)


def build(name: str) -> Path:
    """Save the candidate with seeded random weights (safetensors) once; its folder."""
    folder = ENCODERS / name
    if (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import CLIPModel, SiglipModel

    config = config_for(name)
    torch.manual_seed(SEED)
    cls = CLIPModel if CANDIDATES[name][0] == "clip" else SiglipModel
    model = cls(config).eval()
    model.save_pretrained(folder)
    del model
    gc.collect()
    return folder


def tower_classes(name: str):
    from transformers import (CLIPTextModelWithProjection, CLIPVisionModelWithProjection, SiglipTextModel,
                              SiglipVisionModel)

    if CANDIDATES[name][0] == "clip":
        return CLIPVisionModelWithProjection, CLIPTextModelWithProjection
    return SiglipVisionModel, SiglipTextModel


def load_tower(name: str, which: str, precision: str, *, cached_int8: bool = False):
    """(model, load seconds): the vision or text tower from the saved folder in fp32, bf16 or
    int8. `cached_int8`: as the product loads it (engine.quantize.load_int8: quantized once,
    then read from the cache beside the weights); else quantized here from fp32."""
    import torch

    from engine.quantize import empty_transformers_model, load_int8, quantize_int8

    vision_cls, text_cls = tower_classes(name)
    cls = vision_cls if which == "image" else text_cls
    folder = ENCODERS / name
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    t = time.perf_counter()
    if precision == "int8" and cached_int8:
        model = load_int8(folder, lambda: cls.from_pretrained(folder, local_files_only=True).eval(),
                          lambda: empty_transformers_model(cls, folder), name=f"int8-{which}")
    else:
        model = cls.from_pretrained(folder, local_files_only=True, dtype=dtype).eval()
        if precision == "int8":
            quantize_int8(model)
    return model.eval(), time.perf_counter() - t


def image_inputs(name: str, photos: list):
    """The bench photos through the candidate's own preprocessing: float32 [N, 3, S, S]."""
    from transformers import CLIPImageProcessor, SiglipImageProcessor

    config = config_for(name)
    size = config.vision_config.image_size
    if CANDIDATES[name][0] == "clip":
        proc = CLIPImageProcessor()  # openai/clip-vit-base-patch32's: resize 224 short side, crop 224
    else:
        proc = SiglipImageProcessor(size={"height": size, "width": size})  # squash to S x S, mean/std 0.5
    return proc(images=photos, return_tensors="pt")["pixel_values"]


def text_inputs(name: str, n: int = 8):
    """Seeded token ids shaped like real queries: SigLIP's 64 (padded to max_length, as trained),
    CLIP's 16 (a typical short query; CLIP pads to the longest in the batch)."""
    import torch

    config = config_for(name)
    g = torch.Generator().manual_seed(SEED)
    length = 64 if CANDIDATES[name][0] == "siglip" else 16
    return torch.randint(5, config.text_config.vocab_size - 1, (n, length), generator=g)


def embed_image(model, pixels):
    import torch

    dtype = next(model.parameters()).dtype if any(True for _ in model.parameters()) else torch.float32
    with torch.inference_mode():
        out = model(pixel_values=pixels.to(dtype if dtype.is_floating_point else torch.float32))
    emb = out.image_embeds if hasattr(out, "image_embeds") else out.pooler_output
    return torch.nn.functional.normalize(emb.float(), dim=-1)


def embed_text(model, ids):
    import torch

    with torch.inference_mode():
        out = model(input_ids=ids)
    emb = out.text_embeds if hasattr(out, "text_embeds") else out.pooler_output
    return torch.nn.functional.normalize(emb.float(), dim=-1)


def load_photos(n: int) -> list:
    from PIL import Image

    files = sorted((PHOTOS / "640-v5").glob("*.jpg"))[:n]
    return [Image.open(p).convert("RGB") for p in files]


def _trim() -> None:
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def memory_child(name: str, precision: str, which: str) -> dict:
    """In a fresh process: RSS added by loading `which` (image, text or both) and embedding."""
    import torch

    torch.set_num_threads(2)
    photos = load_photos(BATCH)
    pixels = image_inputs(name, photos)
    ids = text_inputs(name, 1)
    from transformers import CLIPVisionModelWithProjection  # noqa: F401  (import cost out of the figure)

    _trim()
    base = rss_mb()["VmRSS"]
    kept = []
    anon = rss_mb()["RssAnon"]
    if which in ("image", "both"):
        model, _ = load_tower(name, "image", precision, cached_int8=True)
        embed_image(model, pixels)
        kept.append(model)
    if which in ("text", "both"):
        model, _ = load_tower(name, "text", precision, cached_int8=True)
        embed_text(model, ids)
        kept.append(model)
    _trim()
    now = rss_mb()
    return {"rss_added_mb": now["VmRSS"] - base, "anon_added_mb": now["RssAnon"] - anon,
            "peak_mb": now["VmHWM"] - base}


def run_memory(name: str, precision: str, which: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.encoders", "--memory-child", name, precision, which],
                         capture_output=True, text=True, timeout=900, env=dict(os.environ, OMP_NUM_THREADS="2"))
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def blip_vision_int8():
    """BLIP's vision encoder as the shipped scan runs it on this CPU class (int8), + its inputs."""
    import torch
    from transformers import BlipForConditionalGeneration

    from engine.quantize import quantize_int8

    folder = MODELS / "blip-base"
    model = BlipForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()
    vision = quantize_int8(model.vision_model)
    del model
    _trim()
    pixels = torch.randn(BATCH, 3, 384, 384, generator=torch.Generator().manual_seed(SEED))
    return vision, pixels


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.encoders", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians are quoted)")
    p.add_argument("--only", default=",".join(CANDIDATES), help="comma list of candidates")
    p.add_argument("--precisions", default="fp32,int8,bf16",
                   help="comma list of fp32,int8,bf16 (bf16 only where the CPU has native bf16)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-tower memory subprocesses")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(*args.memory_child)))
        return

    import torch

    torch.set_num_threads(2)
    names = [n for n in args.only.split(",") if n]
    from engine.device import NATIVE_BF16, cpu_class

    precisions = [p for p in args.precisions.split(",") if p and (p != "bf16" or cpu_class() == NATIVE_BF16)]
    for n in names:
        log(f"building {n} (random weights, real config) if missing")
        build(n)
    photos = load_photos(16)
    rows: dict[tuple[str, str], dict] = {}
    towers = {}
    for n in names:
        pixels = image_inputs(n, photos)
        ids = text_inputs(n)
        for prec in precisions:
            vis, t_vis = load_tower(n, "image", prec)
            txt, t_txt = load_tower(n, "text", prec)
            towers[n, prec] = (vis, txt, pixels, ids)
            rows[n, prec] = {"candidate": n, "precision": prec, "load_image_s": t_vis, "load_text_s": t_txt,
                             "img_b8": [], "img_b1": [], "text_q": [], "others": []}
            embed_image(vis, pixels[:BATCH])  # warm-up
            embed_text(txt, ids[:1])
        # fidelity: each precision against fp32 on every bench photo and query
        f_vis, f_txt, pix, tid = towers[n, "fp32"]
        ref_img, ref_txt = embed_image(f_vis, pix), embed_text(f_txt, tid)
        for prec in precisions:
            q_vis, q_txt, _, _ = towers[n, prec]
            rows[n, prec]["cos_image_min"] = float((ref_img * embed_image(q_vis, pix)).sum(-1).min())
            rows[n, prec]["cos_text_min"] = float((ref_txt * embed_text(q_txt, tid)).sum(-1).min())
            log(f"{n} {prec}: cosine vs fp32 image {rows[n, prec]['cos_image_min']:.4f} text {rows[n, prec]['cos_text_min']:.4f}")
    log("BLIP vision encoder (int8, batch 8) as the anchor")
    blip, blip_pixels = blip_vision_int8()
    with torch.inference_mode():
        blip(pixel_values=blip_pixels)
    anchor = []
    for r in range(args.rounds):
        with torch.inference_mode():
            anchor.append(timed(lambda: blip(pixel_values=blip_pixels)) / BATCH)
        for key, (vis, txt, pixels, ids) in towers.items():
            row = rows[key]
            with Contention() as c:
                row["img_b8"].append(timed(lambda: embed_image(vis, pixels[:BATCH])) / BATCH)
                row["img_b1"].append(timed(lambda: embed_image(vis, pixels[:1])))
                row["text_q"].append(timed(lambda: embed_text(txt, ids[r % len(ids):r % len(ids) + 1])))
            row["others"].append(c.others_cores)
        log(f"round {r + 1}/{args.rounds} done")
    anchor_s = statistics.median(anchor)
    del towers, blip
    _trim()

    for (n, prec), row in rows.items():
        row["image_s_per_photo_b8"] = statistics.median(row.pop("img_b8"))
        row["image_s_b1"] = statistics.median(row.pop("img_b1"))
        row["text_ms"] = 1000 * statistics.median(row.pop("text_q"))
        row["others_cores"] = statistics.median(row.pop("others"))
        row["ratio_to_blip_vision"] = row["image_s_per_photo_b8"] / anchor_s
        row["scan_share_est"] = row["ratio_to_blip_vision"] * SCAN_IDLE["blip_vision_int8_b8_s"] / SCAN_IDLE["scan_s"]
        if not args.no_memory:
            if prec == "int8":
                run_memory(n, prec, "both")  # makes the int8 caches the product reads; not a figure
            for which in ("image", "text", "both"):
                m = run_memory(n, prec, which)
                row[f"rss_{which}_mb"] = m["rss_added_mb"]
                row[f"anon_{which}_mb"] = m["anon_added_mb"]
                row[f"peak_{which}_mb"] = m["peak_mb"]
            log(f"{n} {prec}: memory measured")
    print_table(rows.values(), anchor_s)
    if args.json:
        args.json.write_text(json.dumps({"anchor_blip_vision_int8_b8_s": anchor_s, "rows": list(rows.values())}, indent=2))


def print_table(rows, anchor_s: float) -> None:
    cpu = _cpu()
    print(f"\nImage-text encoders, full size, random weights; {cpu}; machine shared: medians of alternating rounds")
    print(f"BLIP vision int8 batch 8 in the same rounds: {anchor_s:.3f} s/photo (idle reference {SCAN_IDLE['blip_vision_int8_b8_s']})")
    head = ("candidate", "prec", "ImNet%", "img s/ph b8", "img s b1", "text ms", "x BLIPvis", "scan +%",
            "load img s", "load txt s", "RSS img MB", "RSS txt MB", "RSS both MB", "anon both MB", "peak both", "cos img", "cos txt", "others")
    print(" | ".join(head))
    for r in rows:
        fam, top1, lic, _ = CANDIDATES[r["candidate"]]
        cells = (r["candidate"], r["precision"], f"{top1:.1f}", f"{r['image_s_per_photo_b8']:.3f}", f"{r['image_s_b1']:.3f}",
                 f"{r['text_ms']:.0f}", f"{r['ratio_to_blip_vision']:.2f}", f"{100 * r['scan_share_est']:.1f}",
                 f"{r['load_image_s']:.1f}", f"{r['load_text_s']:.1f}",
                 *(f"{r[k]:.0f}" if k in r else "-" for k in ("rss_image_mb", "rss_text_mb", "rss_both_mb", "anon_both_mb", "peak_both_mb")),
                 f"{r['cos_image_min']:.4f}", f"{r['cos_text_min']:.4f}", f"{r['others_cores']:.1f}")
        print(" | ".join(cells))
    print(f"limits: scan +{100 * LIMITS['added_share']:.0f}% (of {SCAN_IDLE['scan_s']} s/photo shipped), "
          f"{LIMITS['memory_mb']:.0f} MB added with all models loaded, int8 cosine >= {LIMITS['cosine']}")


def _cpu() -> str:
    from engine.device import cpu_class

    return f"{os.cpu_count()} cores, CPU class {cpu_class()}"


if __name__ == "__main__":
    main()
