"""What the explorer accepts: its limits, the architectures and models on offer, the
attacks and their controls, and the checks every input passes (a bad one raises
``ValueError`` with a message for the user, whatever its JSON type)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..attacks import ATTACKS
from ..models.architectures import ARCHS, CIFAR10_CLASSES

__all__ = ["ARCH_LABELS", "VARIANTS", "UNKNOWN_LABEL", "MAX_EPS_255", "no_progress", "Limits",
           "check_text", "check_arch", "model_names", "class_index", "finite", "eps_from_255",
           "bounded_int", "parse_eps_list", "attack_spec", "check_attack", "attack_names",
           "AttackControls", "attack_controls"]


ARCH_LABELS: dict[str, str] = {"ResNet18": "resnet18", "AlexNet": "alexnet"}
VARIANTS: dict[str, str] = {"ReLU": "relu", "k-WTA γ=0.2": "kwta-0.2", "k-WTA γ=0.1": "kwta-0.1"}
UNKNOWN_LABEL = "unknown: attack each model's own clean prediction"
MAX_EPS_255 = 64.0  # 0.25 of the pixel range: beyond it, an "attack" just paints the image
Progress = Callable[[float, str], None]


def no_progress(_fraction: float, _desc: str) -> None:
    return None


@dataclass(frozen=True)
class Limits:
    """Caps that bound one request's work (the queue bounds how many run at once)."""

    max_steps: int = 200  # an attack's step override
    max_sweep_images: int = 500
    max_sweep_points: int = 10  # epsilon values in one sweep
    time_limit_s: float = 300.0  # any one request, checked at every forward pass
    sweep_batch: int = 50


def check_text(value: Any, what: str) -> str:
    """``value`` as a string, or a ValueError naming ``what`` (API values can be any JSON)."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {value!r}")
    return value


def check_arch(arch: str) -> str:
    value = ARCH_LABELS.get(check_text(arch, "architecture"), arch)
    if value not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose {' or '.join(ARCH_LABELS.values())}")
    return value


def model_names(arch: str, variants: Sequence[str]) -> list[str]:
    """Checkpoint names for an architecture and variant labels (or suffixes), in a fixed order."""
    arch = check_arch(arch)
    if isinstance(variants, str):
        variants = [variants]
    if variants is not None and not isinstance(variants, (list, tuple)):
        raise ValueError(f"variants must be a list of model variants, got {variants!r}")
    if not variants:
        raise ValueError("no model selected: tick at least one of " + ", ".join(VARIANTS))
    suffixes = []
    for v in variants:
        suffix = VARIANTS.get(v, v) if isinstance(v, str) else v
        if suffix not in VARIANTS.values():
            raise ValueError(f"unknown model variant {v!r}; choose from "
                             f"{', '.join(VARIANTS.values())} ({', '.join(VARIANTS)})")
        suffixes.append(suffix)
    return [f"{arch}-{s}" for s in VARIANTS.values() if s in suffixes]


def class_index(value: str | int | float | None, what: str) -> int | None:
    """A class given by name or index; None for empty or 'unknown'."""
    if value is None or value in ("", "none", "unknown", UNKNOWN_LABEL):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if float(value) != int(value) or not 0 <= int(value) < len(CIFAR10_CLASSES):
            raise ValueError(f"{what} must be a class index 0..9 or a class name, got {value!r}")
        return int(value)
    name = str(value).strip().lower()
    if name.isdigit() and 0 <= int(name) < len(CIFAR10_CLASSES):
        return int(name)
    if name not in CIFAR10_CLASSES:
        raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(CIFAR10_CLASSES)}")
    return CIFAR10_CLASSES.index(name)


def finite(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return x


def eps_from_255(eps_255: Any) -> float:
    eps = finite(eps_255, "epsilon")
    if not 0 < eps <= MAX_EPS_255:
        raise ValueError(f"epsilon must lie in (0, {MAX_EPS_255:g}] (in 1/255 units), got {eps_255!r}")
    return eps / 255.0


def bounded_int(value: Any, what: str, lo: int, hi: int) -> int:
    x = finite(value, what)
    if x != int(x) or not lo <= x <= hi:
        raise ValueError(f"{what} must be a whole number in {lo}..{hi}, got {value!r}")
    return int(x)


def parse_eps_list(text: str | Sequence[float], max_points: int = 10) -> list[float]:
    """Epsilons in 1/255 units from '0, 2, 4, 8' (or a list): sorted, unique, each in [0, 64]."""
    if isinstance(text, str):
        parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    elif isinstance(text, (list, tuple)):
        parts = list(text)
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        parts = [text]
    else:
        raise ValueError(f"epsilon values must be a text like '0, 2, 4, 8' or a list, got {text!r}")
    if not parts:
        raise ValueError("give at least one epsilon, e.g. '0, 2, 4, 8' (in 1/255 units)")
    values = sorted({finite(p, "epsilon") for p in parts})
    if values[0] < 0 or values[-1] > MAX_EPS_255:
        raise ValueError(f"each epsilon must lie in [0, {MAX_EPS_255:g}] (1/255 units), got {values}")
    if len(values) > max_points:
        raise ValueError(f"at most {max_points} epsilon values per sweep, got {len(values)}")
    return values


def attack_spec(attack: str):
    """The registry entry of ``attack`` (ValueError naming the choices when unknown)."""
    if not isinstance(attack, str) or attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    return ATTACKS[attack]


def check_attack(attack: str, preset: str) -> Any:
    spec = attack_spec(attack)
    if not isinstance(preset, str) or preset not in spec.presets:
        raise ValueError(f"unknown preset {preset!r} for {attack}; choose from {', '.join(spec.presets)}")
    return spec


def attack_names() -> list[str]:
    """The attacks on offer, in registry order."""
    return list(ATTACKS)


@dataclass(frozen=True)
class AttackControls:
    """What the UI should offer for an attack and preset."""

    presets: list[str]
    has_steps: bool
    has_step_size: bool
    targeted: str  # "no", "optional" or "required"
    eps_255: float | None  # the eps the preset was published with, if any
    note: str  # what the attack and the preset do, in markdown


def attack_controls(attack: str, preset: str | None = None) -> AttackControls:
    """Presets, adjustable parameters, target use and the preset's note for ``attack``."""
    spec = attack_spec(attack)
    presets = list(spec.presets)
    preset = preset if isinstance(preset, str) and preset in spec.presets else presets[0]
    eps = spec.preset_eps.get(preset)
    note = f"**{spec.title}**: {spec.description}\n\nPreset `{preset}`: {spec.preset_notes.get(preset, '')}"
    return AttackControls(presets, "steps" in spec.params, "step_size" in spec.params,
                          spec.targeted, None if eps is None else eps * 255, note)
