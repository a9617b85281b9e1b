"""The engine with tiny models installed through the real download path: caption and
classify behave, load once, and refuse bad options with a clear message."""
from __future__ import annotations

import threading

import pytest

from engine.errors import UsageError, WeightsMissing
from engine.inference import Engine, caption_paths, classify_paths, get_engine
from engine.images import load_image
from image_corpus import gradient


@pytest.fixture
def photos(tmp_path):
    out = []
    for i in range(4):
        p = tmp_path / f"p{i}.jpg"
        gradient(96 + 16 * i, 72, seed=i).rotate(45 * i).save(p)
        out.append(p)
    return out


def test_nothing_installed_says_what_to_do(tiny_sources, photos):
    with pytest.raises(WeightsMissing, match="loupe models download"):
        get_engine().caption([load_image(photos[0])])


def test_caption_batch_matches_one_at_a_time(installed, photos, monkeypatch):
    # fp32: int8 (the auto choice on CPUs without native bf16) quantizes activations with one
    # scale per call, so a photo's caption may differ slightly with its batch-mates.
    monkeypatch.setenv("LOUPE_PRECISION", "fp32")
    engine = get_engine()
    images = [load_image(p) for p in photos]
    batch = [c.text for c in engine.caption(images, num_beams=1, max_new_tokens=8)]
    single = [engine.caption([im], num_beams=1, max_new_tokens=8)[0].text for im in images]
    assert all(batch) and batch == single
    assert len(set(batch)) > 1, "different photos should give different captions"


def test_prefix_starts_the_caption(installed, photos):
    # words of the tiny model's vocabulary (the real one knows "a photograph of")
    text = get_engine().caption([load_image(photos[0])], prefix="a dog sitting on", max_new_tokens=6)[0].text
    assert text.startswith("a dog sitting on") and len(text) > len("a dog sitting on")


def test_classify_returns_top_k_sorted_imagenet_labels(installed, photos):
    from torchvision.models import ResNet18_Weights

    names = set(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    for labels in get_engine().classify([load_image(p) for p in photos], top=3):
        assert len(labels.top) == 3
        scores = [l.score for l in labels.top]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        assert all(l.name in names for l in labels.top)
        assert set(labels.as_confidences()) == {l.name for l in labels.top}


def test_models_load_once_even_from_many_threads(installed, photos):
    engine = Engine()
    image = load_image(photos[0])
    errors = []

    def work():
        try:
            engine.classify([image])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    first = engine.model("resnet18")
    assert engine.model("resnet18") is first and len(engine.load_seconds) == 1


@pytest.mark.parametrize("options, message", [
    ({"max_new_tokens": 0}, "between 1 and 100"),
    ({"num_beams": 99}, "beams"),
    ({"prefix": "x" * 500}, "200 characters"),
])
def test_bad_caption_options_are_usage_errors(installed, photos, options, message):
    with pytest.raises(UsageError, match=message):
        get_engine().caption([load_image(photos[0])], **options)


def test_path_helpers_keep_order_and_report_bad_files(installed, photos, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    results = caption_paths([photos[0], bad, photos[1]], max_new_tokens=5, num_beams=1)
    assert [p for p, _ in results] == [str(photos[0]), str(bad), str(photos[1])]
    assert "not an image" in str(results[1][1])
    labels = classify_paths([photos[2]], top=2)[0][1]
    assert len(labels.top) == 2


def test_precision_setting_is_honoured(installed, monkeypatch):
    import torch

    monkeypatch.setenv("LOUPE_PRECISION", "fp32")
    engine = Engine()
    assert engine.model("resnet18").module.fc.weight.dtype == torch.float32
    monkeypatch.setenv("LOUPE_PRECISION", "bogus")
    with pytest.raises(UsageError):
        Engine().model("resnet18")
