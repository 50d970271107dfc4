"""Training: ReLU from scratch, then incremental k-WTA fine-tuning (`python -m kwta_demo train`).

The report's recipe: a ReLU model is trained from scratch, a k-WTA γ=0.2 model starts
from the ReLU weights (same architecture, activation swapped), and γ=0.1 starts from
γ=0.2. SGD with momentum, a per-step learning-rate schedule, bf16 autocast and
channels-last on CUDA; the same code runs on the CPU.

Every run is resumable. After each epoch the whole training state (weights, optimiser
momentum, RNG states, history) goes to ``<state_dir>/<name>.state.safetensors``: one
file, written to a temporary name and renamed, so a run killed at any moment leaves
either the previous complete state or the new one, never a half-written file. JSON
metadata lives inside the safetensors header; nothing is ever pickled. A run restarted
with the same configuration and data continues after the last complete epoch (on the
CPU the result is bit-identical to an uninterrupted run); a different configuration is
an error, not a silent restart. The finished model is written with
``checkpoints.save_checkpoint`` (also atomic), loaded back, and measured on the test
split; the model card and ``metrics.json`` carry those numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shlex
import statistics
import time
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.cifar10 import (
    DATA_CAVEAT,
    DATA_NAME,
    IMAGE_SIZE,
    CifarSplit,
    batches,
    held_out,
    seeded_subset,
    shuffled_order,
)
from ..evaluation.evaluate import clean_accuracy
from ..models.activations import activation_sparsity
from ..models.architectures import (
    ADVERSARIAL_PREFIX,
    ARCHS,
    Classifier,
    ModelConfig,
    build_model,
)
from ..models.checkpoints import (
    MANIFEST,
    atomic_write_text,
    find_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
    write_manifest,
)
from ..models.kwta import KWTA, get_kwta_impl
from ..provenance import device_name, git_commit
from ..settings import resolve_device
from .adversarial import (
    DEFAULT_EPS,
    DEFAULT_METHOD,
    HOLDOUT_ATTACK,
    HOLDOUT_IMAGES,
    METHODS,
    holdout_check,
    training_examples,
)
from .state import (
    EpochProgress,
    TrainStateError,
    check_state_matches,
    fingerprint_checkpoint,
    fingerprint_split,
    read_state,
    remove_stale_temporaries,
    restore_partial,
    restore_state,
    save_state,
    state_path,
)

__all__ = [
    "STAGES",
    "SCHEDULES",
    "TrainConfig",
    "TrainStateError",
    "CONFIG_DEFAULTS",
    "TrainingStopped",
    "EpochProgress",
    "Stage",
    "parse_stage",
    "parse_image_sizes",
    "format_image_sizes",
    "default_epochs",
    "default_batch_size",
    "set_threads",
    "cpu_has_native_bf16",
    "stage_config",
    "lr_at",
    "train_model",
    "train_schedule",
    "evaluate_accuracy",
    "activation_sparsity",
    "benchmark_epoch_seconds",
    "reproduce_command",
]

log = logging.getLogger(__name__)

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


class TrainingStopped(RuntimeError):
    """A run stopped on request (``should_stop``) after saving its state; rerun to resume."""


# ------------------------------------------------------------------ configuration


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


def _stage_name(arch: str, stage: str) -> str:
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


# ------------------------------------------------------------------ measuring


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX512-BF16 or AMX), not emulated."""
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    # bf16 needs no loss scaling. "auto": on CUDA, and on CPUs that compute bf16 natively
    # (twice the float32 speed for ResNet18 there, docs/training.md); on other CPUs bf16
    # autocast is emulated and slower, so float32.
    if cfg.amp == "bf16":
        return torch.bfloat16
    if cfg.amp == "auto" and (device.type == "cuda"
                              or (device.type == "cpu" and cpu_has_native_bf16())):
        return torch.bfloat16
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16,
                          enabled=dtype is not None)


def _prepare(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    # NHWC: cuDNN's fastest convolutions take it, and oneDNN's on the CPU too (ResNet18
    # trains 1.5x faster than in NCHW there, docs/training.md).
    return x.contiguous(memory_format=torch.channels_last)


def evaluate_accuracy(
    model: nn.Module,
    split: CifarSplit,
    device: str | torch.device | None = None,
    *,
    batch_size: int = 1000,
    amp_dtype: torch.dtype | None = None,
) -> float:
    """Top-1 accuracy of ``model`` over every image of ``split``: ``evaluate.clean_accuracy``
    under the training's autocast (``amp_dtype``; None: float32)."""
    device = resolve_device(device)
    with _autocast(device, amp_dtype):
        return clean_accuracy(model, split, batch_size=batch_size, device=device)


# ------------------------------------------------------------------ training


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on BN parameters and biases: decaying them only fights the
    # normalisation, as the usual CIFAR recipes note.
    decay = [p for p in model.parameters() if p.ndim > 1]
    other = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
    )


def _on_device(split: CifarSplit, device: torch.device) -> CifarSplit:
    # The whole split fits on any GPU (150 MB for the training images): one copy, then
    # batches are gathered and augmented on the device with no host round trips.
    return CifarSplit(split.images.to(device), split.labels.to(device))


def _steps_per_epoch(n: int, batch_size: int) -> tuple[int, bool]:
    drop_last = n >= batch_size  # full batches only, unless the set is smaller than one
    return (n // batch_size if drop_last else 1), drop_last


def _train_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig, split: CifarSplit,
    generator: torch.Generator, device: torch.device, epoch: int, *, amp_dtype: torch.dtype | None,
    progress: bool, on_step: Callable[[int, int], None] | None, desc: str,
    partial: EpochProgress | None = None,
    checkpoint: Callable[[EpochProgress], None] | None = None,
    save_every: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """One epoch (or the rest of one: ``partial``). Every ``save_every`` seconds (0: after
    every step), and when ``should_stop()`` says so, ``checkpoint(progress)`` saves the
    epoch so far; a stop then raises ``TrainingStopped``."""
    model.train()
    n = len(split.labels)
    steps, drop_last = _steps_per_epoch(n, cfg.batch_size)
    if partial is None:
        partial = EpochProgress(order=shuffled_order(n, generator))
    if partial.loss_sum is None:
        partial.loss_sum = torch.zeros((), device=device)
        partial.correct = torch.zeros((), dtype=torch.long, device=device)
    size = cfg.image_size(epoch)
    lr = cfg.lr
    started = last_save = time.perf_counter()
    prior_seconds = partial.seconds
    it = batches(split, cfg.batch_size, augment=True, device=device, generator=generator,
                 drop_last=drop_last, order=partial.order, first_batch=partial.step)
    bar = tqdm(it, total=steps, initial=partial.step, desc=desc, disable=not progress,
               leave=False, dynamic_ncols=True)
    for step, (x, y) in enumerate(bar, start=partial.step):
        if on_step is not None:
            on_step(epoch, step)
        lr = lr_at(cfg, (epoch - 1) * steps + step, steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if size != IMAGE_SIZE:  # progressive resizing: the augmented crop, downsampled
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)
        if cfg.adversarial is not None:  # in train mode, as the methods' authors train
            x = training_examples(lambda v: _forward(model, v, device, amp_dtype), x, y,
                                  method=cfg.adversarial, eps=cfg.adv_eps, generator=generator)
        logits = _forward(model, x, device, amp_dtype)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        optimizer.step()
        partial.loss_sum += loss.detach() * len(y)
        partial.correct += (logits.detach().argmax(1) == y).sum()
        partial.seen += len(y)
        partial.step = step + 1
        if progress and step % 20 == 0:  # .item() waits for the GPU: not on every step
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}")
        if partial.step < steps and checkpoint is not None:
            stop = should_stop is not None and should_stop()
            now = time.perf_counter()
            if stop or (save_every is not None and now - last_save >= save_every):
                _sync(device)
                partial.seconds = prior_seconds + time.perf_counter() - started
                checkpoint(partial)
                last_save = time.perf_counter()
                if stop:
                    bar.close()
                    raise TrainingStopped(f"stopped in epoch {epoch} after step {partial.step} "
                                          f"of {steps}; the state is saved")
    bar.close()
    _sync(device)
    seen = max(partial.seen, 1)
    return {"train_loss": partial.loss_sum.item() / seen, "train_acc": partial.correct.item() / seen,
            "lr": lr, "train_seconds": prior_seconds + time.perf_counter() - started,
            "image_size": size}


def _forward(model: nn.Module, x: torch.Tensor, device: torch.device,
             amp_dtype: torch.dtype | None) -> torch.Tensor:
    with _autocast(device, amp_dtype):
        return model(_prepare(x, device))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _build(cfg: TrainConfig, device: torch.device, init_folder: Path | None) -> Classifier:
    torch.manual_seed(cfg.seed)  # the same seed gives the same initial weights everywhere
    model = build_model(cfg.model_config())
    if init_folder is not None:
        # Same parameter names whatever the activation, so ReLU weights load strictly
        # into the k-WTA model: the report's "unaltered weights".
        load_state_dict_strict(model, init_folder)
    return model.to(device).to(memory_format=torch.channels_last)


def train_model(
    cfg: TrainConfig,
    train_split: CifarSplit,
    test_split: CifarSplit,
    device: str | torch.device | None = None,
    *,
    out: str | os.PathLike,
    state_dir: str | os.PathLike,
    half: bool = False,
    progress: bool = True,
    fresh: bool = False,
    command: str | None = None,
    sparsity_images: int = 1000,
    on_step: Callable[[int, int], None] | None = None,
    save_every: float | None = 300.0,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train one model, resuming from ``state_dir`` when possible; write the checkpoint ``out``.

    Returns ``{"name", "config", "history", "metrics", "checkpoint", "resumed_from"}``.
    ``history`` has one entry per epoch (``train_loss``, ``train_acc``, ``lr``,
    ``train_seconds``, and ``test_acc`` when evaluated); a fine-tuning run also gets an
    epoch-0 entry, the accuracy of the unaltered initial weights. ``metrics`` is what was
    measured on the saved-and-reloaded weights (also in ``out/metrics.json``).
    ``on_step(epoch, step)`` is called before every optimiser step; an exception from it
    stops the run, leaving the last saved state. The state is saved after every epoch and,
    inside one, every ``save_every`` seconds (0: after every step; None: never), so a
    killed run loses at most that much work. ``should_stop()`` is asked after every step:
    when true, the state is saved and ``TrainingStopped`` raised. ``fresh`` discards a
    saved state instead of resuming it. ``half`` stores the weights as float16.

    Adversarial training (``cfg.adversarial``) holds ``cfg.holdout`` seeded training images
    out of training, measures PGD-10 accuracy on them after every epoch (``holdout_pgd_acc``
    in the history) and saves the weights of the epoch where it was highest: a run that
    overfits catastrophically keeps its last good epoch (``metrics["selected_epoch"]``).
    """
    device = resolve_device(device)
    out = Path(out)
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_path(state_dir, out.name)
    remove_stale_temporaries(path)
    if fresh:
        path.unlink(missing_ok=True)
    init_folder = find_checkpoint(cfg.init_from) if cfg.init_from else None
    expected = {
        "config": cfg.identity(),
        "data": fingerprint_split(train_split),
        "test_data": fingerprint_split(test_split),
        "init_sha256": fingerprint_checkpoint(init_folder) if init_folder else None,
    }
    run_id = hashlib.sha256(json.dumps(expected, sort_keys=True).encode()).hexdigest()[:16]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    amp_dtype = _amp_dtype(cfg, device)
    model = _build(cfg, device, init_folder)
    optimizer = _optimizer(model, cfg)
    # shuffling, augmentation and adversarial training's noise only
    generator = torch.Generator().manual_seed(cfg.seed)
    holdout: CifarSplit | None = None
    if cfg.holdout:
        train_split, holdout = held_out(train_split, cfg.holdout, seed=cfg.seed)
    train_split, test_split = _on_device(train_split, device), _on_device(test_split, device)
    history: list[dict[str, Any]] = []
    start = 0
    partial: EpochProgress | None = None
    best: _Best | None = None
    if path.is_file():
        tensors, meta = read_state(path)
        check_state_matches(path, meta, expected, CONFIG_DEFAULTS)
        restore_state(tensors, meta, model, optimizer, generator, device)
        start, history = int(meta["epoch"]), list(meta["history"])
        partial = restore_partial(tensors, meta, device)
        best = _Best.restore(tensors, meta)
        where = (f"in epoch {start + 1} at step {partial.step}" if partial
                 else f"after epoch {start}")
        log.info("%s: resuming %s (of %d epochs) from %s", out.name, where, cfg.epochs, path)
        if meta.get("amp") not in (None, str(amp_dtype)):
            log.warning("%s: the state was saved with autocast %s, this machine runs %s: the "
                        "run goes on, but not bit for bit as it would have", out.name,
                        meta.get("amp"), amp_dtype)

    measured_initial = any(h.get("epoch") == 0 for h in history)  # a resumed epoch 1 has it
    if start == 0 and init_folder is not None and cfg.eval_every and not measured_initial:
        t0 = time.perf_counter()
        acc = evaluate_accuracy(model, test_split, device, amp_dtype=amp_dtype)
        history.append({"epoch": 0, "test_acc": acc, "eval_seconds": time.perf_counter() - t0,
                        "test_images": len(test_split.labels)})
        log.info("%s: initial weights from %s give test acc %.4f before fine-tuning",
                 out.name, init_folder.name, acc)

    def save(epoch_done: int, progress_now: EpochProgress | None = None) -> None:
        save_state(path, model, optimizer, generator, device,
                    {**expected, "run_id": run_id, "epoch": epoch_done, "history": history,
                     "config_full": cfg.to_dict(), "amp": str(amp_dtype),
                     **(best.meta() if best else {})}, progress_now,
                    extra=best.tensors() if best else None)

    for epoch in range(start + 1, cfg.epochs + 1):
        if partial is None and should_stop is not None and should_stop():
            raise TrainingStopped(f"stopped after epoch {epoch - 1}; the state is saved")
        _sync(device)
        entry: dict[str, Any] = {"epoch": epoch}
        entry.update(_train_epoch(
            model, optimizer, cfg, train_split, generator, device, epoch, amp_dtype=amp_dtype,
            progress=progress, on_step=on_step, desc=f"{out.name} {epoch}/{cfg.epochs}",
            partial=partial, checkpoint=lambda p, e=epoch: save(e - 1, p),
            save_every=save_every, should_stop=should_stop))
        partial = None
        if cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            t1 = time.perf_counter()
            entry["test_acc"] = evaluate_accuracy(model, test_split, device, amp_dtype=amp_dtype)
            entry["eval_seconds"] = time.perf_counter() - t1
            entry["test_images"] = len(test_split.labels)
        if holdout is not None:
            check = holdout_check(model, holdout, cfg.adv_eps, seed=cfg.seed)
            entry.update(holdout_clean_acc=check.clean_acc, holdout_pgd_acc=check.pgd_acc,
                         holdout_images=check.images, holdout_seconds=check.seconds)
            if best is None or check.pgd_acc >= best.pgd_acc:  # a tie goes to the later epoch
                best = _Best(epoch, check.pgd_acc, _weights_copy(model))
        history.append(entry)
        save(epoch)
        log.info("%s epoch %d/%d: loss %.4f, train acc %.4f%s%s, lr %.4g, %d px, %.1f s",
                 out.name, epoch, cfg.epochs, entry["train_loss"], entry["train_acc"],
                 f", test acc {entry['test_acc']:.4f}" if "test_acc" in entry else "",
                 f", held-out PGD-10 acc {entry['holdout_pgd_acc']:.4f}"
                 if "holdout_pgd_acc" in entry else "",
                 entry["lr"], entry["image_size"], entry["train_seconds"])

    if best is not None and best.epoch != cfg.epochs:
        log.warning("%s: held-out PGD-10 accuracy peaked at epoch %d (%.4f); keeping that "
                    "epoch's weights", out.name, best.epoch, best.pgd_acc)
        model.load_state_dict(best.weights)

    metrics = _finalize(model, cfg, out, test_split, device, history=history, half=half,
                        run_id=run_id, command=command, sparsity_images=sparsity_images,
                        train_images=len(train_split.labels), init_folder=init_folder,
                        selected_epoch=best.epoch if best else None)
    return {"name": out.name, "config": cfg.to_dict(), "history": history, "metrics": metrics,
            "checkpoint": str(out), "resumed_from": start}


def _finalize(
    model: Classifier, cfg: TrainConfig, out: Path, test_split: CifarSplit, device: torch.device,
    *, history: list[dict[str, Any]], half: bool, run_id: str, command: str | None,
    sparsity_images: int, train_images: int, init_folder: Path | None,
    selected_epoch: int | None = None,
) -> dict[str, Any]:
    """Save, load back, measure and write ``metrics.json`` (the card is the shipping
    command's: ``reporting.cards.write_card``): unless this run already did."""
    metrics_path = out / "metrics.json"
    if metrics_path.is_file():
        try:
            done = json.loads(metrics_path.read_text())
        except ValueError:
            done = {}
        if done.get("run_id") == run_id and done.get("stored_half") == half:
            return done
    save_checkpoint(model, out, half=half)
    # Measure what a user gets: the stored (possibly float16) weights, loaded strictly
    # into a fresh float32 model, evaluated without autocast.
    reloaded = build_model(cfg.model_config())
    load_state_dict_strict(reloaded, out)
    reloaded = reloaded.to(device).eval()
    t0 = time.perf_counter()
    accuracy = evaluate_accuracy(reloaded, test_split, device)
    eval_seconds = time.perf_counter() - t0
    n_sparse = min(sparsity_images, len(test_split.labels))
    sample = seeded_subset(test_split, n_sparse, seed=0)
    sparsity = activation_sparsity(reloaded, sample.images)
    if cfg.activation == "kwta":  # the stem ReLU of ResNet18 is not a k-WTA layer
        kwta_names = {n for n, m in reloaded.backbone.named_modules() if isinstance(m, KWTA)}
        sparsity = {n: v for n, v in sparsity.items() if n in kwta_names}
    epochs = [h for h in history if h.get("epoch", 0) > 0]
    times = [h["train_seconds"] for h in epochs]
    recipe = {
        **cfg.to_dict(),
        "init_from": init_folder.name if init_folder else None,
        "amp_used": f"{_amp_dtype(cfg, device)} autocast".replace("torch.", "")
        if _amp_dtype(cfg, device) else "none (float32)",
        "train_images": train_images,
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "kwta_impl": get_kwta_impl() if cfg.activation == "kwta" else None,
        "commit": git_commit(),
        "wall_seconds": sum(times) + sum(h.get("eval_seconds", 0.0) for h in history),
        "train_seconds": sum(times),
        "seconds_per_epoch": statistics.median(times) if times else 0.0,
        "command": command,
    }
    initial = next((h for h in history if h.get("epoch") == 0 and "test_acc" in h), None)
    metrics = {
        "name": out.name,
        "run_id": run_id,
        "data": DATA_NAME,
        "data_caveat": DATA_CAVEAT,
        "clean_accuracy": accuracy,
        "test_images": len(test_split.labels),
        "eval_device": device_name(device),
        "eval_seconds": eval_seconds,
        "stored_half": half,
        "initial_accuracy": initial["test_acc"] if initial else None,
        "initial_images": initial["test_images"] if initial else None,
        "sparsity": sparsity,
        "sparsity_images": n_sparse,
        "sparsity_seed": 0,
        "selected_epoch": selected_epoch,
        "selected_by": (f"the highest PGD-10 accuracy ({'/'.join(HOLDOUT_ATTACK)} preset, eps "
                        f"{cfg.adv_eps:.6g}) on the {cfg.holdout} training images held out"
                        if selected_epoch is not None else None),
        "recipe": recipe,
        "history": history,
    }
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
    if (out.parent / MANIFEST).is_file():  # keep an existing manifest true to the new weights
        write_manifest(out.parent)
    log.info("%s: saved to %s; clean accuracy %.4f on %d test images after the round trip",
             out.name, out, accuracy, len(test_split.labels))
    return metrics


@dataclass
class _Best:
    """The epoch with the highest held-out PGD-10 accuracy so far, and its weights."""

    epoch: int
    pgd_acc: float
    weights: dict[str, torch.Tensor]

    def meta(self) -> dict[str, Any]:
        return {"best": {"epoch": self.epoch, "pgd_acc": self.pgd_acc}}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"best.{k}": v for k, v in self.weights.items()}

    @classmethod
    def restore(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> "_Best | None":
        info = meta.get("best")
        if not info:
            return None
        weights = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        return cls(int(info["epoch"]), float(info["pgd_acc"]), weights)


def _weights_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _per_stage(value: Any, n: int, what: str) -> list[Any]:
    """One value for every stage: a scalar repeats, a sequence must have one per stage."""
    if value is None or not isinstance(value, (list, tuple)):
        return [value] * n
    if len(value) == 1:
        return list(value) * n
    if len(value) != n:
        raise ValueError(f"{what}: give one value or one per stage ({n}), got {len(value)}")
    return list(value)


def _predecessor(stage: str) -> str:
    """The stage a fine-tuning stage starts from when it is first in the list: of the same
    training (standard or adversarial), γ=0.1 from γ=0.2, any other γ from ReLU."""
    parsed = parse_stage(stage)
    previous = {0.1: "kwta-0.2"}.get(parsed.gamma, "relu")
    return ADVERSARIAL_PREFIX + previous if parsed.adversarial else previous


def _first_init(arch: str, stages: Sequence[str], out_root: Path) -> Path | None:
    """The checkpoint the first stage starts from, which must exist already (or None)."""
    if parse_stage(stages[0]).scratch:
        return None
    folder = out_root / _stage_name(arch, _predecessor(stages[0]))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"stage {stages[0]} of {arch} starts from {folder}, which is not a checkpoint yet: "
            f"train that stage first (e.g. --stages {_predecessor(stages[0])},{stages[0]})"
        )
    return folder


def train_schedule(
    arch: str,
    stages: Sequence[str],
    train_split: CifarSplit,
    test_split: CifarSplit,
    device: str | torch.device | None = None,
    *,
    out_root: str | os.PathLike,
    state_dir: str | os.PathLike,
    epochs: int | Sequence[int] | None = None,
    lr: float | Sequence[float] | None = None,
    schedule: str | Sequence[str] | None = None,
    warmup_epochs: float | Sequence[float] | None = None,
    batch_size: int = 512,
    image_sizes: str | Sequence[str] | None = None,
    half: bool = False,
    progress: bool = True,
    fresh: bool = False,
    data_hint: str | None = None,
    limit_train: int | None = None,
    save_every: float | None = 300.0,
    should_stop: Callable[[], bool] | None = None,
    on_model: Callable[[dict[str, Any]], None] | None = None,
    **common: Any,
) -> list[dict[str, Any]]:
    """The incremental recipe for one architecture: each k-WTA stage starts from the one before.

    ``stages`` like ``["relu", "kwta-0.2", "kwta-0.1"]``; a first stage that fine-tunes
    starts from the existing checkpoint of its predecessor (``kwta-0.1`` from
    ``kwta-0.2``, any other γ from ``relu``) in ``out_root``. ``epochs``, ``lr``,
    ``schedule``, ``warmup_epochs`` and ``image_sizes`` (``"16x10+32x20"``, see
    ``parse_image_sizes``) take one value or one per stage. ``common`` goes
    to every ``TrainConfig`` (seed, momentum, clip_grad_norm, ...). ``on_model(result)``
    is called as each stage's model is saved. Returns the results of ``train_model`` in
    stage order.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if not stages:
        raise ValueError("no stages to train")
    out_root, n = Path(out_root), len(stages)
    per = {k: _per_stage(v, n, k) for k, v in
           (("epochs", epochs), ("lr", lr), ("schedule", schedule), ("warmup_epochs", warmup_epochs))}
    sizes = _per_stage(image_sizes, n, "image_sizes")
    configs, outs = [], []
    first_init = _first_init(arch, stages, out_root)
    previous: str | None = None
    for i, stage in enumerate(stages):
        init = None
        if not parse_stage(stage).scratch:
            init = str(out_root / previous) if previous else str(first_init)
        stage_epochs = per["epochs"][i]
        if stage_epochs is None:
            stage_epochs = default_epochs(arch, stage)
        configs.append(stage_config(
            arch, stage, batch_size=batch_size, init_from=init,
            **{**{k: v[i] for k, v in per.items()}, "epochs": stage_epochs},
            image_sizes=parse_image_sizes(sizes[i], stage_epochs) if sizes[i] else (),
            **common))
        outs.append(out_root / _stage_name(arch, stage))
        previous = outs[-1].name
    command = reproduce_command(arch, stages, configs, half=half, data=data_hint,
                                limit_train=limit_train)
    results = []
    for cfg, out in zip(configs, outs):
        results.append(train_model(cfg, train_split, test_split, device, out=out,
                                   state_dir=state_dir, half=half, progress=progress,
                                   fresh=fresh, command=command, save_every=save_every,
                                   should_stop=should_stop))
        if on_model is not None:  # e.g. the card, before the next stage starts
            on_model(results[-1])
    return results


def reproduce_command(
    arch: str, stages: Sequence[str], configs: Sequence[TrainConfig], *, half: bool,
    data: str | None = None, limit_train: int | None = None,
) -> str:
    """The ``python -m kwta_demo train`` command line that trains ``configs`` again."""
    first = configs[0]

    def join(values: Sequence[Any]) -> str:
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)

    args = [
        "python", "-m", "kwta_demo", "train", "--arch", arch, "--stages", ",".join(stages),
        "--epochs", join([c.epochs for c in configs]), "--lr", join([c.lr for c in configs]),
        "--schedule", join([c.schedule for c in configs]),
        "--warmup", join([c.warmup_epochs for c in configs]),
        "--batch-size", str(first.batch_size), "--seed", str(first.seed),
        "--momentum", f"{first.momentum:g}", "--weight-decay", f"{first.weight_decay:g}",
    ]
    if any(c.image_sizes for c in configs):
        args += ["--sizes", ",".join(format_image_sizes(c.image_sizes) for c in configs)]
    if first.label_smoothing:
        args += ["--label-smoothing", f"{first.label_smoothing:g}"]
    if first.clip_grad_norm is not None:
        args += ["--clip", f"{first.clip_grad_norm:g}"]
    if first.amp != "auto":
        args += ["--amp", first.amp]
    adversarial = next((c for c in configs if c.adversarial is not None), None)
    if adversarial is not None:
        args += ["--adversarial", adversarial.adversarial, "--adv-eps",
                 f"{adversarial.adv_eps:.6g}", "--holdout", str(adversarial.holdout)]
    if limit_train:
        args += ["--limit-train", str(limit_train)]
    if half:
        args.append("--half")
    args += ["--data", data or "data/cifar10-jpeg.tar.gz"]
    return " ".join(shlex.quote(a) for a in args)


def benchmark_epoch_seconds(
    cfg: TrainConfig, n_train: int, device: str | torch.device | None = None, *,
    steps: int = 10, warmup: int = 3,
) -> float:
    """Estimated seconds for one training epoch of ``n_train`` images (random data).

    Times ``steps`` real optimiser steps after ``warmup`` (which also lets cuDNN pick its
    kernels); used to fit a run's epochs to a time budget.
    """
    device = resolve_device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    amp_dtype = _amp_dtype(cfg, device)
    model = _build(cfg, device, None)  # random weights time the same as trained ones
    optimizer = _optimizer(model, cfg)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(cfg.batch_size, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (cfg.batch_size,), generator=gen).to(device)
    model.train()

    def step() -> None:
        with _autocast(device, amp_dtype):
            logits = model(_prepare(x, device))
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    per_step = (time.perf_counter() - t0) / steps
    return per_step * _steps_per_epoch(n_train, cfg.batch_size)[0]


def default_batch_size(device: torch.device) -> int:
    """512 images per step on CUDA; 128 on the CPU, where larger batches run slower per
    image and smaller ones no faster (docs/training.md)."""
    return 512 if device.type == "cuda" else 128


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None: one per core); returns the count in use."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    else:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))
                                  if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
    return torch.get_num_threads()
