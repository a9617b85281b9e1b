"""Tiny stand-ins for the real weights, built on the fly with seeded random weights.

The tiny BLIP folder holds the same file names as Salesforce/blip-image-captioning-base at the
pinned revision (config.json, preprocessor_config.json, special_tokens_map.json, tokenizer.json,
tokenizer_config.json, vocab.txt, pytorch_model.bin: a pickle, no safetensors), so the download
and load paths are the real ones. The tiny ResNet is a full-size torchvision resnet18 state dict
with random weights (~47 MB), saved under the real file name. The tiny SigLIP encoder holds the
file names of google/siglip-base-patch16-224 at its pinned revision (config.json,
preprocessor_config.json, special_tokens_map.json, spiece.model, tokenizer_config.json,
model.safetensors), with a sentencepiece vocabulary trained here on the tiny word list. Builds
are byte-for-byte deterministic (same sha256 on every build, across processes).
"""
from __future__ import annotations

import json
from pathlib import Path

BLIP_REPO = "Salesforce/blip-image-captioning-base"
# The pinned revision of the real table (engine.weights.SOURCES["blip-base"].revision).
REVISION = "82a37760796d32b1411fe092ab5d4e227313294b"
RESNET_FILE = "resnet18-f37072fd.pth"
SIGLIP_REPO = "google/siglip-base-patch16-224"
# The pinned revision of the real table (engine.models.registry.SIGLIP_BASE).
SIGLIP_REVISION = "7fd15f0689c79d79e38b1c2e2e2370a7bf2761ed"
SIGLIP_FILES = (
    "config.json",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "spiece.model",
    "tokenizer_config.json",
    "model.safetensors",
)

# The file names of the real repo at REVISION, in the real table's order.
BLIP_FILES = (
    "config.json",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "pytorch_model.bin",
)

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# The real vocab's "[unusedN]" slots are plain entries (not special tokens): keep two, so
# tests can check that none ever reaches a caption.
_UNUSED = ["[unused0]", "[unused16]"]
_WORDS = (
    "a an the cat dog bird man woman child car bus tree sky water house ball table chair "
    "field road beach flower boat horse red blue green white black small large sitting "
    "standing on in of with and near next to under grass snow"
).split()
_DEC = "[DEC]"  # BLIP's decoder start token (bos); the real tokenizer has it at id 30522
SEED = 1234
IMAGE_SIZE = 32


def _vocab() -> dict[str, int]:
    tokens = _SPECIAL + _WORDS + ["##s", "##ing", "##ed", ".", ","] + _UNUSED
    return {t: i for i, t in enumerate(tokens)}


def build_tiny_blip(dst: Path) -> Path:
    """A tiny BlipForConditionalGeneration + BlipProcessor saved into `dst` (created)."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
    )

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)

    vocab = _vocab()
    # transformers v5: `vocab=` (dict or path); `vocab_file=` is silently ignored.
    tok = BertTokenizer(vocab=dict(vocab), do_lower_case=True, model_max_length=512)
    tok.add_special_tokens({"bos_token": _DEC})
    bos, sep, pad = tok.bos_token_id, tok.sep_token_id, tok.pad_token_id
    assert (bos, sep, pad) == (len(vocab), vocab["[SEP]"], vocab["[PAD]"]), (bos, sep, pad)

    image_processor = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})

    config = BlipConfig(
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=IMAGE_SIZE, patch_size=16, initializer_range=0.2,
        ),
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=64,
            initializer_range=0.2,  # default 0.02 gives the same caption for every image
            bos_token_id=bos, sep_token_id=sep, pad_token_id=pad, eos_token_id=sep,
        ),
        projection_dim=32,
    )
    torch.manual_seed(SEED)
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(dst)

    # The real repo ships a pickle (pytorch_model.bin) and no safetensors or generation config;
    # transformers 5 has no `safe_serialization=False`, so convert what save_pretrained wrote
    # (its tied-weight handling included) into a plain state-dict pickle.
    from safetensors.torch import load_file

    safe = dst / "model.safetensors"
    state = load_file(str(safe))
    torch.save({k: state[k] for k in sorted(state)}, dst / "pytorch_model.bin")
    safe.unlink()
    (dst / "generation_config.json").unlink(missing_ok=True)

    # The processor's parts as separate files, like the real repo (no processor_config.json).
    image_processor.save_pretrained(dst)
    tok.save_pretrained(dst)
    (dst / "vocab.txt").write_text("".join(t + "\n" for t in sorted(vocab, key=vocab.get)), encoding="utf-8")
    special = {"bos_token": _DEC, "cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]",
               "sep_token": "[SEP]", "unk_token": "[UNK]"}
    (dst / "special_tokens_map.json").write_text(json.dumps(special, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    # Keep the folder to exactly the real repo's file names.
    for extra in dst.iterdir():
        if extra.is_file() and extra.name not in BLIP_FILES:
            extra.unlink()
    missing = [n for n in BLIP_FILES if not (dst / n).is_file()]
    assert not missing, f"tiny BLIP lacks {missing}"
    return dst


def build_tiny_resnet(dst_file: Path) -> Path:
    """A torchvision resnet18(num_classes=1000) with seeded random weights, as a plain state dict."""
    import torch
    from torchvision.models import resnet18

    dst_file = Path(dst_file)
    dst_file.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    model = resnet18(weights=None, num_classes=1000)
    # torch.save names the archive's root folder after the file: same name, same bytes.
    torch.save(model.state_dict(), dst_file)
    return dst_file


def build_tiny_siglip(dst: Path) -> Path:
    """A tiny SiglipModel + SiglipTokenizer + SiglipImageProcessor saved into `dst` (created),
    under exactly the real repo's file names."""
    import io

    import sentencepiece as spm
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipTokenizer

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    # A word-level vocabulary of the tiny word list; ids as the real spiece.model lays them out
    # (pad 0 "<pad>", eos 1 "</s>", unk 2 "<unk>"). One thread: the same bytes on every build.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(_WORDS)] * 4 + _WORDS), model_writer=model, model_type="word",
        vocab_size=len(_WORDS) + 3, hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        num_threads=1, minloglevel=2)
    (dst / "spiece.model").write_bytes(model.getvalue())
    tok = SiglipTokenizer(vocab_file=str(dst / "spiece.model"), model_max_length=64)
    tok.save_pretrained(dst)
    (dst / "spiece.model").write_bytes(model.getvalue())  # the trained bytes, whatever save wrote
    special = {"eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"}
    (dst / "special_tokens_map.json").write_text(json.dumps(special, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(dst)

    config = SiglipConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64,
                         pad_token_id=1, bos_token_id=1, eos_token_id=1),  # the tiny vocab's </s>
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=IMAGE_SIZE, patch_size=8),
    )
    torch.manual_seed(SEED)
    SiglipModel(config).eval().save_pretrained(dst)
    for extra in dst.iterdir():
        if extra.is_file() and extra.name not in SIGLIP_FILES:
            extra.unlink()
    missing = [n for n in SIGLIP_FILES if not (dst / n).is_file()]
    assert not missing, f"tiny SigLIP lacks {missing}"
    return dst


from engine.weights import sha256_file  # noqa: E402  (the same hashing Loupe verifies with)


def file_entries(folder: Path) -> list[dict]:
    """[{name, size, sha256}] for every regular, non-hidden file directly in `folder`, by name."""
    out = []
    for p in sorted(Path(folder).iterdir()):
        if p.is_file() and not p.name.startswith("."):
            out.append({"name": p.name, "size": p.stat().st_size, "sha256": sha256_file(p)})
    return out


def write_sources_json(
    path: Path,
    hub_url: str,
    blip_dir: Path,
    resnet_dir: Path,
    blip_repo: str = BLIP_REPO,
    revision: str = REVISION,
    siglip_dir: Path | None = None,
) -> Path:
    """Write a LOUPE_SOURCES override pointing every model at `hub_url` (a FakeHub). Without
    `siglip_dir`, the one beside `blip_dir` (the suite's tiny folder: tiny_dir/siglip)."""
    siglip_dir = Path(siglip_dir) if siglip_dir is not None else Path(blip_dir).parent / "siglip"
    hub_url = hub_url.rstrip("/")
    data = {
        "blip-base": {
            "kind": "hf",
            "repo": blip_repo,
            "revision": revision,
            "endpoint": hub_url,
            "files": file_entries(blip_dir),
        },
        "resnet18": {
            "kind": "url",
            "base_url": f"{hub_url}/models",
            "files": file_entries(resnet_dir),
        },
        "siglip-base": {
            "kind": "hf",
            "repo": SIGLIP_REPO,
            "revision": SIGLIP_REVISION,
            "endpoint": hub_url,
            "files": file_entries(siglip_dir),
        },
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
