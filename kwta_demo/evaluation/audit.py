"""A gradient-masking audit: is a model's robustness real, or do its gradients mislead?

The checks of Carlini et al. 2019 ("On Evaluating Adversarial Robustness", §5) and of
AutoAttack's warnings, each computed on the images at hand, none asserted:

- an unbounded PGD (eps = 1) must succeed on (almost) every image; if it does not,
  the gradients are broken, not the model robust;
- more iterations must not lower the success of an iterative attack (and if they raise
  it, the audited attack had not converged: its robustness is an artefact too);
- a gradient-free attack (Square) must not beat white-box PGD;
- adversarial examples crafted on a twin model (the ReLU one) must not beat white-box
  PGD on the model itself;
- and, as evidence beside them: the share of input-gradient entries that are exactly
  zero, the cosine between successive gradients along the attack, and, for k-WTA
  models, the share of a layer's winners that change from one attack step to the next.

Each of the first four is *flagged* when the masking-side number beats the other by at
least ``MARGIN`` of the images (and one image): a flag means the white-box result
overstates the robustness. The verdict reads the flags in plain words.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..attacks import get_attack, run_attack
from ..attacks.base import MAX_STEPS, ImageStreams, attack_mode, batch_seeds, check_seed
from ..attacks.gradient import ascend, input_gradient
from ..data.cifar10 import describe_source, evaluation_sample, load_cifar10
from ..models.architectures import family
from ..models.checkpoints import (
    atomic_write_text,
    find_checkpoint,
    load_model,
    weights_sha256,
)
from ..models.kwta import KWTA
from ..provenance import utc_now
from ..settings import resolve_device
from .transfer import transfer_matrix

log = logging.getLogger(__name__)

__all__ = ["MARGIN", "TRANSFER_BPDA", "UNBOUNDED_SUCCESS", "beats", "Check", "Audit", "audit",
           "audit_checkpoints", "gradient_statistics", "memo_from_rows", "load_rows", "appender"]

MARGIN = 0.05
"""Least gap in success rate (and at least one image) for a comparison to flag masking."""
UNBOUNDED_SUCCESS = 0.95
"""Least success an eps = 1 attack must reach on images it can change completely."""
TRANSFER_BPDA = "paper"
"""The BPDA preset whose examples make the k-WTA models' BPDA rows of the shipped transfer
matrices (each row records it as ``bpda``)."""
UNBOUNDED_STEPS = (20, 0.1)
"""Steps and step size of the unbounded PGD (reach 2: any image, anywhere in the cube)."""
PGD_STEPS = (10, 50)
"""Steps of the PGD runs the audit makes itself (gradient statistics; the twin's examples)."""


@dataclass(frozen=True)
class Check:
    """One check: what it compares, whether it flags masking (None: not run), the evidence."""

    key: str
    title: str
    flagged: bool | None
    evidence: str
    values: dict[str, float] = field(default_factory=dict)
    kind: str = "masking"  # what a flag means: "masking", or "unconverged" (too few steps)


@dataclass(frozen=True)
class Audit:
    """Every check on one model and the verdict in plain words."""

    model: str
    n: int
    eps: float
    seed: int
    checks: tuple[Check, ...]

    @property
    def masked(self) -> bool:
        return any(c.flagged for c in self.checks)

    @property
    def verdict(self) -> str:
        masking = [c for c in self.checks if c.flagged and c.kind == "masking"]
        weak = [c for c in self.checks if c.flagged and c.kind == "unconverged"]
        if masking:
            return ("Robustness here comes from gradient masking: "
                    + "; ".join(c.evidence for c in masking + weak) + ".")
        if weak:
            return ("The robustness this attack shows is not real, it had not converged: "
                    + "; ".join(c.evidence for c in weak) + ".")
        run = [c for c in self.checks if c.flagged is False]
        return ("No sign of gradient masking on these images: "
                + "; ".join(c.evidence for c in run) + ".")

    def rows(self) -> list[dict[str, Any]]:
        return [{"model": self.model, "check": c.title, "flags masking": c.flagged,
                 "evidence": c.evidence, **c.values} for c in self.checks]


def _rate(success: torch.Tensor) -> float:
    return float(success.float().mean()) if success.numel() else float("nan")


def beats(a: float, b: float, n: int) -> bool:
    """Whether ``a`` exceeds ``b`` by at least MARGIN and by at least one image of ``n``."""
    return a - b >= max(MARGIN, 1.0 / n) - 1e-12


def _count(rate: float, n: int) -> str:
    return f"{round(rate * n)}/{n}"


@torch.no_grad()
def _winner_masks(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    masks: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: masks.append(out != 0))
             for m in model.modules() if isinstance(m, KWTA)]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return masks


def gradient_statistics(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, eps: float,
    steps: int = 10, seed: int = 0,
) -> dict[str, float]:
    """Along a PGD attack (``steps`` signed steps of eps/4, random start, cross-entropy):
    the share of exactly-zero input-gradient entries, the mean cosine between successive
    gradients of an image, and (k-WTA layers only) the mean share of a layer's winners
    that change from one iterate to the next (NaN for a model without k-WTA)."""
    grads: list[torch.Tensor] = []
    flips: list[float] = []
    previous: list[list[torch.Tensor]] = []
    exact = input_gradient(model, "ce")

    def recording(x, y, target, iteration, rows):
        logits, grad = exact(x, y, target, iteration, rows)
        if x.shape[0] == images.shape[0]:  # every image still active (no early stop here)
            grads.append(grad.detach().flatten(1))
            masks = _winner_masks(model, x)
            if previous and masks:
                flips.append(float(sum((a != b).float().sum() / a.float().sum().clamp_min(1)
                                       for a, b in zip(previous[-1], masks)) / len(masks)))
            previous[:] = [masks]
        return logits, grad

    with attack_mode(model):
        ascend(model, images, labels, None, eps=eps, steps=steps, step_size=eps / 4, loss="ce",
               gradient=recording,
               rng=ImageStreams(batch_seeds(seed, images.shape[0]), images.device),
               random_start=True, keep_best=False)
    stacked = torch.stack(grads)  # (steps, B, D)
    zero = float((stacked == 0).float().mean())
    cos = torch.nn.functional.cosine_similarity(stacked[1:], stacked[:-1], dim=2)
    return {"zero_gradient_share": zero,
            "successive_gradient_cosine": float(cos.mean()) if cos.numel() else float("nan"),
            "winner_change_per_step": sum(flips) / len(flips) if flips else float("nan")}


def audit(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, attack: str = "pgd",
    preset: str = "corrected", eps: float | None = 0.031, seed: int = 0,
    params: dict[str, Any] | None = None, name: str = "model", twin: nn.Module | None = None,
    twin_name: str = "the ReLU twin", square_preset: str = "interactive",
    memo: dict[tuple[Any, ...], Any] | None = None,
) -> Audit:
    """Audit the result of ``attack`` (``preset`` and ``params``, as ``run_attack`` takes
    them) on ``images`` (B, 3, H, W) in [0, 1] with ``labels``: is the robustness it
    shows real?

    ``twin``: a model of the same architecture (the ReLU one), on which strong PGD
    examples are made and transferred; without it that check is not run.
    ``square_preset``: the gradient-free attack's budget (``interactive``: 300 queries;
    ``cpu``: 1,000; ``paper``: AutoAttack's 5,000).
    ``memo``: where the checks that do not depend on the audited attack (the unbounded PGD,
    Square, the transfer from the twin, the gradient statistics) keep their results, to be
    read by the next audit of the same model, twin and images: pass one dict per model.
    """
    spec = get_attack(attack)
    if spec.targeted == "required":
        raise ValueError(f"the audit compares untargeted success; {attack} needs a target "
                         "(audit an untargeted attack, e.g. pgd)")
    params, seed = dict(params or {}), check_seed(seed)
    result = run_attack(attack, model, images, labels, eps=eps, preset=preset, seed=seed, **params)
    a = _Audited(model, images, labels, attack, preset, params, seed,
                 eps=float(result.params["eps"]), steps=result.params.get("steps"),
                 base=_rate(result.success), memo={} if memo is None else memo)
    checks = [Check("audited", f"the audited attack, {a.label}", None,
                    f"{a.label} succeeds on {_count(a.base, a.n)} images at eps {a.eps:g}",
                    {"audited_success": a.base}),
              _check_unbounded(a)]
    more, best = _check_more_steps(a)
    checks += [more, _check_gradient_free(a, best, square_preset),
               _check_transfer(a, best, twin, twin_name), _check_gradients(a)]
    return Audit(name, a.n, a.eps, seed, tuple(checks))


@dataclass
class _Audited:
    """The audited attack's call and result: what every check reads."""

    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    attack: str
    preset: str
    params: dict[str, Any]
    seed: int
    eps: float
    steps: Any
    base: float  # the audited attack's success rate
    memo: dict[tuple[Any, ...], Any]

    @property
    def n(self) -> int:
        return self.images.shape[0]

    @property
    def label(self) -> str:
        return f"{self.attack}:{self.preset}"

    def once(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """``compute()``, or what it gave for ``key`` in an earlier audit of these images."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


def _check_unbounded(a: _Audited) -> Check:
    """Gradients that lead somewhere carry PGD across the whole image cube (eps = 1)."""
    # Its own PGD, not the audited attack's settings: an absolute step sized for a small
    # ball could not cross the unit cube, and the question is whether the gradients lead.
    # No random start: from eps = 1 a random start alone lands anywhere in the cube.
    u = a.once(("unbounded", a.seed), lambda: _rate(run_attack(
        "pgd", a.model, a.images, a.labels, eps=1.0, steps=UNBOUNDED_STEPS[0],
        step_size=UNBOUNDED_STEPS[1], random_start=False, seed=a.seed).success))
    what = f"PGD with eps = 1 ({UNBOUNDED_STEPS[0]} steps of {UNBOUNDED_STEPS[1]:g} from the image)"
    return Check(
        "unbounded", "PGD with eps = 1 succeeds", u < UNBOUNDED_SUCCESS,
        (f"{what} succeeds on only {_count(u, a.n)} images: the gradients do not lead anywhere"
         if u < UNBOUNDED_SUCCESS else f"{what} succeeds on {_count(u, a.n)} images"),
        {"unbounded_success": u})


def _check_more_steps(a: _Audited) -> tuple[Check, float]:
    """Five times the steps: fewer successes is masking, more is an unconverged attack.
    Returns the check and the better of the two success rates."""
    if not (isinstance(a.steps, int) and "steps" in get_attack(a.attack).params):
        return Check("more_steps", "more steps", None,
                     f"not run ({a.attack} has no step count)"), a.base
    steps, more, n, label = a.steps, min(MAX_STEPS, 5 * a.steps), a.n, a.label
    longer = run_attack(a.attack, a.model, a.images, a.labels, eps=a.eps, preset=a.preset,
                        seed=a.seed, **{**a.params, "steps": more})
    s_long = _rate(longer.success)
    fewer, gained = beats(a.base, s_long, n), beats(s_long, a.base, n)
    if fewer:
        evidence = (f"{more} steps of {label} succeed on {_count(s_long, n)} images, fewer "
                    f"than {steps} steps ({_count(a.base, n)})")
    elif gained:
        evidence = (f"{more} steps of {label} succeed on {_count(s_long, n)} images, "
                    f"{steps} steps on only {_count(a.base, n)}")
    else:
        evidence = (f"{more} steps of {label} succeed on {_count(s_long, n)} images, "
                    f"{steps} on {_count(a.base, n)}")
    check = Check("more_steps", f"{more} steps do no better and no worse than {steps}",
                  fewer or gained, evidence, {"more_steps_success": s_long},
                  kind="masking" if fewer else "unconverged")
    return check, max(a.base, s_long)


def _check_gradient_free(a: _Audited, best: float, square_preset: str) -> Check:
    """Square never reads a gradient: beating the gradient attack means masked gradients."""
    sq = a.once(("square", a.eps, square_preset, a.seed), lambda: _rate(run_attack(
        "square", a.model, a.images, a.labels, eps=a.eps, preset=square_preset,
        seed=a.seed).success))
    gf, n, label = beats(sq, best, a.n), a.n, a.label
    return Check(
        "gradient_free", f"a gradient-free attack does not beat {label}", gf,
        (f"Square, which never reads a gradient, succeeds on {_count(sq, n)} images against "
         f"{label}'s {_count(best, n)}" if gf else
         f"Square succeeds on {_count(sq, n)} images, {label} on {_count(best, n)}"),
        {"square_success": sq})


def _check_transfer(a: _Audited, best: float, twin: nn.Module | None, twin_name: str) -> Check:
    """Examples made on the smooth twin fooling the model more than its own gradients do."""
    if twin is None:
        return Check("transfer", "transfer from a twin model", None,
                     "not run (no twin model given)")

    def transferred() -> float:
        crafted = run_attack("pgd", twin, a.images, a.labels, eps=a.eps, steps=PGD_STEPS[1],
                             step_size=a.eps / 10, random_start=True, seed=a.seed)
        with torch.no_grad():
            return _rate(a.model(crafted.adversarial).argmax(1) != a.labels)

    t = a.once(("transfer", a.eps, a.seed), transferred)
    tr, n, label = beats(t, best, a.n), a.n, a.label
    return Check(
        "transfer", f"examples from {twin_name} do not beat {label}", tr,
        (f"PGD examples made on {twin_name} fool it on {_count(t, n)} images, {label} on "
         f"its own gradients on {_count(best, n)}" if tr else
         f"examples transferred from {twin_name} fool it on {_count(t, n)} images, "
         f"{label} on {_count(best, n)}"),
        {"transfer_success": t})


def _check_gradients(a: _Audited) -> Check:
    """What the input gradient looks like along a PGD attack (evidence, not a verdict)."""
    stats = a.once(("gradients", a.eps, a.seed),
                   lambda: gradient_statistics(a.model, a.images, a.labels, eps=a.eps,
                                               seed=a.seed))
    flips = stats["winner_change_per_step"]
    return Check(
        "gradients", "the input gradient along a PGD attack", None,
        (f"{100 * stats['zero_gradient_share']:.1f}% of input-gradient entries are exactly "
         f"zero; successive gradients have a mean cosine of "
         f"{stats['successive_gradient_cosine']:.2f}"
         + ("" if math.isnan(flips) else
            f"; each step changes {100 * flips:.1f}% of a k-WTA layer's winners")),
        stats)


# ------------------------------------------------------------------ the command


def audit_checkpoints(
    arch: str, *, attacks: Sequence[str] = ("pgd:report", "deepfool:paper", "pgd:corrected"),
    n: int = 100, adversarial: bool = False, eps: float = 0.031,
    gammas: Sequence[float] = (0.2, 0.1),
    seed: int = 0, data: str | None = None, device: str | None = None,
    square_preset: str = "cpu", done: Sequence[dict[str, Any]] = (),
    on_row: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Audit the ReLU and k-WTA (``gammas``) checkpoints of ``arch`` (the adversarially
    trained ones with ``adversarial``) under each attack spec (``name:preset``, at ``eps`` unless the preset
    is the report's) and compute the transfer matrix of the last one, on ``n`` seeded
    class-balanced test images; one row per (model, attack) and one per matrix. Rows in
    ``done`` with the same weights and settings are kept; ``on_row`` gets each new row."""
    def stamped(row: dict[str, Any]) -> dict[str, Any]:
        # what the row was measured on, and when (results/audit.json keeps earlier runs' rows)
        return _json_safe({**row, "data": source, "torch": torch.__version__,
                           "finished": utc_now()})

    dev = resolve_device(device)
    source = describe_source(data)
    names = list(family(arch, adversarial=adversarial, gammas=tuple(gammas)))
    where = {n: (Path(checkpoint_dir) / n if checkpoint_dir else n) for n in names}
    shas = {name: weights_sha256(find_checkpoint(where[name])) for name in names}
    key = lambda r: (r["kind"], r["model"], r["sha"], r["attack"], r.get("bpda"), r["n"],  # noqa: E731
                     r["seed"])
    have = {key(r): r for r in done}
    sample, _ = evaluation_sample(load_cifar10("test", data), n, seed)
    x, y = (sample.images.float() / 255).to(dev), sample.labels.to(dev)
    models = {name: load_model(where[name], dev) for name in names}
    # per model: the attack-independent checks, read back from earlier rows of the same
    # weights, images, seed and Square budget (a restarted run does not measure them again)
    memos = {name: memo_from_rows([
        r for r in done if r.get("kind") == "audit" and r["model"] == name
        and r["sha"] == shas[name] and r["n"] == n and r["seed"] == seed
        and r.get("square") == square_preset and r.get("data") == source]) for name in names}
    rows = []
    for spec in attacks:
        attack, _, preset = spec.partition(":")
        for name, model in models.items():
            row = {"kind": "audit", "model": name, "sha": shas[name], "attack": spec, "n": n,
                   "seed": seed, "square": square_preset}
            if key(row) in have:
                rows.append(have[key(row)])
                continue
            with torch.no_grad():
                keep = model(x).argmax(1) == y
            if not bool(keep.any()):
                row.update(correct=0, eps=None, masked=None, checks=[], seconds=0.0,
                           verdict="misclassifies every image: nothing to audit", device=str(dev))
                log.info("audit: %s under %s done in 0 s: %s", name, spec, row["verdict"])
                row = stamped(row)
                rows.append(row)
                if on_row:
                    on_row(row)
                continue
            log.info("audit: %s under %s on %d of %d images", name, spec, int(keep.sum()), n)
            t0 = time.perf_counter()
            result = audit(model, x[keep], y[keep], attack=attack, preset=preset or "paper",
                           eps=None if preset == "report" else eps, seed=seed, name=name,
                           twin=None if name.endswith("relu") else models[names[0]],
                           twin_name=names[0], square_preset=square_preset,
                           memo=memos[name])
            row.update(correct=int(keep.sum()), eps=result.eps, masked=result.masked,
                       verdict=result.verdict, checks=[{
                           "key": c.key, "title": c.title, "flagged": c.flagged,
                           "kind": c.kind, "evidence": c.evidence, "values": c.values}
                           for c in result.checks],
                       seconds=time.perf_counter() - t0, device=str(dev))
            log.info("audit: %s under %s done in %.0f s: %s", name, spec, row["seconds"],
                     result.verdict)
            row = stamped(row)
            rows.append(row)
            if on_row:
                on_row(row)
    spec = attacks[-1]
    attack, _, preset = spec.partition(":")
    row = {"kind": "transfer", "model": f"{arch}-at" if adversarial else arch,
           "sha": ",".join(shas[m] for m in names),
           "attack": spec, "bpda": f"bpda:{TRANSFER_BPDA}", "n": n, "seed": seed}
    if key(row) in have:
        rows.append(have[key(row)])
    else:
        log.info("audit: transfer matrix of %s under %s (and BPDA) on %d images", arch, spec, n)
        t0 = time.perf_counter()
        m = transfer_matrix(models, x, y, attack=attack, preset=preset or "paper",
                            eps=None if preset == "report" else eps, seed=seed,
                            bpda_preset=TRANSFER_BPDA)
        row.update(sources=list(m.sources), targets=list(m.targets),
                   rates=[list(r) for r in m.rates], ci95=[[list(c) for c in r] for r in m.ci95],
                   correct=list(m.n), eps=m.eps, seconds=time.perf_counter() - t0, device=str(dev))
        log.info("audit: transfer matrix of %s done in %.0f s", arch, row["seconds"])
        row = stamped(row)
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def memo_from_rows(rows: Sequence[dict[str, Any]]) -> dict[tuple[Any, ...], Any]:
    """An ``audit`` memo holding what ``rows`` (earlier audit rows of one model, on the
    same images, seed and Square preset, as ``audit_checkpoints`` writes them) measured of
    the attack-independent checks: the unbounded PGD, Square, the transfer from the twin
    and the gradient statistics."""
    memo: dict[tuple[Any, ...], Any] = {}
    for r in rows:
        eps, seed = r.get("eps"), r["seed"]
        for c in r.get("checks", ()):
            values = c.get("values") or {}
            if c["key"] == "unbounded" and "unbounded_success" in values:
                memo[("unbounded", seed)] = float(values["unbounded_success"])
            elif c["key"] == "gradient_free" and "square_success" in values:
                memo[("square", eps, r["square"], seed)] = float(values["square_success"])
            elif c["key"] == "transfer" and "transfer_success" in values:
                memo[("transfer", eps, seed)] = float(values["transfer_success"])
            elif c["key"] == "gradients" and values:  # JSON keeps NaN as None
                memo[("gradients", eps, seed)] = {
                    k: math.nan if v is None else float(v) for k, v in values.items()}
    return memo


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None (JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an audit results file (``[]`` if there is none yet)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text())["rows"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not an audit result ({e})") from None


def appender(path: str | Path, rows: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    """A callback that adds a row to ``rows`` and rewrites ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        atomic_write_text(path, json.dumps({"rows": rows}, indent=1, allow_nan=False) + "\n")

    return add
