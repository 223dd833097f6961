"""VGG16 and ResNet classifiers with torchvision's module names, built from any state_dict.

No torchvision import: the architectures are written here with the same module tree, so a
torchvision state_dict (``features.0.weight``, ``classifier.6.weight``; ``conv1.weight``,
``layer1.0.conv1.weight``, ``fc.weight``, ...) loads as is. Widths and the number of classes are
read from the weights (Places365: 365). Models take images (N, 3, H, W) in [-1, 1], the toolkit's
convention, and normalise them for the network inside ``forward``. ``model.layer_names`` lists
the convolutional layers to inspect with a Session.

Example:
    >>> net = vgg16(num_classes=365)
    >>> net.layer_names[-1], net.classifier[6].out_features
    ('features.28', 365)
    >>> clf = classifier_from_state_dict(net.state_dict())
"""

from __future__ import annotations

import re

import torch
from torch import nn

__all__ = [
    "VGG16",
    "ResNet",
    "vgg16",
    "resnet18",
    "resnet50",
    "classifier_from_state_dict",
    "NORMALIZATION",
]

#: (mean, std) of the network input in [0, 1] pixel units.
NORMALIZATION = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # zero-mean in 0..255 units over Places images (the published VGG16-Places365 conversion)
    "places_meanonly": ((0.475, 0.441, 0.408), (1 / 255, 1 / 255, 1 / 255)),
}

_VGG16_WIDTHS = (64, 128, 256, 512, 512)


class _Normalized(nn.Module):
    """Base: maps toolkit images in [-1, 1] to the network's expected input in ``forward``."""

    def _init_norm(self, normalization):
        if normalization not in NORMALIZATION:
            raise ValueError(
                f"unknown normalization {normalization!r}; known: {', '.join(NORMALIZATION)}"
            )
        mean, std = NORMALIZATION[normalization]
        self.normalization = normalization
        self.register_buffer("_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def _normalize(self, x):
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W) in [-1, 1]; got {tuple(x.shape)}")
        return ((x + 1) / 2 - self._mean) / self._std


class VGG16(_Normalized):
    """torchvision's VGG16 layout: ``features`` (13 convs), ``avgpool``, ``classifier``.

    Example:
        >>> net = VGG16(num_classes=10, widths=(4, 4, 8, 8, 8), hidden=16)
        >>> net(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """

    def __init__(
        self, num_classes=1000, widths=_VGG16_WIDTHS, hidden=4096, normalization="imagenet"
    ):
        super().__init__()
        self._init_norm(normalization)
        layers, c_in = [], 3
        for stage, width in enumerate(widths):
            for _ in range(2 if stage < 2 else 3):
                layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU()]
                c_in = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(c_in * 49, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, num_classes),
        )
        self.layer_names = [
            f"features.{i}" for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)
        ]

    def forward(self, x):
        x = self.avgpool(self.features(self._normalize(x)))
        return self.classifier(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (ResNet-18/34)."""

    expansion = 1

    def __init__(self, c_in, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(c_in, planes, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided), 1x1 convs with a residual (ResNet-50/101/152)."""

    expansion = 4

    def __init__(self, c_in, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(c_in, planes * 4, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _shortcut(c_in, c_out, stride):
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class ResNet(_Normalized):
    """torchvision's ResNet layout: ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1``..
    ``layer4``, ``avgpool``, ``fc``.

    Example:
        >>> net = ResNet("basic", [1, 1, 1, 1], widths=(4, 8, 8, 8), num_classes=5)
        >>> net(torch.zeros(2, 3, 32, 32)).shape, net.layer_names
        (torch.Size([2, 5]), ['conv1', 'layer1', 'layer2', 'layer3', 'layer4'])
    """

    def __init__(
        self,
        block="basic",
        blocks=(2, 2, 2, 2),
        num_classes=1000,
        widths=(64, 128, 256, 512),
        stem=None,
        normalization="imagenet",
    ):
        super().__init__()
        kinds = {"basic": BasicBlock, "bottleneck": Bottleneck}
        if block not in kinds:
            raise ValueError(f"block must be 'basic' or 'bottleneck'; got {block!r}")
        cls = kinds[block]
        self._init_norm(normalization)
        c = stem or widths[0]
        self.conv1 = nn.Conv2d(3, c, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (n, planes) in enumerate(zip(blocks, widths)):
            stage = []
            for b in range(n):
                stage.append(cls(c, planes, 2 if (b == 0 and i > 0) else 1))
                c = planes * cls.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, num_classes)
        self.layer_names = ["conv1", "layer1", "layer2", "layer3", "layer4"]

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(self._normalize(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def vgg16(num_classes=1000, normalization="imagenet") -> VGG16:
    """A randomly initialised torchvision-layout VGG16."""
    return VGG16(num_classes, normalization=normalization)


def resnet18(num_classes=1000, normalization="imagenet") -> ResNet:
    """A randomly initialised torchvision-layout ResNet-18."""
    return ResNet("basic", (2, 2, 2, 2), num_classes, normalization=normalization)


def resnet50(num_classes=1000, normalization="imagenet") -> ResNet:
    """A randomly initialised torchvision-layout ResNet-50."""
    return ResNet("bottleneck", (3, 4, 6, 3), num_classes, normalization=normalization)


# ---------------------------------------------------------------------------------- loading
_CAFFE_VGG_NAMES = [
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "pool5",
]  # fmt: skip
_CAFFE_FC_NAMES = ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8a"]


def _rename_named_vgg(sd: dict) -> dict:
    """``features.conv1_1.weight`` / ``classifier.fc8a.weight`` (netdissect's names) ->
    torchvision's numeric indices."""
    index = {f"features.{n}": f"features.{i}" for i, n in enumerate(_CAFFE_VGG_NAMES)}
    index.update({f"classifier.{n}": f"classifier.{i}" for i, n in enumerate(_CAFFE_FC_NAMES)})
    out = {}
    for k, v in sd.items():
        head, _, leaf = k.rpartition(".")
        out[f"{index.get(head, head)}.{leaf}"] = v
    return out


def is_vgg16(sd: dict) -> bool:
    """Whether ``sd`` has a torchvision (or netdissect-named) VGG16 layout."""
    return ("features.0.weight" in sd and "classifier.6.weight" in sd) or (
        "features.conv1_1.weight" in sd and "classifier.fc8a.weight" in sd
    )


def is_resnet(sd: dict) -> bool:
    """Whether ``sd`` has a torchvision ResNet layout."""
    return all(k in sd for k in ("conv1.weight", "layer1.0.conv1.weight", "fc.weight"))


def _vgg_from_state_dict(sd, normalization):
    if "features.conv1_1.weight" in sd:
        sd = _rename_named_vgg(sd)
    convs = sorted(
        int(m.group(1)) for k in sd if (m := re.fullmatch(r"features\.(\d+)\.weight", k))
    )
    if len(convs) != 13:
        raise ValueError(f"a VGG16 state_dict has 13 conv layers; this one has {len(convs)}")
    widths = [int(sd[f"features.{convs[i]}.weight"].shape[0]) for i in (0, 2, 4, 7, 10)]
    net = VGG16(
        num_classes=int(sd["classifier.6.weight"].shape[0]),
        widths=widths,
        hidden=int(sd["classifier.0.weight"].shape[0]),
        normalization=normalization,
    )
    net.load_state_dict(sd)
    return net


def _resnet_from_state_dict(sd, normalization):
    blocks = []
    for stage in range(1, 5):
        ids = {int(m.group(1)) for k in sd if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        if not ids:
            raise ValueError(f"a ResNet state_dict needs layer1..layer4; layer{stage} is missing")
        blocks.append(max(ids) + 1)
    block = "bottleneck" if "layer1.0.conv3.weight" in sd else "basic"
    widths = [int(sd[f"layer{s}.0.conv1.weight"].shape[0]) for s in range(1, 5)]
    net = ResNet(
        block,
        blocks,
        num_classes=int(sd["fc.weight"].shape[0]),
        widths=widths,
        stem=int(sd["conv1.weight"].shape[0]),
        normalization=normalization,
    )
    missing, unexpected = net.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # older checkpoints
    if missing or unexpected:
        raise ValueError(
            f"ResNet state_dict does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return net


def classifier_from_state_dict(sd: dict, normalization="imagenet") -> nn.Module:
    """A VGG16 or ResNet (depth, widths and classes read from ``sd``), loaded and in eval mode.

    ``normalization`` names how the weights expect their input (see :data:`NORMALIZATION`).

    >>> net = classifier_from_state_dict(resnet18(num_classes=365).state_dict())
    >>> type(net).__name__, net.fc.out_features
    ('ResNet', 365)
    """
    if is_vgg16(sd):
        return _vgg_from_state_dict(sd, normalization).eval()
    if is_resnet(sd):
        return _resnet_from_state_dict(sd, normalization).eval()
    raise ValueError(
        "not a torchvision VGG16 or ResNet state_dict: expected features.0.weight and "
        "classifier.6.weight (VGG16) or conv1.weight, layer1.0.conv1.weight and fc.weight "
        f"(ResNet); found keys {sorted(sd)[:6]}"
    )
