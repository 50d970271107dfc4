"""Adaptive attacks against k-WTA, whose robustness is suspected to be gradient masking.

k-WTA is piecewise linear with a discontinuity wherever the set of winners changes, and
the winners change under tiny input changes. The exact gradient only describes the
current linear piece, so a gradient attack can walk away from adversarial regions that a
slightly wider look would reveal. Two ways to take that wider look:

* ``gradient-estimation`` (Tramer, Carlini, Brendel and Madry 2020, "On Adaptive Attacks
  to Adversarial Example Defenses", their k-WTA notebook): estimate the gradient of the
  logit margin from antithetic Gaussian samples ``x +- sigma * u`` (sigma = 8/255), take
  signed steps, and grow the number of samples as the attack proceeds. It never
  differentiates the model, so masking cannot hide from it.
* ``bpda`` (Athalye, Carlini and Wagner 2018): the exact k-WTA in the forward pass, the
  gradient of a smooth surrogate in the backward pass (``bpda_surrogate``).

Both run the shared loop of ``gradient.py``; samples are stacked into the batch
dimension and evaluated in chunks of at most ``chunk_size`` images.
"""

from __future__ import annotations

import bisect
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from ..models.kwta import KWTA, get_kwta_impl, num_winners, threshold
from .base import (
    LOSSES,
    MAX_SAMPLES,
    MAX_STEPS,
    AttackParameterError,
    AttackSpec,
    ImageStreams,
    Param,
    RawOutput,
    objective,
)
from .gradient import STEP_PARAMS, GradientFn, ascend, input_gradient, step_size_of

__all__ = [
    "SURROGATES",
    "bpda_surrogate",
    "estimate_gradient",
    "GRADIENT_ESTIMATION",
    "BPDA",
]

# --------------------------------------------------------------------------- BPDA

SURROGATES = ("sigmoid", "relu", "identity")
"""Backward passes for k-WTA under BPDA.

``sigmoid`` (default): the gradient of ``x * sigmoid((x - theta) / tau)``, a k-WTA whose
hard winner mask is relaxed around the sample's threshold theta (the k-th largest
value, held constant), tau = temperature * the sample's activation std. Units just
below the threshold, the ones a small step can turn into winners, get gradient, which
is exactly what the exact mask gradient hides; as temperature -> 0 it approaches the
exact gradient. ``relu``: the gradient of ReLU (k-WTA is a ReLU with a higher,
input-dependent threshold; the report fine-tunes k-WTA from ReLU models). ``identity``:
the straight-through estimator.
"""


class _SurrogateBackward(torch.autograd.Function):
    """Forward: the exact k-WTA output. Backward: the chosen surrogate's gradient."""

    @staticmethod
    def forward(ctx, x, exact, theta, tau, kind):
        ctx.kind = kind
        ctx.save_for_backward(x, theta, tau)
        return exact.clone()

    @staticmethod
    def backward(ctx, grad_out):
        x, theta, tau = ctx.saved_tensors
        if ctx.kind == "identity":
            local = torch.ones_like(x)
        elif ctx.kind == "relu":
            local = (x > 0).to(x.dtype)
        else:
            s = torch.sigmoid((x - theta) / tau)
            local = s + x * s * (1 - s) / tau
        return grad_out * local, None, None, None, None


_active = threading.local()
"""The BPDA block running in this thread (its token), if any. Hooks only act for their own
block in their own thread, so a plain attack on the same model in another thread (the
app serves several users) keeps the exact gradient."""


class _Swap:
    """The hooks of one ``bpda_surrogate`` block: they act only while it is active here."""

    def __init__(self, kind: str, temperature: float) -> None:
        self.kind, self.temperature = kind, temperature
        self.inputs: dict[int, torch.Tensor] = {}

    def mine(self) -> bool:
        return getattr(_active, "token", None) is self and torch.is_grad_enabled()

    def before(self, module: KWTA, args: tuple[torch.Tensor, ...]):
        if not self.mine():
            return None
        (x,) = args
        self.inputs[id(module)] = x
        # an in-place k-WTA would overwrite the unmasked input the surrogate needs
        return (x.clone(),) if module.inplace else None

    def after(self, module: KWTA, args: tuple[torch.Tensor, ...], output: torch.Tensor):
        if not self.mine():  # another thread's pass through the same model: leave it exact
            return None
        x = self.inputs.pop(id(module), None)
        if x is None or not x.requires_grad:
            return None
        flat = x.detach().flatten(1)
        shape = (-1,) + (1,) * (x.dim() - 1)
        # the module's own (exact, fast) selection: the same value as the reference topk
        k = num_winners(module.gamma, flat.shape[1])
        theta = threshold(flat, k, module.impl or get_kwta_impl()).view(shape)
        tau = (self.temperature * flat.std(dim=1)).clamp_min(1e-12).view(shape)
        return _SurrogateBackward.apply(x, output.detach(), theta, tau, self.kind)


@contextmanager
def bpda_surrogate(
    model: nn.Module, surrogate: str = "sigmoid", temperature: float = 0.1
) -> Iterator[int]:
    """Within the block, every ``KWTA`` of ``model`` keeps its exact forward output but
    back-propagates the surrogate's gradient; yields how many modules were swapped.

    Implemented with forward hooks that are removed on exit, errors included; no module
    attribute changes. Only forward passes of this thread inside the block are affected.
    On a model without k-WTA (ReLU) nothing changes, so BPDA there is plain PGD.
    """
    if surrogate not in SURROGATES:
        raise AttackParameterError(
            f"unknown surrogate {surrogate!r}; choose one of {', '.join(SURROGATES)}"
        )
    modules = [m for m in model.modules() if isinstance(m, KWTA)]
    swap, handles = _Swap(surrogate, temperature), []
    outer = getattr(_active, "token", None)
    try:
        for m in modules:
            handles.append(m.register_forward_pre_hook(swap.before))
            handles.append(m.register_forward_hook(swap.after))
        _active.token = swap
        yield len(modules)
    finally:
        _active.token = outer
        for h in handles:
            h.remove()


def _run_bpda(
    model, images, labels, target, *, eps, rng, steps, step_size, rel_step_size,
    random_start, loss, keep_best, surrogate, temperature,
) -> RawOutput:
    step = step_size_of({"step_size": step_size, "rel_step_size": rel_step_size}, eps)
    with bpda_surrogate(model, surrogate, temperature) as swapped:
        raw = ascend(
            model, images, labels, target, eps=eps, steps=steps, step_size=step, loss=loss,
            gradient=input_gradient(model, loss), rng=rng,
            random_start=random_start, keep_best=keep_best,
        )
    return raw._replace(notes={"abs_step_size": step, "kwta_modules_swapped": swapped})


BPDA = AttackSpec(
    name="bpda",
    title="BPDA (k-WTA backward replaced)",
    description=(
        "PGD with Backward Pass Differentiable Approximation: every k-WTA layer computes its "
        "exact output but back-propagates a smooth surrogate's gradient. On a ReLU model "
        "nothing is replaced and it equals PGD."
    ),
    run=_run_bpda,
    params={
        **STEP_PARAMS,
        "surrogate": Param("surrogate", "choice", "backward pass for k-WTA", choices=SURROGATES),
        "temperature": Param(
            "temperature", "float", "sigmoid surrogate width, in units of the activation std",
            0.0, 10.0, low_open=True,
        ),
    },
    presets={
        "interactive": {
            "steps": 10, "rel_step_size": 0.25, "random_start": True, "loss": "ce",
            "keep_best": True, "surrogate": "sigmoid", "temperature": 0.1,
        },
        "paper": {
            "steps": 100, "step_size": 0.003, "random_start": True, "loss": "ce",
            "keep_best": True, "surrogate": "sigmoid", "temperature": 0.1,
        },
    },
    preset_notes={
        "interactive": "10 steps of eps/4, random start, sigmoid-relaxed k-WTA backward",
        "paper": "ours (no published BPDA setting for k-WTA to follow): 100 steps of 0.003, "
                 "random start, sigmoid-relaxed k-WTA backward",
    },
    exclusive=(("step_size", "rel_step_size"),),
)


# --------------------------------------------------------------------------- gradient estimation


def estimate_gradient(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    target: torch.Tensor | None,
    *,
    loss: str,
    samples: int,
    sigma: float,
    rng: ImageStreams,
    rows: torch.Tensor | None = None,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits at x, antithetic estimate of the objective's gradient) for a batch ``x``.

    grad ~ sum_i [f(x + sigma u_i) - f(x - sigma u_i)] u_i / (2 sigma n), u_i ~ N(0, I),
    over ``n = samples // 2`` pairs. Samples are not clipped to [0, 1] (as in Tramer et
    al.'s notebook): they only probe the model, and the model accepts any input.
    """
    batch = x.shape[0]
    pairs = samples // 2
    per_round = max(1, chunk_size // (2 * batch))  # pairs whose 2 * batch images fit a chunk
    grad = torch.zeros_like(x)
    with torch.no_grad():
        logits = model(x)
        done = 0
        while done < pairs:
            p = min(per_round, pairs - done)
            u = rng.normal(p, x, rows)
            probes = torch.cat([x + sigma * u, x - sigma * u]).flatten(0, 1)
            out = torch.cat([model(c) for c in probes.split(chunk_size)])
            lab = labels.repeat(2 * p)
            tgt = None if target is None else target.repeat(2 * p)
            f = objective(out, lab, tgt, loss).view(2, p, batch)
            diff = (f[0] - f[1]).to(x.dtype)
            grad += torch.einsum("pb,pb...->b...", diff, u)
            done += p
    return logits, grad / (2 * sigma * pairs)


def _estimated(model, loss, sigma, samples, milestones, chunk_size, rng) -> GradientFn:
    def gradient(x, labels, target, iteration, rows):
        n = samples[bisect.bisect_right(milestones, iteration)]
        return estimate_gradient(
            model, x, labels, target, loss=loss, samples=n, sigma=sigma,
            rng=rng, rows=rows, chunk_size=chunk_size,
        )

    return gradient


def _run_estimation(
    model, images, labels, target, *, eps, rng, steps, step_size, rel_step_size,
    random_start, loss, sigma, samples, milestones, chunk_size, early_stop,
) -> RawOutput:
    step = step_size_of({"step_size": step_size, "rel_step_size": rel_step_size}, eps)
    raw = ascend(
        model, images, labels, target, eps=eps, steps=steps, step_size=step, loss=loss,
        gradient=_estimated(model, loss, sigma, samples, milestones, chunk_size, rng),
        rng=rng, random_start=random_start, keep_best=True, early_stop=early_stop,
    )
    counts = [samples[bisect.bisect_right(milestones, t)] for t in range(steps)]
    return raw._replace(notes={"abs_step_size": step, "samples_per_image": sum(counts)})


def _check_estimation(params: dict[str, Any]) -> None:
    samples, milestones = params["samples"], params["milestones"] or ()
    if len(samples) != len(milestones) + 1:
        raise AttackParameterError(
            "gradient-estimation: give one more 'samples' entry than 'milestones' (samples[i] "
            f"is used from milestones[i-1] on), got {len(samples)} and {len(milestones)}"
        )
    if any(n % 2 for n in samples):
        raise AttackParameterError(
            f"gradient-estimation: 'samples' must be even (antithetic pairs), got {samples}"
        )
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise AttackParameterError(
            f"gradient-estimation: 'milestones' must increase strictly, got {milestones}"
        )
    params["milestones"] = tuple(milestones)


GRADIENT_ESTIMATION = AttackSpec(
    name="gradient-estimation",
    title="Gradient estimation (Tramer et al. 2020)",
    description=(
        "Signed steps along an antithetic Gaussian estimate of the logit-margin gradient "
        "(sigma = 8/255), with more samples as the attack proceeds; a sample stops once "
        "misclassified. Needs no gradient of the model, so gradient masking cannot stop it."
    ),
    run=_run_estimation,
    params={
        "steps": STEP_PARAMS["steps"],
        "step_size": STEP_PARAMS["step_size"],
        "rel_step_size": STEP_PARAMS["rel_step_size"],
        "random_start": STEP_PARAMS["random_start"],
        "loss": Param("loss", "choice", "objective (Tramer et al. use the margin)", choices=LOSSES),
        "sigma": Param("sigma", "float", "std of the Gaussian probes, pixel units", 0.0, 1.0,
                       low_open=True),
        "samples": Param(
            "samples", "ints", "probes per image per step (even), one entry per phase",
            2, MAX_SAMPLES,
        ),
        "milestones": Param(
            "milestones", "ints", "steps at which the next 'samples' entry takes over",
            1, MAX_STEPS, optional=True,
        ),
        "chunk_size": Param("chunk_size", "int", "most images per forward pass", 1, 65_536),
        "early_stop": Param(
            "early_stop", "bool", "stop attacking an image once it is misclassified"
        ),
    },
    presets={
        "interactive": {
            "steps": 4, "rel_step_size": 0.5, "random_start": False, "loss": "margin",
            "sigma": 8 / 255, "samples": (8, 12, 16, 20), "milestones": (1, 2, 3),
            "chunk_size": 256,
            "early_stop": True,
        },
        "paper": {
            "steps": 100, "step_size": 0.01, "random_start": False, "loss": "margin",
            "sigma": 8 / 255, "samples": (100, 1000, 20000), "milestones": (20, 40),
            "chunk_size": 1024, "early_stop": True,
        },
        "cpu": {
            "steps": 20, "step_size": 0.006, "random_start": False, "loss": "margin",
            "sigma": 8 / 255, "samples": (100, 400), "milestones": (10,),
            "chunk_size": 1024, "early_stop": True,
        },
    },
    preset_notes={
        "interactive": (
            "4 signed steps of eps/2 with 8, 12, 16, 20 probes (~60 forward passes, no "
            "backward): a weak, indicative estimate that fits a click (on a budget this small, "
            "few large steps beat many small ones); the paper preset is the real test"
        ),
        "paper": (
            "Tramer et al.'s k-WTA notebook: 100 signed steps of 0.01, sigma 8/255, 100 probes "
            "per step for steps 0-19, 1000 for 20-39, 20000 afterwards; very heavy (GPU)"
        ),
        "cpu": (
            "ours, Tramer et al.'s attack on a CPU budget: 20 signed steps of 0.006 (reach "
            "0.12), sigma 8/255, 100 probes per step for steps 0-9, 400 afterwards (at most "
            "5,000 forward passes per image)"
        ),
    },
    exclusive=(("step_size", "rel_step_size"),),
    preset_eps={"paper": 0.031, "cpu": 0.031},
    check=_check_estimation,
)
