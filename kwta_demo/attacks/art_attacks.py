"""AutoAttack's APGD-CE, APGD-DLR and Square, from the Adversarial Robustness Toolbox.

APGD (Croce and Hein 2020) is PGD with a step size that adapts per image and a momentum
term; with the DLR loss it is scale-invariant, so a model whose logits are merely large
cannot hide behind a saturated cross-entropy. Square (Andriushchenko et al. 2020) queries
the model's scores only, never its gradients: gradient masking cannot stop it. Both run
through ART's ``PyTorchClassifier`` (inputs in [0, 1], the model's logits), with its own
random draws seeded from ours; they expose only their final iterate, so ``losses`` and
``true_prob`` hold two rows, clean and final (``per_step: False``). The attacks are
ART's; only their settings and results pass through here.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .base import MAX_STEPS, AttackSpec, Param, RawOutput, endpoint_rows, project

__all__ = ["APGD_CE", "APGD_DLR", "SQUARE"]


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """ART draws from numpy's and torch's global generators: seed both, then put them back."""
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def _classifier(model: nn.Module, images: torch.Tensor, num_classes: int):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(images.shape[1:]),
        nb_classes=num_classes, clip_values=(0.0, 1.0),
        device_type="gpu" if images.device.type == "cuda" else "cpu",
    )


def _num_classes(model: nn.Module, images: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(images[:1]).shape[1])


def _finish(model, images, adversarial, labels, target, eps, backend: str) -> RawOutput:
    # ART keeps its result inside the ball; project once more so float32 rounding in its
    # numpy arithmetic cannot leave a pixel a hair outside eps or [0, 1].
    adv = project(torch.from_numpy(adversarial).to(images.device, images.dtype), images, eps)
    losses, probs = endpoint_rows(model, images, adv, labels, target, "ce")
    return RawOutput(adv, losses, probs, {}, {"per_step": False, "backend": backend,
                                              "recorded_loss": "ce"})


def _run_apgd(loss_type: str):
    def run(model, images, labels, target, *, eps, rng, steps, rel_step_size,
            restarts) -> RawOutput:
        from art.attacks.evasion import AutoProjectedGradientDescent

        n_classes = _num_classes(model, images)
        attack = AutoProjectedGradientDescent(
            _classifier(model, images, n_classes), norm=np.inf, eps=eps,
            eps_step=rel_step_size * eps, max_iter=steps, targeted=target is not None,
            nb_random_init=restarts, batch_size=len(images), loss_type=loss_type, verbose=False,
        )
        y = (target if target is not None else labels).cpu().numpy()
        with _seeded(rng.seeds[0]):  # one image per call (global_rng)
            adversarial = attack.generate(x=images.detach().cpu().numpy(), y=y)
        return _finish(model, images, adversarial, labels, target, eps,
                       f"ART {_art_version()} AutoProjectedGradientDescent")

    return run


def _art_version() -> str:
    import art

    return art.__version__


_APGD_PARAMS = {
    "steps": Param("steps", "int", "iterations per restart", 1, MAX_STEPS),
    "rel_step_size": Param("rel_step_size", "float",
                           "first step as a multiple of eps (APGD then halves it as it stalls)",
                           0.0, 10.0, low_open=True),
    "restarts": Param("restarts", "int", "random restarts (the best result is kept)", 1, 100),
}
_APGD_PRESETS = {
    "interactive": {"steps": 20, "rel_step_size": 2.0, "restarts": 1},
    "paper": {"steps": 100, "rel_step_size": 2.0, "restarts": 1},
}


def _apgd_notes(loss: str) -> dict[str, str]:
    return {
        "interactive": f"20 APGD iterations on the {loss}, one random start (a click's budget)",
        "paper": f"AutoAttack's standard APGD-{'CE' if loss == 'cross-entropy' else 'DLR'}: "
                      "100 iterations, first step 2 eps, one random start",
    }


def _apgd_spec(name: str, loss_type: str, loss: str, description: str) -> AttackSpec:
    return AttackSpec(
        name=name, title=f"{name.upper()} (AutoAttack)",
        description=description, run=_run_apgd(loss_type), params=_APGD_PARAMS,
        presets=_APGD_PRESETS, preset_notes=_apgd_notes(loss), preset_eps={"paper": 0.031},
        global_rng=True,
    )


APGD_CE = _apgd_spec(
    "apgd-ce", "cross_entropy", "cross-entropy",
    "Auto-PGD on the cross-entropy (Croce and Hein 2020), L-inf, from the Adversarial "
    "Robustness Toolbox: PGD with momentum and a per-image step size that halves when the "
    "loss stalls. The first attack of AutoAttack.")
APGD_DLR = _apgd_spec(
    "apgd-dlr", "difference_logits_ratio", "DLR loss",
    "Auto-PGD on the difference-of-logits-ratio loss (Croce and Hein 2020), from the "
    "Adversarial Robustness Toolbox: invariant to the scale of the logits, so a model "
    "cannot escape it by saturating its softmax. AutoAttack runs it targeted (APGD-T).")


def _run_square(model, images, labels, target, *, eps, rng, queries, p_init,
                restarts) -> RawOutput:
    from art.attacks.evasion import SquareAttack

    attack = SquareAttack(
        _classifier(model, images, _num_classes(model, images)), norm=np.inf, eps=eps,
        max_iter=queries, p_init=p_init, nb_restarts=restarts, batch_size=len(images),
        verbose=False,
    )
    with _seeded(rng.seeds[0]):  # one image per call (global_rng)
        adversarial = attack.generate(x=images.detach().cpu().numpy(), y=labels.cpu().numpy())
    return _finish(model, images, adversarial, labels, None, eps,
                   f"ART {_art_version()} SquareAttack")


SQUARE = AttackSpec(
    name="square",
    title="Square (score-based, no gradients)",
    description=(
        "Square Attack (Andriushchenko et al. 2020), L-inf, from the Adversarial Robustness "
        "Toolbox: random square-shaped updates at the corners of the eps-ball, kept when the "
        "margin loss falls. It reads the model's scores only, never a gradient, so gradient "
        "masking cannot stop it. The last attack of AutoAttack. Untargeted."
    ),
    run=_run_square,
    params={
        "queries": Param("queries", "int", "iterations (one model query per image each)",
                         1, 20_000),
        "p_init": Param("p_init", "float", "initial share of pixels a square covers", 0.0, 1.0,
                        low_open=True),
        "restarts": Param("restarts", "int", "restarts", 1, 100),
    },
    presets={
        "interactive": {"queries": 300, "p_init": 0.8, "restarts": 1},
        "cpu": {"queries": 1000, "p_init": 0.8, "restarts": 1},
        "paper": {"queries": 5000, "p_init": 0.8, "restarts": 1},
    },
    preset_notes={
        "interactive": "300 queries, p_init 0.8 (a click's budget)",
        "cpu": "1,000 queries, p_init 0.8 (the evaluation's CPU budget)",
        "paper": "AutoAttack's standard Square: 5,000 queries, p_init 0.8, one run",
    },
    targeted="no",
    preset_eps={"cpu": 0.031, "paper": 0.031},
    global_rng=True,
)
