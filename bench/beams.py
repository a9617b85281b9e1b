"""Beam search with the photo's cross-attention kept once per photo (engine/models/blip_beams.py)
against transformers' own (per beam, reordered every step), alternated in one process.

    .venv/bin/python -m bench.beams                      # int8 and fp32, batch 1 and 8, 1 and 3 beams
    .venv/bin/python -m bench.beams --profile            # torch.profiler, one batch of 8, 3 beams x 12, int8
    .venv/bin/python -m bench.beams --busy               # one core busy: torch's default threads vs cpu_share's
    .venv/bin/python -m bench.beams --scales             # int8 decoder: one activation scale per beam vs per photo

Full-size BLIP with random weights (bench/.cache), the engine's own Captioner (int8 cache built
beside the weights at the first int8 load). Prints wall and CPU seconds per photo (medians of
`--repeats`), their ratio, and whether the token ids are equal.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

from bench import fixtures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", action="store_true")
    p.add_argument("--busy", action="store_true",
                   help="beside a CPU-bound neighbour: torch's default threads vs engine.cpu_share's, one photo at a time")
    p.add_argument("--scales", action="store_true",
                   help="int8: the decoder's activation scale per caption candidate vs per photo (what ships)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precisions", default="int8,fp32")
    p.add_argument("--work", default="8x3,1x3,8x1,1x1", help="batch x beams, comma-separated")
    p.add_argument("--tokens", type=int, default=12)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    from engine.device import Placement
    from engine.models.blip_beams import SharedImageCache
    from engine.models.captioner import Captioner

    if args.threads:
        torch.set_num_threads(args.threads)
    fixtures.ensure_models()
    folder = fixtures.MODELS / "blip-base"
    torch.manual_seed(0)
    px = torch.randn(8, 3, 384, 384)

    def gen(cap, x, beams, shared):
        extra = {"past_key_values": SharedImageCache(beams)} if shared and beams > 1 else {}
        with torch.inference_mode():
            return cap.model.generate(pixel_values=x, num_beams=beams, max_new_tokens=args.tokens,
                                      min_new_tokens=args.tokens, **extra)

    if args.scales:
        args.precisions = "int8"
    caps = {prec: Captioner.load(folder, Placement("cpu", prec)) for prec in args.precisions.split(",")}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        cap = caps.get("int8") or next(iter(caps.values()))
        for shared in (False, True):
            gen(cap, px[:1], 3, shared)  # warm
            t, c = time.perf_counter(), time.process_time()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                gen(cap, px, 3, shared)
            print(f"\n== {'shared per photo' if shared else 'transformers per beam'}: batch 8, 3 beams x "
                  f"{args.tokens}: {time.perf_counter() - t:.1f} s wall, {time.process_time() - c:.1f} CPU-s")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
        return
    if args.busy:
        busy(caps, px, gen, args)
        return
    if args.scales:
        scales(caps["int8"], px, args)
        return
    work = [tuple(int(v) for v in w.split("x")) for w in args.work.split(",")]
    times: dict = {}
    for _ in range(args.repeats):  # alternated: a busy neighbour slows both alike
        for prec, cap in caps.items():
            for batch, beams in work:
                outs = {}
                for shared in ((False, True) if beams > 1 else (False,)):
                    t, c = time.perf_counter(), time.process_time()
                    outs[shared] = gen(cap, px[:batch], beams, shared)
                    key = (prec, batch, beams, shared)
                    times.setdefault(key, []).append(((time.perf_counter() - t) / batch, (time.process_time() - c) / batch))
                if beams > 1:
                    times.setdefault((prec, batch, beams, "equal"), []).append(torch.equal(outs[False], outs[True]))
    print(f"s/photo, {torch.get_num_threads()} torch threads, {args.tokens} tokens, median of {args.repeats} "
          f"(wall / CPU); ratio = per beam / shared, pairwise median")
    for prec in caps:
        for batch, beams in work:
            base = times[(prec, batch, beams, False)]
            line = f"{prec:5} batch {batch} x {beams} beams: per beam {statistics.median(w for w, _ in base):.2f} / {statistics.median(c for _, c in base):.2f}"
            if beams > 1:
                new = times[(prec, batch, beams, True)]
                ratio = statistics.median(a[0] / b[0] for a, b in zip(base, new))
                line += (f"  shared {statistics.median(w for w, _ in new):.2f} / {statistics.median(c for _, c in new):.2f}"
                         f"  {ratio:.2f}x  tokens equal: {all(times[(prec, batch, beams, 'equal')])}")
            print(line, flush=True)


def scales(cap, px, args) -> None:
    """int8, 3 beams: the decoder's layers with one activation scale per caption candidate (a
    kernel call per beam: the class's own generate, unwrapped) against one per photo
    (`blip_beams.one_scale_per_photo`, what ships), alternated; tokens compared."""
    import torch

    from engine.models.blip_beams import SharedImageCache

    def run(batch, per_photo):
        generate = cap.model.generate if per_photo else type(cap.model).generate.__get__(cap.model)
        with torch.inference_mode():
            return generate(pixel_values=px[:batch], num_beams=3, max_new_tokens=args.tokens,
                            min_new_tokens=args.tokens, past_key_values=SharedImageCache(3))

    for batch in (1, 4):
        run(batch, True)  # warm
        times: dict = {True: [], False: []}
        equal = []
        for _ in range(args.repeats):
            outs = {}
            for per_photo in (False, True):
                t = time.perf_counter()
                outs[per_photo] = run(batch, per_photo)
                times[per_photo].append((time.perf_counter() - t) / batch)
            equal.append(torch.equal(outs[False], outs[True]))
        a, b = statistics.median(times[False]), statistics.median(times[True])
        print(f"int8 batch {batch} x 3 beams x {args.tokens}: scale per beam {a:.3f} s/photo, per photo {b:.3f}: "
              f"{a / b:.2f}x; same tokens in {sum(equal)} of {len(equal)}", flush=True)


def busy(caps: dict, px, gen, args) -> None:
    """Caption tab as shipped (one photo, 3 beams) with a CPU-bound neighbour on one core:
    torch's default thread count against the count engine.cpu_share fits, alternated."""
    import subprocess
    import sys

    import torch

    from engine.cpu_share import fit_threads

    default = torch.get_num_threads()
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    times: dict = {}
    try:
        for prec, cap in caps.items():
            gen(cap, px[:1], 3, True)  # warm
            for _ in range(args.repeats):
                for how in ("default", "fitted"):
                    if how == "default":
                        torch.set_num_threads(default)
                        n = default
                    else:
                        n = fit_threads()
                    t = time.perf_counter()
                    gen(cap, px[:1], 3, True)
                    times.setdefault((prec, how), []).append((time.perf_counter() - t, n))
    finally:
        neighbour.kill()
        neighbour.wait()
    print(f"one core busy (a neighbour process), 1 photo x 3 beams x {args.tokens} tokens, wall s, median of {args.repeats}")
    for prec in caps:
        a, b = times[(prec, "default")], times[(prec, "fitted")]
        ratio = statistics.median(x[0] / y[0] for x, y in zip(a, b))
        print(f"{prec:5} default {default} threads {statistics.median(x for x, _ in a):.2f} s, fitted "
              f"({', '.join(str(n) for _, n in b)} threads) {statistics.median(x for x, _ in b):.2f} s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
