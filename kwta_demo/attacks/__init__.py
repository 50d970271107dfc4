"""Adversarial attacks on CIFAR-10 classifiers, all called one way (``run_attack``).

Attacks: ``fgsm``, ``pgd``, ``deepfool``, ``cw``, ``vga``, ``gradient-estimation``,
``bpda``; each with presets ``interactive`` (fast enough to click) and ``paper`` (for the
tables); PGD also ``report`` (as the reproduction report ran it) and ``corrected``.
See ``base.py`` for the conventions shared by every attack.
"""

from .adaptive import SURROGATES, bpda_surrogate, estimate_gradient
from .base import (
    MAX_EPS,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_STEP_SIZE,
    MAX_STEPS,
    MIN_STEPS,
    AttackParameterError,
    AttackResult,
    AttackSpec,
    Param,
    attack_mode,
)
from .registry import ATTACKS, PRESET_NOTES, PRESETS, get_attack, run_attack

__all__ = [
    "ATTACKS",
    "PRESETS",
    "PRESET_NOTES",
    "AttackParameterError",
    "AttackResult",
    "AttackSpec",
    "Param",
    "run_attack",
    "get_attack",
    "bpda_surrogate",
    "estimate_gradient",
    "attack_mode",
    "SURROGATES",
    "MAX_EPS",
    "MIN_STEPS",
    "MAX_STEPS",
    "MAX_STEP_SIZE",
    "MAX_SAMPLES",
    "MAX_SEED",
]
