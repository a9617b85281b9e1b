"""ImageNet classification with a torchvision-style network (ResNet-18 by default)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from PIL.Image import Image

from ..device import Placement
from ..results import Label, Labels
from .base import Model


class Classifier(Model[Labels]):
    """Any torchvision-style classifier: a module, its weights' transforms, category names."""

    def __init__(self, module: Any, transform: Callable, categories: Sequence[str], placement: Placement) -> None:
        self.module = module
        self.transform = transform
        self.categories = list(categories)
        self.placement = placement
        resize = getattr(transform, "resize_size", None) or 0
        #: the short edge the transforms resize to (256 for IMAGENET1K_V1's)
        self.input_size = int(resize[0] if isinstance(resize, (list, tuple)) else resize)

    @classmethod
    def load(cls, folder: Path, placement: Placement, ahead: Any = None) -> "Classifier":
        from .. import long_lived

        with long_lived.imports():
            import torch
            from torchvision.models import ResNet18_Weights, resnet18

        files = sorted(p for p in folder.iterdir() if p.suffix in (".pth", ".pt") and not p.name.startswith("."))
        if not files:
            from ..errors import WeightsMissing

            raise WeightsMissing(f"{folder}: no classifier weights file")
        # weights_only: a pickle from anywhere must not run code while loading.
        state = torch.load(files[0], map_location="cpu", weights_only=True)
        # Built on the meta device: its random initialisation (~0.1 s) would be overwritten.
        with torch.device("meta"):
            module = resnet18(weights=None, num_classes=1000)
        module.load_state_dict(state, assign=True)
        meta = ResNet18_Weights.IMAGENET1K_V1
        return cls.from_module(module, meta.transforms(), meta.meta["categories"], placement)

    @classmethod
    def load_preprocessing(cls, folder: Path) -> "Classifier":
        """The weights' transforms and category names alone: no network, no weights read."""
        from torchvision.models import ResNet18_Weights

        meta = ResNet18_Weights.IMAGENET1K_V1
        return cls(None, meta.transforms(), meta.meta["categories"], Placement("cpu", "fp32"))

    @classmethod
    def from_module(cls, module: Any, transform: Callable, categories: Sequence[str], placement: Placement) -> "Classifier":
        import torch

        module = module.eval().to(placement.device, dtype=placement.dtype)
        if placement.device == "cpu":
            module = module.to(memory_format=torch.channels_last)
        return cls(module, transform, categories, placement)

    def preprocess(self, image: Image, **_: Any) -> Any:
        """-> float32 [3, 224, 224] (resize 256, centre crop 224, ImageNet mean/std) on the CPU."""
        return self.transform(image)

    def collate(self, inputs: Sequence[Any]) -> Any:
        import torch

        batch = torch.stack(list(inputs)).to(self.placement.device, dtype=self.placement.dtype)
        if self.placement.device == "cpu":
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def forward(self, batch, **_: Any):
        import torch

        with torch.inference_mode():
            return self.module(batch)

    def postprocess(self, logits, *, top: int, **_: Any) -> list[Labels]:
        import torch

        probs = torch.softmax(logits.float(), dim=-1)
        k = min(top, probs.shape[-1])
        scores, indices = probs.topk(k, dim=-1)
        return [
            Labels(tuple(Label(self.categories[i], round(float(s), 6), int(i)) for s, i in zip(row_s.tolist(), row_i.tolist())))
            for row_s, row_i in zip(scores, indices)
        ]
