"""The model registry: every model Loupe runs, as one spec each.

A spec says where the weights come from (pinned), which class loads them, what size the model
looks at, and which options it takes with their defaults and limits. The engine, the CLI (help,
validation), the UI (controls), the library scanner, the bench and `loupe models` all read
their facts from here; adding a model is one spec below and one module beside this one.

Nothing heavy is imported here: the loader class is named as "module:Class" and imported on
first use.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import UsageError
from .spec import NATIVE_BF16, X86_AVX2, X86_VNNI, ModelSpec, Option, Source, WeightFile

__all__ = ["MODELS", "TASKS", "ModelSpec", "Option", "Source", "WeightFile", "for_task", "by_name", "lookup",
           "split_options"]


# Pinned from the public repositories. Salesforce/blip-image-captioning-base has no safetensors
# file at this commit, so its pickle is loaded with weights_only=True.
BLIP_BASE = ModelSpec(
    name="blip-base",
    task="caption",
    title="BLIP image captioning (base)",
    summary="Describe photos in a sentence (BLIP).",
    source=Source(
        name="blip-base",
        title="BLIP image captioning (base)",
        kind="hf",
        repo="Salesforce/blip-image-captioning-base",
        revision="82a37760796d32b1411fe092ab5d4e227313294b",
        files=(
            WeightFile("config.json", 4563, "f7846f82f4e2c4a2ccbab9ae8b0e44873540a271a76a1288effd078180c13a82"),
            WeightFile("preprocessor_config.json", 287, "065c10ec97edc5081fbd9655b3d9d25e2647ea6d5dab873325e88eed12d80a7d"),
            WeightFile("special_tokens_map.json", 125, "b6d346be366a7d1d48332dbc9fdf3bf8960b5d879522b7799ddba59e76237ee3"),
            WeightFile("tokenizer.json", 711396, "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66"),
            WeightFile("tokenizer_config.json", 506, "5c7f96096284c55e539eff95f4451c19efc34258ddb975a4400d052b77301e5e"),
            WeightFile("vocab.txt", 231508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
            WeightFile("pytorch_model.bin", 989820849, "d6638651a5526cc2ede56f2b5104d6851b0755816d220e5e046870430180c767"),
        ),
    ),
    loader="engine.models.captioner:Captioner",
    batch_size=8,
    license="BSD-3-Clause",
    # int8 on every x86 class: the bench's fastest as shipped (one photo with beams, per photo
    # scale) at the fidelity gate, on x86-avx2 (bench/README.md "int8") and on a native-bf16 CPU
    # whose int8 kernels use AVX-512 VNNI, where it beat bf16 in the Caption tab and the scan
    # (bench/README.md "Precision on CPUs with native bf16"). Not measured: CPUs with AMX.
    precisions={NATIVE_BF16: "int8", X86_AVX2: "int8", X86_VNNI: "int8"},
    supported=("fp32", "bf16", "int8"),
    # int8 layers take one activation scale per photo, so batching photos saves the beam-search
    # decoder nothing: one photo per pass, two such passes side by side on one thread each
    # (Engine.side_by_side). bf16 and fp32 gain from batches and keep batch_size, the most a
    # scan's batch grows to (engine/stopping.py sizes them for Stop).
    # Measured: bench/README.md, "Batch size per setting", "Photos side by side".
    batch_sizes={("int8", True): 1},
    options=(
        Option("prefix", "Start the caption with", str, None, maximum=200, cli="--prefix",
               help='Text every caption starts with (conditional captioning), e.g. "a photograph of"'),
        Option("max_new_tokens", "Longest caption", int, 30, minimum=1, maximum=60, cli="--max-tokens",
               help="How long a caption may get (30 is about 20 words)"),
        Option("num_beams", "Caption quality", int, 3, minimum=1, maximum=8, cli="--beams",
               help="1 is fastest; higher weighs more ways of wording each caption (slower)"),
    ),
)

RESNET18 = ModelSpec(
    name="resnet18",
    task="classify",
    title="ResNet-18 labeller: 1,000 kinds of things (torchvision ImageNet weights)",
    summary="Name what is in photos: 1,000 kinds of animals, objects and places (ResNet-18).",
    source=Source(
        name="resnet18",
        title="ResNet-18 labeller: 1,000 kinds of things (torchvision ImageNet weights)",
        kind="url",
        base_url="https://download.pytorch.org/models",
        files=(
            WeightFile("resnet18-f37072fd.pth", 46830571, "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"),
        ),
    ),
    loader="engine.models.classifier:Classifier",
    batch_size=32,
    license="BSD-3-Clause",
    # No int8 path: dynamic int8 covers Linear layers only, and ResNet is convolutions.
    precisions={NATIVE_BF16: "bf16"},
    options=(
        Option("top", "Labels per photo", int, 3, minimum=1, maximum=10, cli="--top",
               help="How many labels to give each photo, most likely first"),
    ),
)

# Search by meaning (issue 21). Chosen on the bench (bench/encoders.py, bench/README.md "Search"):
# the best published zero-shot quality of the candidates (76.2 % ImageNet) within the limits on
# a 2-core AVX2 CPU. Pinned at the public commit; every file's size and sha256 as published for
# that commit (model.safetensors is an LFS object: its sha256 is the hub's LFS oid).
# tokenizer.json (also in the repo) is not fetched: SiglipTokenizer reads spiece.model.
SIGLIP_BASE = ModelSpec(
    name="siglip-base",
    task="embed",
    title="SigLIP image-text encoder (base, patch 16, 224)",
    summary="Find photos by what is in them: photos and words as vectors in one space (SigLIP).",
    source=Source(
        name="siglip-base",
        title="SigLIP image-text encoder (base, patch 16, 224)",
        kind="hf",
        repo="google/siglip-base-patch16-224",
        revision="7fd15f0689c79d79e38b1c2e2e2370a7bf2761ed",
        files=(
            WeightFile("config.json", 432, "cd85b3d28829722820bcb89a2cfbb4160e55fd359249a3044da724166a8d9688"),
            WeightFile("preprocessor_config.json", 368, "d11ccb80f15d358a11bdb070e92e2d889005874b7db15823d5f10d9b2533b14a"),
            WeightFile("special_tokens_map.json", 409, "2b6a1ff67a27e0df9ac0c7d93250fc0d87431c7b366b3d5669217104f9088a26"),
            WeightFile("spiece.model", 798330, "1e5036bed065526c3c212dfbe288752391797c4bb1a284aa18c9a0b23fcaf8ec"),
            WeightFile("tokenizer_config.json", 711, "d6423dae508cc3a129d22ea443841c111832a1a73125b8f25ea8736951698bcb"),
            WeightFile("model.safetensors", 812672320, "2c63cb7d1f2e95ba501893cbb8faeb4ea9a3af295498d35097126228659c2af8"),
        ),
    ),
    loader="engine.models.encoder:Encoder",
    batch_size=8,  # the scan's batch: the encoder sees the photos the captioner sees
    license="Apache-2.0",
    # bench/README.md "Search": bf16 is the fastest where the CPU has native bf16 (cosine vs fp32
    # 1.0000 image, 0.9999 text) and adds ~440 MB; elsewhere int8 (cosine 0.9998 / 0.9992, gate
    # 0.995) adds ~340 MB with both towers loaded where fp32 adds ~755 MB (limit 700).
    precisions={NATIVE_BF16: "bf16", X86_AVX2: "int8", X86_VNNI: "int8"},
    supported=("fp32", "bf16", "int8"),
)

MODELS: tuple[ModelSpec, ...] = (BLIP_BASE, RESNET18)
TASKS: tuple[str, ...] = tuple(spec.task for spec in MODELS)
# Every model whose weights Loupe installs, verifies and imports: the scan's models and the
# search encoder. The encoder joins MODELS (and so the scan's tasks) when the scan runs in
# stages (issue 19); until then it is installed and run on its own (engine.library.vectors).
INSTALLABLE: tuple[ModelSpec, ...] = MODELS + (SIGLIP_BASE,)


def for_task(task: str) -> ModelSpec:
    """The spec that serves `task` ("caption" or "classify"); UsageError for another task."""
    for spec in MODELS:
        if spec.task == task:
            return spec
    raise UsageError(f"unknown task {task!r}; Loupe can {' or '.join(TASKS)}")


def by_name(name: str) -> ModelSpec:
    """The spec of the model called `name` (as in `loupe models`); UsageError if none."""
    for spec in INSTALLABLE:
        if spec.name == name:
            return spec
    raise UsageError(f"unknown model {name!r}; known: {', '.join(s.name for s in INSTALLABLE)}")


def lookup(key: str) -> ModelSpec:
    """The spec for a task ("caption", "embed") or a model name ("blip-base")."""
    for spec in INSTALLABLE:
        if key in (spec.task, spec.name):
            return spec
    raise UsageError(f"unknown model {key!r}; known: {', '.join(s.name for s in INSTALLABLE)}")


def split_options(options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Options for several models given together (`top=5, num_beams=1`) -> each task's own,
    checked, defaults filled in. UsageError for an option no model takes."""
    given = dict(options)
    out = {}
    for spec in MODELS:
        mine = {name: given.pop(name) for name in [o.name for o in spec.options] if name in given}
        out[spec.task] = spec.check_options(mine)
    if given:
        raise UsageError(f"unknown option(s) {', '.join(sorted(given))}")
    return out
