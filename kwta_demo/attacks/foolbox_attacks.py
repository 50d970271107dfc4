"""DeepFool (L-inf) and Carlini-Wagner (L2) from foolbox, and foolbox's LinfPGD as a backend.

Foolbox exposes only its final iterate, so these attacks record two rows of ``losses``
and ``true_prob``: the clean image and the returned adversarial (``per_step: False``).
Their raw results may lie outside the eps-ball; the returned adversarial is the raw one
clipped into the L-infinity eps-ball, exactly as foolbox's own ``epsilons=eps`` does for
an L-inf attack, so success is counted within eps. The raw result and its sizes are kept
in ``info`` (``raw_adversarial``, ``raw_linf``, ``raw_l2``, ``raw_success``: C&W's own
criterion, with no eps limit).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .base import (
    MAX_STEPS,
    AttackSpec,
    Param,
    RawOutput,
    endpoint_rows,
    is_success,
    project,
)

__all__ = ["DEEPFOOL", "CW", "foolbox_pgd"]


def _fmodel(model: nn.Module, device: torch.device):
    import foolbox as fb

    return fb.PyTorchModel(model, bounds=(0.0, 1.0), device=device)


def _criterion(labels: torch.Tensor, target: torch.Tensor | None):
    import foolbox as fb

    if target is None:
        return fb.criteria.Misclassification(labels)
    return fb.criteria.TargetedMisclassification(target)


@contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Foolbox draws from the global RNG: seed it inside a fork so the caller's state survives."""
    cuda = device.type == "cuda"
    index = device.index if device.index is not None else 0
    if cuda and device.index is None:
        index = torch.cuda.current_device()
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def _clipped(
    model: nn.Module,
    images: torch.Tensor,
    raw: torch.Tensor,
    raw_success: torch.Tensor,
    labels: torch.Tensor,
    target: torch.Tensor | None,
    eps: float,
) -> RawOutput:
    """A minimisation attack's raw result clipped into the eps-ball; the raw one in info."""
    adversarial = project(raw, images, eps)
    losses, probs = endpoint_rows(model, images, adversarial, labels, target, "margin")
    raw_linf, raw_l2 = _sizes(raw - images)
    info = {
        "raw_adversarial": raw, "raw_linf": raw_linf, "raw_l2": raw_l2, "raw_success": raw_success,
    }
    notes = {"per_step": False, "recorded_loss": "margin"}
    return RawOutput(adversarial, losses, probs, info, notes)


def _sizes(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1), flat.norm(dim=1)


def foolbox_pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    target: torch.Tensor | None,
    *,
    eps: float,
    steps: int,
    step_size: float,
    random_start: bool,
    seed: int,
    loss: str = "ce",
) -> RawOutput:
    """foolbox ``LinfPGD(abs_stepsize=step_size, steps, random_start)`` at ``eps``."""
    import foolbox as fb

    attack = fb.attacks.LinfPGD(abs_stepsize=step_size, steps=steps, random_start=random_start)
    with _seeded(images.device, seed):
        adversarial = attack.run(
            _fmodel(model, images.device), images, _criterion(labels, target), epsilon=eps
        )
    losses, probs = endpoint_rows(model, images, adversarial, labels, target, loss)
    return RawOutput(adversarial, losses, probs, {}, {"per_step": False, "backend": "foolbox"})


# --------------------------------------------------------------------------- DeepFool


def _run_deepfool(
    model, images, labels, target, *, eps, rng, steps, candidates, overshoot, loss
) -> RawOutput:
    import foolbox as fb

    attack = fb.attacks.LinfDeepFoolAttack(
        steps=steps, candidates=candidates, overshoot=overshoot,
        loss={"logits": "logits", "ce": "crossentropy"}[loss],
    )
    raw = attack.run(_fmodel(model, images.device), images, _criterion(labels, None))
    with torch.no_grad():
        raw_success = is_success(model(raw), labels, None)
    return _clipped(model, images, raw, raw_success, labels, None, eps)


DEEPFOOL = AttackSpec(
    name="deepfool",
    title="DeepFool (L-inf)",
    description=(
        "foolbox's LinfDeepFoolAttack (Moosavi-Dezfooli et al. 2016): linearise the decision "
        "boundaries of the top candidate classes and step to the nearest one. A minimal-"
        "perturbation attack: its result is clipped into the eps-ball and success is counted "
        "only there. Untargeted only."
    ),
    run=_run_deepfool,
    params={
        "steps": Param("steps", "int", "maximum DeepFool iterations", 1, MAX_STEPS),
        "candidates": Param("candidates", "int", "most likely classes considered", 2, 1000),
        "overshoot": Param("overshoot", "float", "relative overshoot of each step", 0.0, 1.0),
        "loss": Param("loss", "choice", "'logits' (difference of logits) or 'ce'",
                      choices=("logits", "ce")),
    },
    presets={
        "interactive": {"steps": 10, "candidates": 4, "overshoot": 0.02, "loss": "logits"},
        "paper": {"steps": 20, "candidates": 10, "overshoot": 0.02, "loss": "logits"},
    },
    preset_notes={
        "interactive": "10 steps, the 4 most likely classes",
        "paper": "the report's setting: 20 steps, 10 candidates (foolbox overshoot 0.02)",
    },
    targeted="no",
    preset_eps={"paper": 0.031},
)


# --------------------------------------------------------------------------- Carlini-Wagner


def _run_cw(
    model, images, labels, target, *, eps, rng, binary_search_steps, steps,
    stepsize, confidence, initial_const, abort_early,
) -> RawOutput:
    import foolbox as fb

    attack = fb.attacks.L2CarliniWagnerAttack(
        binary_search_steps=binary_search_steps, steps=steps, stepsize=stepsize,
        confidence=confidence, initial_const=initial_const, abort_early=abort_early,
    )
    raw = attack.run(_fmodel(model, images.device), images, _criterion(labels, target))
    with torch.no_grad():
        raw_success = is_success(model(raw), labels, target)
    # foolbox returns an all-zero image where it found nothing: fall back to the clean one.
    raw = torch.where(raw_success.view(-1, 1, 1, 1), raw, images)
    return _clipped(model, images, raw, raw_success, labels, target, eps)


CW = AttackSpec(
    name="cw",
    title="Carlini-Wagner (L2)",
    description=(
        "foolbox's L2CarliniWagnerAttack (Carlini and Wagner 2017): Adam on a tanh "
        "reparametrisation, minimising L2 size plus c times the logit margin, with a binary "
        "search over c. Its minimal-L2 result (info['raw_adversarial'], 'raw_l2', "
        "'raw_success') is clipped into the L-inf eps-ball for `adversarial` and `success`."
    ),
    run=_run_cw,
    params={
        "binary_search_steps": Param("binary_search_steps", "int", "searches over c", 1, 100),
        "steps": Param("steps", "int", "Adam steps per search", 1, MAX_STEPS),
        "stepsize": Param("stepsize", "float", "Adam learning rate", 0.0, 1.0, low_open=True),
        "confidence": Param("confidence", "float", "required logit margin", 0.0, 1e4),
        "initial_const": Param("initial_const", "float", "first c of the search", 0.0, 1e10,
                               low_open=True),
        "abort_early": Param("abort_early", "bool", "stop a search once the loss stalls"),
    },
    presets={
        "interactive": {
            "binary_search_steps": 2, "steps": 10, "stepsize": 0.05, "confidence": 0.0,
            "initial_const": 1.0, "abort_early": True,
        },
        "paper": {
            "binary_search_steps": 5, "steps": 10, "stepsize": 0.01, "confidence": 0.0,
            "initial_const": 0.01, "abort_early": True,
        },
        "foolbox": {
            "binary_search_steps": 9, "steps": 10_000, "stepsize": 0.01, "confidence": 0.0,
            "initial_const": 1e-3, "abort_early": True,
        },
    },
    preset_notes={
        "interactive": "2 searches x 10 Adam steps (lr 0.05) from c=1: a quick, weak C&W",
        "paper": "the k-WTA authors' evaluation (a554b554/kWTA-Activation@852b6e12, "
                 "config/eval/attacks_cifar.json): 5 searches x 10 steps, lr 0.01, c=0.01, "
                 "success counted within L-inf 0.031",
        "foolbox": "foolbox 3.3.4's defaults: 9 searches x up to 10000 steps from c=0.001",
    },
    preset_eps={"paper": 0.031},
)
