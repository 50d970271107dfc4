"""A training run's configuration: ``TrainConfig``, the recipe's stages (``relu``,
``kwta-0.2``, ``at-kwta-0.1``, ...) and their defaults, the learning-rate schedule.

The report's recipe: a ReLU model is trained from scratch, a k-WTA γ=0.2 model starts
from the ReLU weights (same architecture, activation swapped), and γ=0.1 starts from
γ=0.2. The ``at-`` stages do the same with adversarial training in every stage.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from ..data.cifar10 import (
    IMAGE_SIZE,
)
from ..models.architectures import (
    ADVERSARIAL_PREFIX,
    ModelConfig,
)
from .adversarial import (
    DEFAULT_EPS,
    DEFAULT_METHOD,
    HOLDOUT_IMAGES,
    METHODS,
)

__all__ = ["STAGES", "AT_STAGES", "SCHEDULES", "AMP_MODES", "SCRATCH_LR_PER_128",
           "FINETUNE_LR_PER_128", "DEFAULT_EPOCHS", "TrainConfig", "CONFIG_DEFAULTS",
           "format_image_sizes", "parse_image_sizes", "Stage", "parse_stage", "stage_name",
           "default_epochs", "stage_config", "lr_at", "predecessor"]

STAGES: tuple[str, ...] = ("relu", "kwta-0.2", "kwta-0.1")


AT_STAGES: tuple[str, ...] = tuple(ADVERSARIAL_PREFIX + s for s in STAGES)
"""The same recipe with adversarial training in every stage (``at-relu`` from scratch)."""


SCHEDULES: tuple[str, ...] = ("onecycle", "cosine", "step")


AMP_MODES: tuple[str, ...] = ("auto", "bf16", "off")


# Peak learning rates per 128 images of batch (scaled linearly with the batch size).
SCRATCH_LR_PER_128 = 0.1


FINETUNE_LR_PER_128 = 0.01


# Epochs per stage when none are given (the model cards record what was actually run;
# the CPU pipeline's recipe is kwta_demo.pipeline.runner.DEFAULT_PLAN).
DEFAULT_EPOCHS: dict[str, dict[str, int]] = {
    "resnet18": {"scratch": 30, "finetune": 10},
    "alexnet": {"scratch": 40, "finetune": 10},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run's result (plus how often to evaluate)."""

    arch: str
    activation: str = "relu"
    gamma: float | None = None
    epochs: int = 30
    lr: float = 0.4
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    batch_size: int = 512
    schedule: str = "onecycle"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    clip_grad_norm: float | None = None
    amp: str = "auto"
    init_from: str | None = None
    eval_every: int = 1
    # Progressive resizing: ((size, epochs), ...) in order, e.g. ((16, 10), (24, 8), (32, 14));
    # empty means every epoch at 32 px. Evaluation is always at 32 px.
    image_sizes: tuple[tuple[int, int], ...] = ()
    # Adversarial training (kwta_demo.training.adversarial): the single-step method (None: standard
    # training), its L-inf radius, and how many training images are held out of training for
    # the PGD-10 check after every epoch that picks the epoch kept.
    adversarial: str | None = None
    adv_eps: float = DEFAULT_EPS
    holdout: int = 0

    def __post_init__(self) -> None:
        self.model_config()  # validates arch, activation and gamma
        if self.activation == "kwta":
            object.__setattr__(self, "gamma", float(self.gamma))
        object.__setattr__(self, "image_sizes", _check_image_sizes(self.image_sizes, self.epochs))
        if self.image_sizes and self.arch != "resnet18":
            raise ValueError(f"image_sizes: only resnet18 takes inputs other than 32x32 "
                             f"({self.arch} has a fixed-size classifier)")
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"epochs must be a whole number >= 0, got {self.epochs!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {self.batch_size!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not 0 <= self.warmup_epochs <= max(self.epochs, 0):
            raise ValueError(f"warmup_epochs must lie in [0, epochs={self.epochs}], got {self.warmup_epochs!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing!r}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be positive or None, got {self.clip_grad_norm!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every must be a whole number >= 0, got {self.eval_every!r}")
        if self.adversarial is not None and self.adversarial not in METHODS:
            raise ValueError(f"adversarial must be one of {', '.join(METHODS)} or None, "
                             f"got {self.adversarial!r}")
        if not 0 < self.adv_eps <= 0.5:
            raise ValueError(f"adv_eps must lie in (0, 0.5], got {self.adv_eps!r}")
        if not isinstance(self.holdout, int) or self.holdout < 0:
            raise ValueError(f"holdout must be a whole number >= 0, got {self.holdout!r}")
        if self.adversarial is None and self.holdout:
            raise ValueError("holdout: images are held out for adversarial training's check only")
        if self.adversarial is not None and self.image_sizes:
            raise ValueError("image_sizes: adversarial training runs at 32 px only (an eps "
                             "at another size is another threat model)")

    def model_config(self) -> ModelConfig:
        return ModelConfig(self.arch, self.activation, self.gamma,
                           training="standard" if self.adversarial is None else "adversarial")

    @property
    def name(self) -> str:
        """The model's canonical name, e.g. ``alexnet-kwta-0.2``."""
        return self.model_config().name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"train config has unknown fields: {', '.join(sorted(unknown))}")
        return cls(**d)

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the saved one.

        ``eval_every`` is left out (evaluation changes no weight and draws no random
        number), and so is ``init_from``'s path, which may be spelled differently from
        another folder: the initial weights are matched by their checksum instead.
        """
        d = self.to_dict()
        d.pop("eval_every")
        init = d.pop("init_from")
        d["init_name"] = Path(init).name if init else None
        return json.loads(json.dumps(d))  # as it reads back from a state file (lists, not tuples)

    def image_size(self, epoch: int) -> int:
        """The training image size of ``epoch`` (1-based)."""
        done = 0
        for size, n in self.image_sizes:
            done += n
            if epoch <= done:
                return size
        return IMAGE_SIZE


CONFIG_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(TrainConfig)
                                   if f.default is not MISSING}
"""TrainConfig's defaults: the command line's, and what a field added to TrainConfig since a
state was saved matches on resume."""


def _check_image_sizes(value: Any, epochs: int) -> tuple[tuple[int, int], ...]:
    """``value`` as ((size, epochs), ...), or ValueError: sizes in [8, 32], epochs summing up."""
    try:
        phases = tuple((int(size), int(n)) for size, n in value or ())
    except (TypeError, ValueError):
        raise ValueError(f"image_sizes must be (size, epochs) pairs, got {value!r}") from None
    for size, n in phases:
        if not 8 <= size <= IMAGE_SIZE or n < 1:
            raise ValueError(f"image_sizes: each size must lie in [8, {IMAGE_SIZE}] and last "
                             f">= 1 epoch, got ({size}, {n})")
    if phases and sum(n for _, n in phases) != epochs:
        raise ValueError(f"image_sizes cover {sum(n for _, n in phases)} epochs, but the run "
                         f"has {epochs}")
    return phases


def format_image_sizes(phases: Sequence[tuple[int, int]]) -> str:
    """The inverse of ``parse_image_sizes``."""
    return "+".join(f"{size}x{n}" for size, n in phases) or str(IMAGE_SIZE)


def parse_image_sizes(text: str, epochs: int) -> tuple[tuple[int, int], ...]:
    """``"16x10+24x8+32x14"`` -> ((16, 10), (24, 8), (32, 14)); ``"32"`` -> () (all at 32)."""
    text = text.strip()
    if text in ("", str(IMAGE_SIZE)):
        return ()
    phases = []
    for part in text.split("+"):
        size, sep, n = part.strip().partition("x")
        if not sep:
            raise ValueError(f"bad image sizes {text!r}: write SIZExEPOCHS+..., e.g. 16x10+32x20")
        try:
            phases.append((int(size), int(n)))
        except ValueError:
            raise ValueError(f"bad image sizes {text!r}: sizes and epochs are whole numbers") from None
    return _check_image_sizes(phases, epochs)


@dataclass(frozen=True)
class Stage:
    """One stage of the recipe, parsed: its activation, whether it starts from scratch,
    and whether it trains adversarially."""

    activation: str
    gamma: float | None
    scratch: bool
    adversarial: bool = False

    def model_config(self, arch: str) -> ModelConfig:
        return ModelConfig(arch, self.activation, self.gamma,
                           training="adversarial" if self.adversarial else "standard")


def parse_stage(stage: str) -> Stage:
    """``"relu"`` -> Stage(relu, None, scratch); ``"kwta-0.2"`` -> Stage(kwta, 0.2, not
    scratch); ``"at-kwta-0.1"`` the same with adversarial training.

    ReLU always starts from scratch; a k-WTA stage does when written ``kwta-0.2:scratch``,
    and is otherwise initialised from the stage before it.
    """
    text, _, mode = stage.strip().partition(":")
    if mode not in ("", "scratch"):
        raise ValueError(f"bad stage {stage!r}: the only suffix is ':scratch'")
    adversarial = text.startswith(ADVERSARIAL_PREFIX)
    text = text.removeprefix(ADVERSARIAL_PREFIX)
    if text == "relu":
        return Stage("relu", None, True, adversarial)
    kind, _, gamma = text.partition("-")
    if kind != "kwta" or not gamma:
        raise ValueError(f"bad stage {stage!r}: write relu or kwta-<gamma>, e.g. kwta-0.2, "
                         f"with {ADVERSARIAL_PREFIX} in front for adversarial training")
    try:
        value = float(gamma)
    except ValueError:
        raise ValueError(f"bad stage {stage!r}: gamma {gamma!r} is not a number") from None
    ModelConfig("alexnet", "kwta", value)  # validates gamma
    return Stage("kwta", value, mode == "scratch", adversarial)


def stage_name(arch: str, stage: str) -> str:
    """The checkpoint folder name of a stage; from-scratch k-WTA gets a ``-scratch`` suffix."""
    parsed = parse_stage(stage)
    name = parsed.model_config(arch).name
    return f"{name}-scratch" if parsed.scratch and parsed.activation == "kwta" else name


def default_epochs(arch: str, stage: str) -> int:
    """The recipe's epochs for ``stage`` of ``arch`` when none are given."""
    kind = "scratch" if parse_stage(stage).scratch else "finetune"
    return DEFAULT_EPOCHS[arch][kind] if arch in DEFAULT_EPOCHS else 10


def stage_config(
    arch: str,
    stage: str,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int = 512,
    schedule: str | None = None,
    warmup_epochs: float | None = None,
    init_from: str | None = None,
    adversarial: str = DEFAULT_METHOD,
    adv_eps: float = DEFAULT_EPS,
    holdout: int = HOLDOUT_IMAGES,
    **common: Any,
) -> TrainConfig:
    """The ``TrainConfig`` of one stage, with the recipe's defaults for anything not given.

    From scratch: a one-cycle schedule (linear warm-up over a fifth of the epochs, linear
    decay to zero), peak LR 0.1 per 128 images of batch. Fine-tuning: cosine decay after
    at most one warm-up epoch, peak LR 0.01 per 128 images. An ``at-`` stage trains on
    ``adversarial``'s examples at ``adv_eps``, ``holdout`` training images held out for the
    per-epoch check; the other stages ignore those three.
    """
    parsed = parse_stage(stage)
    activation, gamma, scratch = parsed.activation, parsed.gamma, parsed.scratch
    if parsed.adversarial:
        common.update(adversarial=adversarial, adv_eps=adv_eps, holdout=holdout)
    if epochs is None:
        epochs = default_epochs(arch, stage)
    per_128 = SCRATCH_LR_PER_128 if scratch else FINETUNE_LR_PER_128
    if lr is None:
        lr = round(per_128 * batch_size / 128, 6)
    if schedule is None:
        schedule = "onecycle" if scratch else "cosine"
    if warmup_epochs is None:
        warmup_epochs = round(epochs / 5, 2) if scratch else min(1.0, epochs / 4)
    if scratch:
        init_from = None
    elif init_from is None:
        raise ValueError(f"stage {stage!r} fine-tunes: it needs init_from (a checkpoint)")
    return TrainConfig(arch=arch, activation=activation, gamma=gamma, epochs=epochs, lr=lr,
                       batch_size=batch_size, schedule=schedule, warmup_epochs=warmup_epochs,
                       init_from=None if init_from is None else str(init_from), **common)


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate for optimiser step ``step`` (0-based) of the whole run."""
    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "step":  # x0.1 at half and at three quarters of the run
        return cfg.lr * 0.1 ** sum(step >= f * total for f in (0.5, 0.75))
    progress = (step - warm) / max(total - warm, 1)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * max(0.0, 1 - progress)  # onecycle: linear decay to zero after the warm-up


def predecessor(stage: str) -> str:
    """The stage a fine-tuning stage starts from when it is first in the list: of the same
    training (standard or adversarial), γ=0.1 from γ=0.2, any other γ from ReLU."""
    parsed = parse_stage(stage)
    previous = {0.1: "kwta-0.2"}.get(parsed.gamma, "relu")
    return ADVERSARIAL_PREFIX + previous if parsed.adversarial else previous
