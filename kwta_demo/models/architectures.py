"""ResNet18 and AlexNet for 32x32 CIFAR-10 inputs, with the activation as an argument.

Every model takes images in [0, 1] and normalises them itself (mean and std are
buffers), so an epsilon of 8/255 means the same thing to every attack and to the user.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .kwta import KWTA, check_gamma

__all__ = [
    "ARCHS",
    "ACTIVATIONS",
    "TRAININGS",
    "CIFAR10_CLASSES",
    "ModelConfig",
    "arch_of",
    "family",
    "build_model",
    "Normalize",
    "CifarResNet18",
    "CifarAlexNet",
]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

ARCHS = ("resnet18", "alexnet")
ACTIVATIONS = ("relu", "kwta")
TRAININGS = ("standard", "adversarial")
ADVERSARIAL_PREFIX = "at-"
"""The name part of an adversarially trained model: ``resnet18-at-kwta-0.1``."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored as ``config.json`` beside the weights.

    ``training`` does not change the network; it says how the weights were trained
    (``standard`` or ``adversarial``) and so tells two models of one architecture and
    activation apart by name.
    """

    arch: str
    activation: str = "relu"
    gamma: float | None = None
    training: str = "standard"
    num_classes: int = 10
    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.activation == "kwta":
            object.__setattr__(self, "gamma", check_gamma(self.gamma))
        elif self.gamma is not None:
            raise ValueError("gamma applies to the 'kwta' activation only")
        if self.training not in TRAININGS:
            raise ValueError(
                f"unknown training {self.training!r}; choose one of {', '.join(TRAININGS)}"
            )
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def name(self) -> str:
        """The canonical checkpoint name, e.g. ``resnet18-kwta-0.2``."""
        return f"{self.arch}-{self.variant}"

    @property
    def variant(self) -> str:
        """The name after the arch: ``relu`` or ``kwta-<gamma>``, with ``at-`` in front for
        an adversarially trained model."""
        activation = "relu" if self.activation == "relu" else f"kwta-{self.gamma:g}"
        return ADVERSARIAL_PREFIX + activation if self.adversarial else activation

    @property
    def adversarial(self) -> bool:
        """Whether the weights were adversarially trained."""
        return self.training == "adversarial"

    @classmethod
    def from_name(cls, name: str) -> "ModelConfig":
        """The config a canonical name stands for (``alexnet-kwta-0.1``,
        ``resnet18-at-relu``), the inverse of ``name``; ValueError for anything else."""
        arch, _, variant = str(name).partition("-")
        training = "adversarial" if variant.startswith(ADVERSARIAL_PREFIX) else "standard"
        variant = variant.removeprefix(ADVERSARIAL_PREFIX)
        activation, _, gamma = variant.partition("-")
        try:
            config = (cls(arch, "relu", training=training) if variant == "relu" else
                      cls(arch, "kwta", float(gamma), training=training)
                      if activation == "kwta" and gamma else None)
        except ValueError:
            config = None
        if config is None or config.name != name:
            raise ValueError(f"not a canonical model name: {name!r} (e.g. resnet18-kwta-0.2, "
                             f"resnet18-at-relu)")
        return config

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        if not self.adversarial:  # the config.json of standard models reads as it always did
            del d["training"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f for f in cls.__dataclass_fields__}
        if d.get("extra") == {}:  # written by earlier versions, always empty
            d = {k: v for k, v in d.items() if k != "extra"}
        unknown = set(d) - known - {"format_version"}
        if unknown:
            raise ValueError(f"config has unknown fields: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in d.items() if k in known})

    def act_layer(self) -> Callable[[], nn.Module]:
        """A factory for this config's activation module."""
        if self.activation == "kwta":
            gamma = self.gamma
            return lambda: KWTA(gamma)
        return lambda: nn.ReLU(inplace=True)


def family(arch: str, *, adversarial: bool = False,
           gammas: tuple[float, ...] = (0.2, 0.1)) -> tuple[str, ...]:
    """The names of one architecture's ReLU model and its k-WTA models of ``gammas``,
    standard or adversarially trained: ``("alexnet-relu", "alexnet-kwta-0.2", ...)``."""
    training = "adversarial" if adversarial else "standard"
    return (ModelConfig(arch, "relu", training=training).name,
            *(ModelConfig(arch, "kwta", g, training=training).name for g in gammas))


def arch_of(model: str) -> str:
    """The architecture part of a model's name or folder (``resnet18-kwta-0.2``: resnet18);
    the transfer rows' bare architecture names pass through."""
    return Path(model).name.split("-")[0]


class Normalize(nn.Module):
    """(x - mean) / std with mean and std as buffers (saved with the weights)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class BasicBlock(nn.Module):
    """The k-WTA authors' block: activation after the first BN and after the residual add."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, act: Callable[[], nn.Module]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = act()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = act()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class CifarResNet18(nn.Module):
    """ResNet18 for 32x32 inputs (3x3 stem, no max-pool), as in the k-WTA authors' code.

    The stem keeps ReLU whatever the block activation, as the authors' SparseResNet does:
    the published k-WTA numbers come from that model, and keeping it makes ours
    comparable. (k-WTA over the stem's 64x32x32 map would also be the single most
    expensive selection in the network while adding no extra discontinuity in front of
    the sixteen k-WTA layers that follow.)
    """

    def __init__(self, act: Callable[[], nn.Module], num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.stem_act = nn.ReLU(inplace=True)
        layers, in_planes = [], 64
        for i, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)]):
            blocks = [BasicBlock(in_planes, planes, stride, act), BasicBlock(planes, planes, 1, act)]
            layers.append(nn.Sequential(*blocks))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem_act(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(torch.flatten(self.pool(out), 1))


class CifarAlexNet(nn.Module):
    """A CIFAR-sized AlexNet: five conv layers (with BN) and a 512-512-10 head, ~4.6 M params.

    The activation follows every conv and every hidden FC layer (seven in all). Batch
    norm is an addition to the 2012 design: without it the k-WTA fine-tuning of the
    report is much less stable.
    """

    def __init__(self, act: Callable[[], nn.Module], num_classes: int = 10) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), act()]

        self.features = nn.Sequential(
            *conv(3, 64), nn.MaxPool2d(2),      # 16x16
            *conv(64, 192), nn.MaxPool2d(2),    # 8x8
            *conv(192, 384),
            *conv(384, 256),
            *conv(256, 256), nn.MaxPool2d(2),   # 4x4
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 4 * 4, 512), act(),
            nn.Dropout(0.5), nn.Linear(512, 512), act(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


_BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": CifarResNet18,
    "alexnet": CifarAlexNet,
}


class Classifier(nn.Sequential):
    """Normalisation followed by a backbone; carries its ``ModelConfig``."""

    def __init__(self, config: ModelConfig) -> None:
        backbone = _BACKBONES[config.arch](config.act_layer(), config.num_classes)
        super().__init__()
        self.normalize = Normalize(config.mean, config.std)
        self.backbone = backbone
        self.config = config


def build_model(
    arch: str | ModelConfig, activation: str = "relu", gamma: float | None = None
) -> Classifier:
    """Build ``arch`` (resnet18 or alexnet) for 32x32 RGB inputs in [0, 1], 10 logits.

    ``activation`` is ``"relu"`` or ``"kwta"`` (then ``gamma`` in (0, 1] is required).
    A ``ModelConfig`` may be passed instead of the three arguments.
    """
    config = arch if isinstance(arch, ModelConfig) else ModelConfig(arch, activation, gamma)
    return Classifier(config)
