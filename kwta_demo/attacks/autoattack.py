"""The standard AutoAttack ensemble, from its authors' package (``pyautoattack``: Croce and
Hein's reference code).

RobustBench ranks models by this ensemble: APGD-CE, then APGD-T (APGD on the targeted DLR
loss, the nine other classes in turn), then FAB-T, then Square with 5,000 queries, each
attack run from the clean image on the images the ones before it left standing. Here one
image is attacked per call (its random draws seeded from its own seed, as for every
attack), and each of the ensemble's attacks is run in turn through ``AutoAttack`` with the
standard version's settings until one fools the image: per image, exactly what the
ensemble computes. What AutoAttack's own checks say (its flags for a randomised model and
for zero gradients, `flags_doc.md` in its repository) is kept per image, and so is which
attack fooled it, so that "Square fooled what the white-box attacks could not" can be
counted as AutoAttack's last check counts it.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .base import MAX_STEPS, AttackSpec, Param, RawOutput, endpoint_rows, project

__all__ = ["AUTOATTACK", "ENSEMBLES", "STANDARD", "FLAGS"]

STANDARD = "apgd-ce+apgd-t+fab-t+square"
"""The standard version's attacks, in its order."""
ENSEMBLES = (STANDARD, "apgd-ce+apgd-t", "apgd-ce", "apgd-t", "fab-t", "square")
FLAGS = {"randomized": "it seems to be a randomized defense",
         "zero_gradient": "points with zero gradient"}
"""AutoAttack's warnings that a per-image flag records (a substring of each message)."""


class _Warnings(logging.Handler):
    """Collects the messages of AutoAttack's logger during one call."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _caught() -> Iterator[_Warnings]:
    logger = logging.getLogger("auto-attack")
    handler, propagate = _Warnings(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # its flags land in the row, not in the log of every image
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _version() -> str:
    import pyautoattack

    return pyautoattack.__version__


def _run(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, target, *, eps: float,
         rng, attacks: str, n_iter: int, n_target_classes: int,
         square_queries: int) -> RawOutput:
    from pyautoattack import AutoAttack

    names = attacks.split("+")
    adversary = AutoAttack(model, norm="Linf", eps=eps, version="standard",
                           seed=rng.seeds[0] % 2**31, device=images.device)
    adversary.verbose = False
    for sub in (adversary.apgd, adversary.apgd_targeted, adversary.fab):
        sub.n_iter = n_iter
    adversary.apgd_targeted.n_target_classes = n_target_classes
    adversary.fab.n_target_classes = n_target_classes
    adversary.square.n_queries = square_queries
    adversarial, fooled_by = images, 0
    with torch.no_grad():
        correct = bool((model(images).argmax(1) == labels).all())
    with _caught() as caught, torch.random.fork_rng(devices=[]):  # AutoAttack seeds globally
        for i, name in enumerate(names if correct else (), start=1):
            adversary.attacks_to_run = [name]
            x_adv, y_adv = adversary.run_standard_evaluation(images, labels,
                                                             batch_size=len(images))
            if not bool((y_adv == labels).all()):
                adversarial, fooled_by = x_adv, i
                break
    adversarial = project(adversarial.detach().to(images.dtype), images, eps)
    losses, probs = endpoint_rows(model, images, adversarial, labels, None, "ce")
    info = {"fooled_by": torch.tensor([fooled_by], device=images.device)}
    for flag, text in FLAGS.items():
        info[f"flag_{flag}"] = torch.tensor([any(text in m for m in caught.messages)],
                                            device=images.device)
    return RawOutput(adversarial, losses, probs, info,
                     {"per_step": False, "backend": f"pyautoattack {_version()} AutoAttack",
                      "recorded_loss": "ce"})


_STANDARD = {"attacks": STANDARD, "n_iter": 100, "n_target_classes": 9, "square_queries": 5000}

AUTOATTACK = AttackSpec(
    name="autoattack",
    title="AutoAttack (standard ensemble)",
    description=(
        "The standard AutoAttack of Croce and Hein (2020), from their own package: APGD-CE, "
        "APGD-T over the nine other classes, FAB-T, and the gradient-free Square with 5,000 "
        "queries, each run on the images the ones before it left standing. The number "
        "RobustBench ranks CIFAR-10 models by. Untargeted; its checks (a randomised model, "
        "zero gradients, Square fooling what the white-box attacks did not) are recorded."
    ),
    run=_run,
    params={
        "attacks": Param("attacks", "choice", "AutoAttack's attacks run, in its order",
                         choices=ENSEMBLES),
        "n_iter": Param("n_iter", "int", "iterations of APGD, APGD-T and FAB-T", 1, MAX_STEPS),
        "n_target_classes": Param("n_target_classes", "int",
                                  "target classes of APGD-T and FAB-T (the highest logits)", 1, 9),
        "square_queries": Param("square_queries", "int", "Square's queries", 1, 20_000),
    },
    presets={
        "interactive": {"attacks": "apgd-ce+apgd-t", "n_iter": 20, "n_target_classes": 3,
                        "square_queries": 300},
        "paper": _STANDARD,
        "standard": _STANDARD,
        "apgd-ce-t": {**_STANDARD, "attacks": "apgd-ce+apgd-t"},
        "apgd-t": {**_STANDARD, "attacks": "apgd-t"},
        "fab-t": {**_STANDARD, "attacks": "fab-t"},
    },
    preset_notes={
        "interactive": "APGD-CE then APGD-T on the 3 highest other classes, 20 iterations each "
                       "(a click's budget)",
        "paper": "the standard version (as 'standard')",
        "standard": "the standard version: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), "
                    "Square (5,000 queries); 100 iterations; eps 8/255",
        "apgd-ce-t": "the standard version's white-box pair: APGD-CE then APGD-T (9 targets)",
        "apgd-t": "the standard version's APGD-T alone (9 targets, 100 iterations)",
        "fab-t": "the standard version's FAB-T alone (9 targets, 100 iterations)",
    },
    targeted="no",
    preset_eps={name: 8 / 255 for name in ("paper", "standard", "apgd-ce-t", "apgd-t", "fab-t")},
    global_rng=True,
)
