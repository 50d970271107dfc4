"""One L-infinity gradient loop with pluggable pieces, and FGSM, PGD and VGA built on it.

The loop follows foolbox's ``BaseGradientDescent``: start (clean or random), then
``steps`` times: gradient of the objective, normalise (sign, or L2 for VGA), step,
project into the eps-ball and [0, 1]. Unlike foolbox it records the objective and the
true-class probability of every iterate, and it can keep the last *successful* iterate
(``keep_best``), since the last iterate of a noisy ascent is not always the best one.
The gradient itself is a parameter: the exact input gradient here, a BPDA gradient or a
sampled estimate in ``adaptive.py``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .base import (
    LOSSES,
    MAX_STEP_SIZE,
    MAX_STEPS,
    MIN_STEPS,
    AttackParameterError,
    AttackSpec,
    ImageStreams,
    Param,
    RawOutput,
    is_success,
    objective,
    project,
    true_probability,
)

__all__ = [
    "GradientFn",
    "ascend",
    "input_gradient",
    "recording_iterates",
    "step_size_of",
    "FGSM",
    "PGD",
    "VGA",
    "STEP_PARAMS",
]

GradientFn = Callable[
    [torch.Tensor, torch.Tensor, "torch.Tensor | None", int, torch.Tensor],
    "tuple[torch.Tensor, torch.Tensor]",
]
"""``(x, labels, target, iteration, rows) -> (logits at x, gradient of the summed
objective)``; ``rows`` are the batch rows of ``x`` (the images still being attacked)."""


_RECORDER: contextvars.ContextVar[list[torch.Tensor] | None] = contextvars.ContextVar(
    "kwta_demo_iterates", default=None)


@contextlib.contextmanager
def recording_iterates() -> Iterator[list[torch.Tensor]]:
    """Inside the block, every gradient-loop attack (FGSM, PGD, VGA, BPDA, gradient
    estimation) appends its iterates to the yielded list: the start, then the input after
    each step (``steps + 1`` tensors shaped like the batch). Per thread and per task, so
    concurrent requests do not mix; attacks from other libraries record nothing."""
    iterates: list[torch.Tensor] = []
    token = _RECORDER.set(iterates)
    try:
        yield iterates
    finally:
        _RECORDER.reset(token)


def input_gradient(model: nn.Module, loss: str) -> GradientFn:
    """The exact gradient of the objective with respect to the input (never the weights)."""

    def gradient(
        x: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None, iteration: int,
        rows: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        logits = model(x)
        value = objective(logits, labels, target, loss)
        (grad,) = torch.autograd.grad(value.sum(), x)
        return logits.detach(), grad

    return gradient


def _normalise(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "sign":
        return grad.sign()
    # "l2": unit L2 direction scaled by sqrt(D), so that a step of size s changes the
    # pixels by s in root-mean-square whatever the image size (see VGA).
    flat = grad.flatten(1)
    scale = math.sqrt(flat.shape[1]) / flat.norm(dim=1).clamp_min(1e-12)
    return grad * scale.view(-1, *([1] * (grad.dim() - 1)))


def ascend(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    target: torch.Tensor | None,
    *,
    eps: float,
    steps: int,
    step_size: float,
    loss: str,
    gradient: GradientFn,
    rng: ImageStreams,
    random_start: bool = False,
    norm: str = "sign",
    keep_best: bool = True,
    early_stop: bool = False,
) -> RawOutput:
    """Projected gradient ascent of ``objective(loss)`` in the L-infinity eps-ball.

    ``early_stop`` freezes a sample at its first successful iterate (and skips its
    gradients from then on). ``keep_best`` returns, for a sample whose last iterate is not
    successful, the latest iterate that was. Rows of ``losses`` and ``true_prob``:
    iterate 0 (the start) to iterate ``steps``; a frozen sample repeats its last values.
    """
    x0 = images
    batch = x0.shape[0]
    if random_start:
        noise = rng.uniform(x0, -eps, eps)
        x = (x0 + noise).clamp_(0.0, 1.0)
    else:
        x = x0.clone()
    losses = x0.new_zeros(steps + 1, batch)
    probs = x0.new_zeros(steps + 1, batch)
    best = x.clone()
    found = torch.zeros(batch, dtype=torch.bool, device=x0.device)
    first = torch.full((batch,), -1, dtype=torch.long, device=x0.device)
    active = torch.ones(batch, dtype=torch.bool, device=x0.device)

    def record(t: int, idx: torch.Tensor, logits: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        tgt = None if target is None else target[idx]
        losses[t, idx] = objective(logits, labels[idx], tgt, loss).detach().to(losses.dtype)
        probs[t, idx] = true_probability(logits, labels[idx]).to(probs.dtype)
        succ = is_success(logits, labels[idx], tgt)
        hit = idx[succ]
        best[hit] = xs[succ]
        found[hit] = True
        first[hit] = torch.where(first[hit] < 0, torch.full_like(first[hit], t), first[hit])
        return succ

    recorder = _RECORDER.get()
    for t in range(steps):
        if recorder is not None:
            recorder.append(x.detach().clone())
        if t > 0:  # frozen samples keep their last values
            losses[t], probs[t] = losses[t - 1], probs[t - 1]
        idx = active.nonzero()[:, 0]
        if idx.numel() == 0:
            continue
        xa = x[idx]
        tgt = None if target is None else target[idx]
        logits, grad = gradient(xa, labels[idx], tgt, t, idx)
        succ = record(t, idx, logits, xa)
        if early_stop:
            active[idx[succ]] = False
            keep = ~succ
            idx, xa, grad = idx[keep], xa[keep], grad[keep]
        x[idx] = project(xa + step_size * _normalise(grad, norm), x0[idx], eps)

    with torch.no_grad():
        everyone = torch.arange(batch, device=x0.device)
        record(steps, everyone, model(x), x)
    if recorder is not None:
        recorder.append(x.detach().clone())

    adversarial = torch.where(found.view(-1, 1, 1, 1), best, x) if keep_best else x
    return RawOutput(
        adversarial=adversarial.detach(),
        losses=losses,
        true_prob=probs,
        info={"first_success": first},
        notes={},
    )


# --------------------------------------------------------------------------- parameters

STEP_PARAMS: dict[str, Param] = {
    "steps": Param("steps", "int", "number of gradient steps", MIN_STEPS, MAX_STEPS),
    "step_size": Param(
        "step_size", "float", "absolute step size in pixel units (per step, L-inf)",
        0.0, MAX_STEP_SIZE, low_open=True, optional=True,
    ),
    "rel_step_size": Param(
        "rel_step_size", "float", "step size as a fraction of eps (foolbox's rel_stepsize)",
        0.0, MAX_STEP_SIZE, low_open=True, optional=True,
    ),
    "random_start": Param("random_start", "bool", "start from a uniform point in the eps-ball"),
    "loss": Param("loss", "choice", "objective: cross-entropy or logit margin", choices=LOSSES),
    "keep_best": Param(
        "keep_best", "bool", "return the latest successful iterate rather than the last one"
    ),
}


def step_size_of(params: dict[str, Any], eps: float) -> float:
    """The absolute step: ``step_size``, or ``rel_step_size * eps``."""
    if params.get("step_size") is not None:
        return float(params["step_size"])
    return float(params["rel_step_size"]) * eps


# --------------------------------------------------------------------------- FGSM


def _run_fgsm(model, images, labels, target, *, eps, rng, loss) -> RawOutput:
    raw = ascend(
        model, images, labels, target, eps=eps, steps=1, step_size=eps, loss=loss,
        gradient=input_gradient(model, loss), rng=rng, keep_best=False,
    )
    return raw._replace(notes={"steps": 1, "abs_step_size": eps})


FGSM = AttackSpec(
    name="fgsm",
    title="FGSM",
    description="Fast gradient sign method (Goodfellow et al. 2015): one signed step of size eps.",
    run=_run_fgsm,
    params={"loss": STEP_PARAMS["loss"]},
    presets={"interactive": {"loss": "ce"}, "paper": {"loss": "ce"}},
    preset_notes={
        "interactive": "one step of eps on the cross-entropy",
        "paper": "one step of eps on the cross-entropy",
    },
)


# --------------------------------------------------------------------------- PGD


def _run_pgd(
    model, images, labels, target, *, eps, rng, steps, step_size, rel_step_size,
    random_start, loss, keep_best, backend,
) -> RawOutput:
    step = step_size_of({"step_size": step_size, "rel_step_size": rel_step_size}, eps)
    notes = {"abs_step_size": step, "max_travel": min(eps, steps * step)}
    if backend == "foolbox":
        from .foolbox_attacks import (
            foolbox_pgd,  # foolbox is imported only when asked for
        )

        raw = foolbox_pgd(
            model, images, labels, target, eps=eps, steps=steps, step_size=step,
            random_start=random_start, seed=rng.seeds[0], loss=loss,
        )
        return raw._replace(notes={**raw.notes, **notes})
    raw = ascend(
        model, images, labels, target, eps=eps, steps=steps, step_size=step, loss=loss,
        gradient=input_gradient(model, loss), rng=rng,
        random_start=random_start, keep_best=keep_best,
    )
    return raw._replace(notes=notes)


def _check_pgd(params: dict[str, Any]) -> None:
    if params["backend"] == "foolbox" and params["loss"] != "ce":
        raise AttackParameterError("pgd: the foolbox backend supports loss='ce' only")


PGD = AttackSpec(
    name="pgd",
    title="PGD (L-inf)",
    description=(
        "Projected gradient descent (Madry et al. 2018), L-inf, signed steps. The 'report' "
        "preset is what the reproduction report ran (§3.3: '40 steps with random starting and "
        "a relative step size of 0.003'; its final notebook: foolbox LinfPGD(steps=40, "
        "random_start=True, rel_stepsize=0.003)): a step of 0.003 x eps = 9.3e-5 at "
        "eps=0.031, 0.0037 in all, an eighth of the ball's radius. The 'corrected' preset "
        "takes the absolute step 0.003 (40 steps reach 0.12, four times the radius), as the "
        "notebook did before its last change; 'paper' is the k-WTA authors' PGD."
    ),
    run=_run_pgd,
    params={
        **STEP_PARAMS,
        "backend": Param(
            "backend", "choice", "'torch' (own loop, per-step curves) or 'foolbox' (LinfPGD)",
            choices=("torch", "foolbox"),
        ),
    },
    presets={
        "interactive": {
            "steps": 10, "rel_step_size": 0.25, "random_start": True, "loss": "ce",
            "keep_best": True, "backend": "torch",
        },
        "paper": {
            "steps": 20, "step_size": 0.007, "random_start": True, "loss": "ce",
            "keep_best": True, "backend": "torch",
        },
        "report": {
            "steps": 40, "rel_step_size": 0.003, "random_start": True, "loss": "ce",
            "keep_best": False, "backend": "torch",
        },
        "corrected": {
            "steps": 40, "step_size": 0.003, "random_start": True, "loss": "ce",
            "keep_best": False, "backend": "torch",
        },
    },
    preset_notes={
        "interactive": "10 steps of eps/4 (Madry's 2.5*eps/steps), random start",
        "paper": "the k-WTA authors' code: 20 steps of 0.007, random start",
        "report": (
            "what the report ran: 40 steps, random start, relative step 0.003 (foolbox "
            "rel_stepsize: 9.3e-5 per step at eps=0.031, 0.0037 in all, 0.12 eps)"
        ),
        "corrected": "40 steps of 0.003 absolute, random start: the report's attack with a step "
                     "that can cross the ball",
    },
    exclusive=(("step_size", "rel_step_size"),),
    preset_eps={"report": 0.031, "corrected": 0.031, "paper": 0.031},
    check=_check_pgd,
    global_rng=lambda p: p["backend"] == "foolbox" and p["random_start"],
)


# --------------------------------------------------------------------------- VGA

REPORT_VGA_RMS_STEP = 10 / math.sqrt(3 * 224 * 224)
"""The report's VGA step (L2 length 10 on 3x224x224 inputs) as an RMS change per pixel."""


def _run_vga(model, images, labels, target, *, eps, rng, steps, step_size, loss):
    raw = ascend(
        model, images, labels, target, eps=eps, steps=steps, step_size=step_size, loss=loss,
        gradient=input_gradient(model, loss), rng=rng,
        norm="l2", early_stop=True, keep_best=True,
    )
    info = {**raw.info, "steps_to_success": raw.info["first_success"]}
    notes = {"step_l2": step_size * math.sqrt(images[0].numel()), "norm": "l2"}
    return raw._replace(info=info, notes=notes)


VGA = AttackSpec(
    name="vga",
    title="Targeted vanilla gradient ascent",
    description=(
        "After the report's VGA: gradient ascent on log p(target) with L2-normalised steps, at "
        "most `steps` steps, stopping per image once the target is predicted; projected into "
        "the eps-ball. Step scale: `step_size` is the root-mean-square change per pixel, so the "
        "L2 length of a step is step_size*sqrt(3*32*32) = 55.4*step_size on 32x32 inputs. "
        "The default 1/255 moves ~8 steps to cross an 8/255 ball along a dense direction, "
        "which leaves room to count steps up to 20. `steps_to_success` in info: -1 = never. "
        "The 'report' preset is the report's VGA (§3.3: 'targeted vanilla gradient ascent "
        "... 20 maximum steps and a step size of 10', on each of the 9 wrong targets): ascent "
        "on the raw target logit, L2 steps of 10 on its 3x224x224 inputs, i.e. RMS "
        "10/sqrt(150528) = 0.0258 per pixel, and no eps-ball (eps = 1: only [0, 1] binds). "
        "The 'paper' and 'interactive' presets are ours: log p(target), RMS 1/255, inside "
        "the eps-ball."
    ),
    run=_run_vga,
    params={
        "steps": STEP_PARAMS["steps"],
        "step_size": Param(
            "step_size", "float", "RMS change per pixel per step (L2 step / sqrt(pixels))",
            0.0, MAX_STEP_SIZE, low_open=True,
        ),
        "loss": Param(
            "loss", "choice", "'ce' = ascend log p(target); 'margin' = target logit margin; "
            "'logit' = the raw target logit (the report's)", choices=LOSSES,
        ),
    },
    presets={
        "interactive": {"steps": 20, "step_size": 1 / 255, "loss": "ce"},
        "paper": {"steps": 20, "step_size": 1 / 255, "loss": "ce"},
        "report": {"steps": 20, "step_size": REPORT_VGA_RMS_STEP, "loss": "logit"},
    },
    preset_notes={
        "interactive": "ours: at most 20 L2-normalised steps of RMS 1/255 per pixel, eps-bounded",
        "paper": "ours: at most 20 L2-normalised steps of RMS 1/255 per pixel, eps-bounded "
                 "(the report's 20 steps)",
        "report": "the report's VGA: raw target logit, at most 20 L2 steps of 10 on 3x224x224 "
                  "(RMS 0.0258 per pixel), no eps-ball (eps = 1)",
    },
    preset_eps={"report": 1.0},
    targeted="required",
)
