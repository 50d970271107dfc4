"""What every attack shares: the result object, the limits, input validation, parameters.

Conventions (the same for every attack in this package):

* Images are float tensors ``(B, 3, H, W)`` in ``[0, 1]``; the model normalises them itself.
* ``eps`` is an L-infinity radius in pixel units: finite and ``0 < eps <= MAX_EPS`` (1.0,
  the whole pixel range). Every returned adversarial lies in the eps-ball around its
  image and in ``[0, 1]`` (up to float rounding, below 1e-6).
* ``success`` is decided on the returned adversarial: untargeted, the prediction differs
  from the label; targeted, the prediction is the target. An image the model already
  gets wrong therefore counts as a success (as in foolbox), with the clean image itself
  as the adversarial when the attack found nothing better (unless ``keep_best=False``,
  which returns the last iterate whatever it is, as foolbox's PGD does). Robust
  accuracy is the fraction of images classified correctly *and* not successfully attacked.
* ``losses`` hold the attack's own objective (the quantity it *increases*; the foolbox
  attacks record the margin, see ``params["recorded_loss"]``) and ``true_prob`` the
  softmax probability of the label, one row per iterate.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AttackParameterError",
    "AttackResult",
    "AttackSpec",
    "Param",
    "RawOutput",
    "MAX_EPS",
    "MIN_STEPS",
    "MAX_STEPS",
    "MAX_STEP_SIZE",
    "MAX_SAMPLES",
    "MAX_SEED",
    "LOSSES",
    "attack_mode",
    "check_class_range",
    "check_eps",
    "check_images",
    "check_labels",
    "check_model_device",
    "check_seed",
    "check_target",
    "is_success",
    "ImageStreams",
    "endpoint_rows",
    "derived_seed",
    "batch_seeds",
    "objective",
    "project",
    "true_probability",
]

MAX_EPS = 1.0
"""Largest accepted eps: the whole [0, 1] pixel range."""
MIN_STEPS = 1
MAX_STEPS = 10_000
"""Cap on any iteration count (steps, binary-search steps): keeps a request bounded."""
MAX_STEP_SIZE = 1.0
"""Step sizes are in pixel units (or fractions of eps); more than the range is meaningless."""
MAX_SAMPLES = 100_000
"""Cap on the Gaussian samples per step of the gradient-estimation attack."""
MAX_SEED = 2**63 - 1

LOSSES = ("ce", "margin", "logit")
"""``ce``: cross-entropy; ``margin``: best other logit minus the true logit (the C&W loss);
``logit``: the raw logit (of the target, or minus the true class's), as the report's VGA."""


class AttackParameterError(ValueError):
    """An attack was called with an unknown name, preset or parameter, or an invalid value."""


@dataclass
class AttackResult:
    """What every attack returns. Tensors are detached and on the images' device.

    ``losses`` and ``true_prob`` have one row per iterate: ``steps + 1`` rows for the
    gradient attacks (the start point first), two rows (clean and final) for the foolbox
    attacks, whose intermediate iterates are not exposed (``params["per_step"]`` says
    which). ``info`` holds attack-specific per-sample extras (e.g. ``steps_to_success``
    for VGA, ``raw_l2`` for C&W).
    """

    adversarial: torch.Tensor  # (B, 3, H, W) in [0, 1]
    success: torch.Tensor  # bool (B,)
    losses: torch.Tensor  # float (T, B)
    true_prob: torch.Tensor  # float (T, B)
    linf: torch.Tensor  # float (B,)
    l2: torch.Tensor  # float (B,)
    clean_pred: torch.Tensor  # long (B,)
    adv_pred: torch.Tensor  # long (B,)
    params: dict[str, Any]
    attack: str
    preset: str
    info: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())

    def cpu(self) -> "AttackResult":
        """A copy with every tensor on the CPU (for plotting)."""
        return replace(
            self,
            **{k: getattr(self, k).cpu() for k in _TENSOR_FIELDS},
            info={k: v.cpu() for k, v in self.info.items()},
        )


_TENSOR_FIELDS = (
    "adversarial", "success", "losses", "true_prob", "linf", "l2", "clean_pred", "adv_pred",
)


class RawOutput(NamedTuple):
    """What an attack's runner hands back; ``run_attack`` adds predictions and distances."""

    adversarial: torch.Tensor
    losses: torch.Tensor
    true_prob: torch.Tensor
    info: dict[str, torch.Tensor]
    notes: dict[str, Any]  # extra entries for ``params`` (e.g. the recorded loss)


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Param:
    """One attack parameter: its kind, bounds and a one-line doc (shown in errors and UIs).

    kinds: ``int``, ``float``, ``bool``, ``choice``, ``ints`` (a tuple of ints).
    Floats accept ints; ints accept integral floats (slider values arrive as floats).
    """

    name: str
    kind: str
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded (step sizes must be > 0)
    choices: tuple[Any, ...] = ()
    optional: bool = False  # None is accepted (and means "not used")

    def check(self, value: Any, attack: str) -> Any:
        where = f"{attack}: parameter {self.name!r}"
        if value is None:
            if self.optional:
                return None
            raise AttackParameterError(f"{where} is required ({self.doc})")
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise AttackParameterError(f"{where} must be True or False, got {value!r}")
            return value
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise AttackParameterError(
                    f"{where} must be one of {', '.join(map(repr, self.choices))}, got {value!r}"
                )
            return value
        if self.kind == "int":
            return self._bounded(_as_int(value, where), where)
        if self.kind == "float":
            return self._bounded(_as_float(value, where), where)
        if self.kind == "ints":
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise AttackParameterError(f"{where} must be a sequence of integers, got {value!r}")
            items = tuple(self._bounded(_as_int(v, where), where) for v in value)
            if not items and not self.optional:
                raise AttackParameterError(f"{where} must not be empty")
            return items
        raise AssertionError(f"unknown parameter kind {self.kind!r}")

    def _bounded(self, value: float, where: str) -> Any:
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or value <= self.high
        if not (low_ok and high_ok):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            bracket = "(" if self.low_open else "["
            raise AttackParameterError(f"{where} must lie in {bracket}{lo}, {hi}], got {value!r}")
        return value


def _as_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AttackParameterError(f"{where} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):  # exact beyond 2**53, where floats are not
        return int(value)
    if not math.isfinite(float(value)) or float(value) != int(value):
        raise AttackParameterError(f"{where} must be an integer, got {value!r}")
    return int(value)


def _as_float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AttackParameterError(f"{where} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise AttackParameterError(f"{where} must be finite, got {value!r}")
    return value


Runner = Callable[..., RawOutput]


@dataclass(frozen=True)
class AttackSpec:
    """An attack in the registry: its runner, parameters, presets and what it is.

    ``targeted``: ``"no"`` (``target`` must be None), ``"optional"`` or ``"required"``.
    ``exclusive`` lists groups of parameters of which at most one may be set; a caller
    who sets one of them replaces the preset's choice within that group.
    ``preset_eps`` gives the eps a preset was published with (used when ``eps=None``).
    The runner is called as ``run(model, images, labels, target, eps=, rng=, **params)``
    with ``rng`` the batch's ``ImageStreams``. ``global_rng`` (a bool, or a test of the
    resolved parameters) marks a runner whose library draws from the global generator:
    ``run_attack`` then hands it one image per call, seeded with that image's seed, so
    its result for an image does not depend on the batch either.
    """

    name: str
    title: str
    description: str
    run: Runner
    params: Mapping[str, Param]
    presets: Mapping[str, Mapping[str, Any]]
    preset_notes: Mapping[str, str]
    targeted: str = "optional"
    exclusive: tuple[tuple[str, ...], ...] = ()
    preset_eps: Mapping[str, float] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] | None = None  # cross-parameter rules
    global_rng: bool | Callable[[dict[str, Any]], bool] = False

    def draws_globally(self, params: Mapping[str, Any]) -> bool:
        """Whether the runner, with these resolved parameters, draws from a global generator."""
        return self.global_rng(dict(params)) if callable(self.global_rng) else self.global_rng

    def resolve(self, preset: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The preset's parameters with ``overrides`` applied, every value validated."""
        if preset not in self.presets:
            raise AttackParameterError(
                f"{self.name}: unknown preset {preset!r}; choose one of {', '.join(self.presets)}"
            )
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise AttackParameterError(
                f"{self.name}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(self.params)}"
            )
        merged = dict(self.presets[preset])
        for group in self.exclusive:
            given = [k for k in group if overrides.get(k) is not None]
            if len(given) > 1:
                raise AttackParameterError(
                    f"{self.name}: give at most one of {', '.join(group)}, got {', '.join(given)}"
                )
            if given:
                for k in group:
                    merged[k] = None
        merged.update(overrides)
        resolved = {
            name: param.check(merged.get(name), self.name) for name, param in self.params.items()
        }
        for group in self.exclusive:
            if all(resolved[k] is None for k in group):
                raise AttackParameterError(f"{self.name}: give one of {', '.join(group)}")
        if self.check is not None:
            self.check(resolved)
        return resolved


# --------------------------------------------------------------------------- inputs


def check_eps(eps: Any) -> float:
    """eps as a float; finite and 0 < eps <= MAX_EPS, else AttackParameterError."""
    value = _as_float(eps, "eps")
    if not 0.0 < value <= MAX_EPS:
        raise AttackParameterError(f"eps must lie in (0, {MAX_EPS:g}], got {eps!r}")
    return value


def check_seed(seed: Any) -> int:
    value = _as_int(seed, "seed")
    if not 0 <= value <= MAX_SEED:
        raise AttackParameterError(f"seed must lie in [0, 2**63 - 1], got {seed!r}")
    return value


def check_images(images: Any) -> torch.Tensor:
    """A float (B, 3, H, W) batch, B >= 1, every value finite and within [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise AttackParameterError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise AttackParameterError(
            f"images must have shape (B, 3, H, W), got {tuple(images.shape)}"
        )
    if images.shape[0] == 0:
        raise AttackParameterError("images is an empty batch")
    if not images.is_floating_point():
        raise AttackParameterError(
            f"images must be floats in [0, 1], got dtype {images.dtype} (divide uint8 by 255)"
        )
    if not bool(torch.isfinite(images).all()):
        raise AttackParameterError("images contain NaN or infinite values")
    if bool((images < 0).any()) or bool((images > 1).any()):
        lo, hi = float(images.min()), float(images.max())
        raise AttackParameterError(f"images must lie in [0, 1], got values in [{lo:g}, {hi:g}]")
    return images


def check_labels(
    labels: Any, batch_size: int, device: torch.device, name: str = "labels"
) -> torch.Tensor:
    """Integer class indices of shape (batch_size,), as int64 on ``device``."""
    if not isinstance(labels, torch.Tensor):
        raise AttackParameterError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise AttackParameterError(f"{name} must be integers, got dtype {labels.dtype}")
    if labels.shape != (batch_size,):
        raise AttackParameterError(
            f"{name} must have shape ({batch_size},) to match the images, got {tuple(labels.shape)}"
        )
    return labels.to(device=device, dtype=torch.long)


def check_class_range(values: torch.Tensor, num_classes: int, name: str) -> None:
    if bool((values < 0).any()) or bool((values >= num_classes).any()):
        raise AttackParameterError(
            f"{name} must lie in 0..{num_classes - 1}, got values in "
            f"{int(values.min())}..{int(values.max())}"
        )


def check_target(target: Any, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``target`` (an int or a (B,) tensor) as a (B,) long tensor; never equal to the label."""
    if isinstance(target, torch.Tensor):
        if target.dim() == 0:
            target = int(target)
        else:
            target = check_labels(target, labels.shape[0], labels.device, "target")
    if not isinstance(target, torch.Tensor):
        target = torch.full_like(labels, _as_int(target, "target"))
    target = target.to(labels.device)
    check_class_range(target, num_classes, "target")
    if bool((target == labels).any()):
        raise AttackParameterError(
            "target equals the true label for some images; a target must be a wrong class"
        )
    return target


def check_model_device(model: nn.Module, images: torch.Tensor) -> None:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    if tensor is not None and tensor.device != images.device:
        raise AttackParameterError(
            f"the model is on {tensor.device} but the images are on {images.device}; "
            "move one of them"
        )


# --------------------------------------------------------------------------- shared pieces


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters while attacking; the old state comes back afterwards.

    Freezing matters for foolbox, which calls ``loss.backward()`` and would otherwise fill
    the parameters' ``.grad``; our own attacks differentiate with respect to the input only.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)


def objective(
    logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None, loss: str
) -> torch.Tensor:
    """Per-sample value an attack *increases*.

    Untargeted: cross-entropy of the label, or the margin (best other logit minus the
    label's logit, > 0 exactly when misclassified), or minus the label's logit. Targeted:
    minus the cross-entropy of the target (= log p_target), or the target's logit minus
    the best other logit, or the target's raw logit.
    """
    if loss == "ce":
        if target is None:
            return F.cross_entropy(logits, labels, reduction="none")
        return -F.cross_entropy(logits, target, reduction="none")
    if loss == "margin":
        cls = labels if target is None else target
        own = logits.gather(1, cls[:, None])[:, 0]
        other = logits.scatter(1, cls[:, None], float("-inf")).amax(dim=1)
        return other - own if target is None else own - other
    if loss == "logit":
        cls = labels if target is None else target
        own = logits.gather(1, cls[:, None])[:, 0]
        return -own if target is None else own
    raise AssertionError(f"unknown loss {loss!r}")


def is_success(
    logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None
) -> torch.Tensor:
    pred = logits.argmax(dim=1)
    return pred != labels if target is None else pred == target


def project(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """Back into the L-infinity eps-ball around ``x0`` and into [0, 1].

    Written as foolbox writes it (``x0 + clip(x - x0)``), so that our PGD and foolbox's
    LinfPGD take bit-identical steps.
    """
    return (x0 + (x - x0).clamp(-eps, eps)).clamp_(0.0, 1.0)


def true_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits.softmax(dim=1).gather(1, labels[:, None])[:, 0]


def derived_seed(seed: int, index: int) -> int:
    """The seed of part ``index`` (a batch, an image) of a run seeded with ``seed``.

    Hashing the pair keeps the parts of different runs apart (``seed + index`` would give
    run 0's batch 1 the seed of run 1's batch 0).
    """
    digest = hashlib.sha256(f"kwta-demo:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # within [0, 2**63 - 1]


def endpoint_rows(
    model: nn.Module,
    images: torch.Tensor,
    adversarial: torch.Tensor,
    labels: torch.Tensor,
    target: torch.Tensor | None,
    loss: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``losses`` and ``true_prob`` rows of an attack that exposes only its final iterate:
    row 0 the clean images, row 1 the adversarial ones."""
    with torch.no_grad():
        logits = model(torch.cat([images, adversarial]))
    both = torch.cat([labels, labels])
    tgt = None if target is None else torch.cat([target, target])
    losses = objective(logits, both, tgt, loss).view(2, -1)
    probs = true_probability(logits, both).view(2, -1)
    return losses, probs


class ImageStreams:
    """One random stream per image of a batch, seeded from that image's own seed.

    What image ``i`` draws depends on ``seeds[i]`` only, never on the batch it shares or
    its place in it: an evaluation split into other batches, or over several processes,
    gives every image the same noise. Attacks never touch the global RNG through this.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device) -> None:
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self._generators: dict[int, torch.Generator] = {}

    def __len__(self) -> int:
        return len(self.seeds)

    def generator(self, row: int) -> torch.Generator:
        """The generator of image ``row`` of the batch, created on first use."""
        if row not in self._generators:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(self.seeds[row])
            self._generators[row] = gen
        return self._generators[row]

    def _rows(self, rows: torch.Tensor | None, count: int) -> list[int]:
        picked = list(range(len(self))) if rows is None else [int(r) for r in rows]
        if len(picked) != count:
            raise ValueError(f"{count} images but {len(picked)} stream rows")
        return picked

    def uniform(self, like: torch.Tensor, low: float, high: float,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """Uniform noise shaped like ``like`` (B, ...), image ``b`` drawn from stream ``rows[b]``."""
        return torch.stack([
            torch.empty(like.shape[1:], device=like.device, dtype=like.dtype)
            .uniform_(low, high, generator=self.generator(r))
            for r in self._rows(rows, like.shape[0])
        ])

    def normal(self, count: int, like: torch.Tensor,
               rows: torch.Tensor | None = None) -> torch.Tensor:
        """``count`` standard normal draws per image: shape (count, B, ...) for ``like`` (B, ...).

        Each draw is its own call of one image's shape, so an image's k-th draw is the same
        however the caller groups its draws into rounds.
        """
        shape = tuple(like.shape[1:])
        return torch.stack([
            torch.stack([torch.randn(shape, generator=self.generator(r), device=like.device,
                                     dtype=like.dtype) for _ in range(count)])
            for r in self._rows(rows, like.shape[0])
        ], dim=1)


def batch_seeds(seed: int | Sequence[int], batch: int) -> list[int]:
    """Per-image seeds: a sequence as given (one per image), an int ``s`` as
    ``derived_seed(s, i)`` for image ``i`` of the batch."""
    if isinstance(seed, (list, tuple, torch.Tensor)):
        seeds = [check_seed(s) for s in (seed.tolist() if isinstance(seed, torch.Tensor) else seed)]
        if len(seeds) != batch:
            raise AttackParameterError(f"{len(seeds)} seeds for {batch} images; give one per image")
        return seeds
    seed = check_seed(seed)
    return [derived_seed(seed, i) for i in range(batch)]
