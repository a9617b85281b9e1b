"""The image-text encoder (search by meaning, issue 21): the tiny SigLIP the suite builds, served
by the local hub, installed through the real download code (the session's `installed`), loaded
through the registry and the engine, embedding photos and words; damaged bytes never answer."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine import weights
from engine.errors import IntegrityError, WeightsDamaged
from engine.inference import Engine
from engine.models.encoder import Encoder
from engine.models.registry import SIGLIP_BASE, by_name, lookup


def _photos() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    noise = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return [Image.new("RGB", (64, 48), "red"), Image.new("RGB", (64, 48), "navy"), noise]


def test_registry_pins_the_encoder_like_the_others():
    src = SIGLIP_BASE.source
    assert by_name("siglip-base") is SIGLIP_BASE and lookup("embed") is SIGLIP_BASE
    assert src.repo == "google/siglip-base-patch16-224" and len(src.revision) == 40
    assert all(len(f.sha256) == 64 and f.size > 0 for f in src.files)
    assert {f.name for f in src.files} == {"config.json", "preprocessor_config.json", "special_tokens_map.json",
                                           "spiece.model", "tokenizer_config.json", "model.safetensors"}
    assert "siglip-base" in weights.sources()


def test_installed_encoder_embeds_photos_and_words(installed):
    assert weights.check("siglip-base").installed  # `loupe models download` fetched it from the hub
    engine = Engine()
    enc = engine.model("embed")
    assert isinstance(enc, Encoder) and enc.input_size == 32
    assert not enc.text_loaded  # the text tower waits for the first query

    photos = _photos()
    batch = enc.predict(photos)
    one_by_one = [enc.predict([p])[0] for p in photos]
    assert len(batch) == 3 and batch[0].dtype == np.float32 and batch[0].shape == (32,)
    for a, b in zip(batch, one_by_one):
        assert abs(float(np.linalg.norm(a)) - 1) < 1e-5
        np.testing.assert_allclose(a, b, atol=1e-5)  # a photo's vector does not depend on its batch
    assert float(batch[0] @ batch[2]) < 0.999  # different photos, different vectors

    queries = enc.embed_text(["a red car", "A red car!", "dog on a beach"])
    assert enc.text_loaded and queries.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(queries[0], queries[1], atol=1e-6)  # SigLIP's own canonical text
    assert float(queries[0] @ queries[2]) < 0.999
    assert enc.preprocess_text(["a red car"])["input_ids"].shape == (1, 64)  # padded as trained

    prep = engine.preparer("embed")  # preprocessing alone: the same tensor as the loaded model's
    assert prep.vision is None
    assert np.array_equal(prep.preprocess(photos[2])["pixel_values"].numpy(),
                          enc.preprocess(photos[2])["pixel_values"].numpy())


def test_encoder_download_verifies_and_damage_is_refused(own_hub, tiny_dir):
    own_hub.faults["model.safetensors"] = "tamper"  # right length, one byte flipped
    with pytest.raises(IntegrityError, match="model.safetensors"):
        weights.install("siglip-base")
    assert not weights.check("siglip-base").installed

    own_hub.clear_faults()
    folder = weights.install("siglip-base")
    assert weights.check("siglip-base").installed

    target = folder / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))  # same size, new mtime: the fast check re-hashes it
    with pytest.raises(WeightsDamaged, match="model.safetensors"):
        Engine().model("embed")

    weights.remove("siglip-base")
    assert weights.import_folder(tiny_dir / "siglip") == ["siglip-base"]  # offline, from a folder
    assert weights.check("siglip-base").installed
