"""The int8 path's variants side by side in one process.

    .venv/bin/python -m bench.int8_variants            # fp32 / int8 per call / per row / vision only

(Beams sharing the photo against transformers' beam search: `python -m bench.beams`.)

Full-size BLIP with random weights (bench/.cache, built by `make bench`), one torch thread
(`--threads`), CPU seconds per photo, best of 2 (CPU time: robust on a shared machine).
Prints whether a photo's vision features and caption are the same alone as in a batch of 8.
Not part of the table `make bench` prints: these are the measurements behind two choices
(bench/README.md, "One scale per photo" and "Beams share").
"""
from __future__ import annotations

import argparse
import copy
import time
import warnings

from bench import fixtures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    import torch
    import torch.ao.nn.quantized.dynamic as nnqd
    from torch.ao.quantization import per_channel_dynamic_qconfig
    from transformers import BlipForConditionalGeneration

    from engine.int8_layers import RowwiseInt8Linear
    from engine.models.captioner import _fuse_vision_attention

    torch.set_num_threads(args.threads)
    fixtures.ensure_models()
    base = BlipForConditionalGeneration.from_pretrained(fixtures.MODELS / "blip-base").eval()
    _fuse_vision_attention(base)
    torch.manual_seed(0)
    size = base.config.vision_config.image_size  # 384 for BLIP-base
    px = torch.randn(8, 3, size, size)

    def q(module, cls):
        torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                               dtype=torch.qint8, mapping={torch.nn.Linear: cls}, inplace=True)

    def gen(m, x, beams, tokens):
        with torch.inference_mode():
            return m.generate(pixel_values=x, num_beams=beams, max_new_tokens=tokens, min_new_tokens=tokens)

    def enc(m, x):
        with torch.inference_mode():
            return m.vision_model(pixel_values=x)[0]

    variants = {"fp32": base}
    m = copy.deepcopy(base); q(m, nnqd.Linear); variants["int8 per call"] = m
    m = copy.deepcopy(base); q(m, RowwiseInt8Linear); variants["int8 per row"] = m
    m = copy.deepcopy(base); q(m.vision_model, RowwiseInt8Linear); variants["int8 vision per row, decoder fp32"] = m
    work = [("vision encoder, batch 8", lambda m: enc(m, px), 8),
            ("scan as shipped, batch 8, 3 beams x 12", lambda m: gen(m, px, 3, 12), 8),
            ("fixed work, batch 8, 20 greedy", lambda m: gen(m, px, 1, 20), 8),
            ("Caption tab as shipped, 1 photo, 3 beams x 12", lambda m: gen(m, px[:1], 3, 12), 1)]
    best: dict = {}
    outs: dict = {}
    for _ in range(2):  # alternated: a busy neighbour slows every variant alike
        for what, fn, n in work:
            for name, model in variants.items():
                t = time.process_time()
                outs[(what, name)] = fn(model)
                cpu = (time.process_time() - t) / n
                best[(what, name)] = min(cpu, best.get((what, name), cpu))
    first = next(iter(variants))
    print(f"CPU-s per photo, {args.threads} torch thread(s), best of 2; ratio = {first} / this")
    for what, _, _ in work:
        print(what)
        for name in variants:
            ratio = best[(what, first)] / best[(what, name)]
            print(f"  {name:36} {best[(what, name)]:6.2f}  {ratio:.2f}x")
    print("photo 0 alone vs in a batch of 8: vision max |diff|, caption (3 beams x 12) equal")
    for name, model in variants.items():
        diff = (enc(model, px[:1])[0] - enc(model, px)[0]).abs().max().item()
        equal = torch.equal(gen(model, px[:1], 3, 12)[0], gen(model, px, 3, 12)[0])
        print(f"  {name:36} {diff:.2e}  {equal}")


if __name__ == "__main__":
    main()
