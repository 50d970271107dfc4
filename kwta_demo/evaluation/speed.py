"""``python -m kwta_demo bench``: ReLU vs reference k-WTA vs fast k-WTA, as ratios.

Every workload runs the same network three ways in one process, interleaved repeat by
repeat so that load from elsewhere hits all of them alike: with ReLU, with k-WTA through
the reference ``topk`` threshold, and with k-WTA through the automatic fast path. A row
reports the median time of the repeats after warm-up and its ratio to the ReLU median of
the same run. Before timing, every k-WTA layer of the fast model is checked against the
reference on that workload's real activations (outputs bit for bit, gradients up to the
sign of zeros).

The attack click is PGD-40 on one image through the three models of one architecture
(ReLU, k-WTA 0.2, k-WTA 0.1), as the explorer's attack button runs it; its "relu" row
runs three ReLU models, so its ratio says what k-WTA costs there too. On CUDA a
``fast+graphs`` row replays each model's PGD step as a captured CUDA graph.

Results go to stdout as a table and to ``results/bench-<device>.json``.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..models.architectures import build_model
from ..models.kwta import KWTA, kwta, kwta_reference, relu_to_kwta, resolve_impl
from ..provenance import cpu_name

__all__ = ["WORKLOADS", "markdown_table", "run_bench", "pgd_click"]

GAMMA = 0.2  # the report's main k-WTA setting; --gamma changes it
IMPLS = ("relu", "reference", "fast")


@dataclass(frozen=True)
class Workload:
    """One timed job: ``kind`` on ``net`` at ``batch``; ``goals`` are the targets
    per device type (for the fast path)."""

    name: str
    net: str  # "cifar" (32x32 ResNet18) or "torchvision" (224x224 ResNet18)
    kind: str  # "forward", "train", "pgd-step" or "click"
    batch: int
    goals: tuple[tuple[str, str], ...] = ()

    def goal(self, device: torch.device) -> str:
        return dict(self.goals).get(device.type, "")


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload("resnet18-32-forward-b128", "cifar", "forward", 128, (("cuda", "x ReLU <= 1.25"),)),
        Workload("resnet18-32-train-b128", "cifar", "train", 128, (("cuda", "x ReLU <= 1.15"),)),
        Workload("tv-resnet18-224-forward-b16", "torchvision", "forward", 16, (("cuda", "x ReLU <= 1.3"),)),
        Workload("tv-resnet18-224-train-b16", "torchvision", "train", 16, (("cuda", "x ReLU <= 1.15"),)),
        Workload("resnet18-32-pgd-step-b16", "cifar", "pgd-step", 16, (("cuda", "x ReLU <= 1.2"),)),
        Workload("resnet18-32-forward-b16", "cifar", "forward", 16, (("cpu", "x ReLU <= 1.2"),)),
        Workload("attack-click", "cifar", "click", 1,
                 (("cuda", "<= 300 ms (H200)"), ("cpu", "<= 5000 ms (2-core CPU)"))),
        # Smaller versions of the GPU rows, so that a 2-core CPU finishes in minutes.
        Workload("resnet18-32-train-b16", "cifar", "train", 16),
        Workload("tv-resnet18-224-forward-b2", "torchvision", "forward", 2),
        Workload("tv-resnet18-224-train-b2", "torchvision", "train", 2),
    ]
}
DEFAULT_WORKLOADS = {
    "cuda": [
        "resnet18-32-forward-b128", "resnet18-32-train-b128", "tv-resnet18-224-forward-b16",
        "tv-resnet18-224-train-b16", "resnet18-32-pgd-step-b16", "resnet18-32-forward-b16",
        "attack-click",
    ],
    "cpu": [
        "resnet18-32-forward-b16", "resnet18-32-pgd-step-b16", "resnet18-32-train-b16",
        "tv-resnet18-224-forward-b2", "tv-resnet18-224-train-b2", "attack-click",
    ],
}
QUICK_WORKLOADS = ["resnet18-32-forward-b16", "attack-click"]


# --- models and inputs --------------------------------------------------------------------


def _make_net(net: str, activation: str, gamma: float, impl: str | None, seed: int) -> nn.Module:
    """The network of a workload; the same seed gives the same weights for every activation."""
    torch.manual_seed(seed)
    if net == "cifar":
        model = build_model("resnet18", activation, gamma if activation == "kwta" else None)
        for module in model.modules():
            if isinstance(module, KWTA):
                module.impl = impl
        return model
    if net == "torchvision":
        import torchvision

        model = torchvision.models.resnet18(weights=None)
        if activation == "kwta":
            relu_to_kwta(model, gamma, impl=impl)
        return model
    raise ValueError(f"unknown net {net!r}")


def _kwta_impl(impl: str) -> str | None:
    return {"relu": None, "reference": "reference", "fast": "auto"}.get(impl, impl)


def _input(net: str, batch: int, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    size = 32 if net == "cifar" else 224
    images = torch.rand(batch, 3, size, size, generator=generator)
    classes = 10 if net == "cifar" else 1000
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return images.to(device), labels.to(device)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# --- the timed closures -------------------------------------------------------------------


def _job(workload: Workload, impl: str, gamma: float, device: torch.device,
         amp: torch.dtype | None, seed: int) -> tuple[Callable[[], None], nn.Module | None]:
    """A closure running one repeat of ``workload`` with ``impl``, and its model."""
    activation = "relu" if impl == "relu" else "kwta"
    if workload.kind == "click":
        return _click_job(impl, gamma, device, amp, seed), None
    model = _make_net(workload.net, activation, gamma, _kwta_impl(impl), seed).to(device)
    images, labels = _input(workload.net, workload.batch, device, seed + 1)
    if workload.kind == "forward":
        model.eval()

        def run() -> None:
            with torch.no_grad(), _autocast(device, amp):
                model(images)

    elif workload.kind == "train":
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def run() -> None:
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, amp):
                loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()

    elif workload.kind == "pgd-step":
        model.eval().requires_grad_(False)

        def run() -> None:
            x = images.clone().requires_grad_(True)
            with _autocast(device, amp):
                loss = F.cross_entropy(model(x), labels)
            torch.autograd.grad(loss, x)

    else:
        raise ValueError(f"unknown workload kind {workload.kind!r}")
    return run, model


def _click_models(impl: str, gamma_pair: tuple[float, float], device: torch.device,
                  seed: int) -> list[nn.Module]:
    """The three models of the explorer's attack: ReLU, k-WTA 0.2, k-WTA 0.1 (random
    weights); for the "relu" baseline all three are ReLU."""
    models = [_make_net("cifar", "relu", 1.0, None, seed)]
    for i, gamma in enumerate(gamma_pair):
        activation = "relu" if impl == "relu" else "kwta"
        models.append(_make_net("cifar", activation, gamma, _kwta_impl(impl), seed + 1 + i))
    return [m.to(device).eval().requires_grad_(False) for m in models]


def pgd_click(models: list[nn.Module], image: torch.Tensor, label: torch.Tensor, *,
              steps: int = 40, eps: float = 8 / 255, alpha: float = 2 / 255,
              seed: int = 0, amp: torch.dtype | None = None) -> list[torch.Tensor]:
    """L-inf PGD with a random start on ``image`` (1,3,H,W) against each model in turn.

    A minimal loop for timing; the attacks package has the real one.
    """
    generator = torch.Generator().manual_seed(seed)
    out = []
    for model in models:
        start = (torch.rand(image.shape, generator=generator) * 2 - 1) * eps
        x = (image + start.to(image.device)).clamp(0, 1)
        for _ in range(steps):
            x.requires_grad_(True)
            with _autocast(image.device, amp):
                loss = F.cross_entropy(model(x), label)
            (grad,) = torch.autograd.grad(loss, x)
            x = torch.min(torch.max(x.detach() + alpha * grad.sign(), image - eps), image + eps)
            x = x.clamp(0, 1)
        out.append(x.detach())
    return out


class _GraphedPGD:
    """One model's PGD step captured as a CUDA graph: the 40 steps of a click become 40
    replays, with no Python or kernel-launch cost per layer."""

    def __init__(self, model: nn.Module, image: torch.Tensor, label: torch.Tensor,
                 eps: float, alpha: float, amp: torch.dtype | None) -> None:
        self.image, self.label = image.clone(), label.clone()
        self.x = image.clone()
        self.eps = eps

        def step() -> None:
            x = self.x.detach().requires_grad_(True)
            with _autocast(image.device, amp):
                loss = F.cross_entropy(model(x), self.label)
            (grad,) = torch.autograd.grad(loss, x)
            new = torch.min(torch.max(self.x + alpha * grad.sign(), self.image - eps), self.image + eps)
            self.x.copy_(new.clamp(0, 1))

        # Warm up on a side stream (as the CUDA graph docs require); this also runs the
        # triton path's first-use check against the reference before capture.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            step()

    def run(self, image: torch.Tensor, start: torch.Tensor, steps: int) -> torch.Tensor:
        self.image.copy_(image)
        self.x.copy_((image + start).clamp(0, 1))
        for _ in range(steps):
            self.graph.replay()
        return self.x.clone()


def _click_job(impl: str, gamma: float, device: torch.device, amp: torch.dtype | None,
               seed: int) -> Callable[[], None]:
    graphs = impl.endswith("+graphs")
    base = impl.removesuffix("+graphs")
    models = _click_models(base, (0.2, 0.1), device, seed)
    image, label = _input("cifar", 1, device, seed + 1)
    eps, alpha = 8 / 255, 2 / 255
    if not graphs:
        return lambda: pgd_click(models, image, label, eps=eps, alpha=alpha, seed=seed, amp=amp)
    graphed = [_GraphedPGD(m, image, label, eps, alpha, amp) for m in models]
    generator = torch.Generator().manual_seed(seed)

    def run() -> None:
        for g in graphed:
            start = ((torch.rand(image.shape, generator=generator) * 2 - 1) * eps).to(device)
            g.run(image, start, 40)

    return run


# --- checking the fast path on real activations -------------------------------------------


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def check_layers(model: nn.Module, run: Callable[[], None], impl: str) -> dict[str, object]:
    """Run ``run`` once and compare ``impl`` with the reference at every k-WTA layer.

    Each layer's input is fed to both; their outputs, and their gradients for one random
    upstream gradient, must agree bit for bit (the gradients up to the sign of a zero, see
    ``kwta.kwta``). Returns counts and the concrete impls used.
    """
    stats: dict[str, object] = {"layers_checked": 0, "mismatches": 0, "resolved": {}}
    resolved: dict[str, int] = stats["resolved"]  # type: ignore[assignment]

    concrete = "auto" if impl == "fast" else impl

    def hook(module: KWTA, inputs: tuple[torch.Tensor, ...]) -> None:
        # A pre-hook: an in-place k-WTA (torchvision's ReLUs are in place) would show a
        # forward hook its output as its input.
        x = inputs[0].detach()
        flat = x.reshape(x.shape[0], -1)
        k = max(1, int(module.gamma * flat.shape[1]))
        name = resolve_impl(concrete, flat, k)
        resolved[name] = resolved.get(name, 0) + 1
        with torch.enable_grad():
            a = x.clone().requires_grad_(True)
            b = x.clone().requires_grad_(True)
            out_fast = kwta(a, module.gamma, impl=concrete)
            out_ref = kwta_reference(b, module.gamma)
            upstream = torch.randn_like(out_ref)
            (g_fast,) = torch.autograd.grad(out_fast, a, upstream)
            (g_ref,) = torch.autograd.grad(out_ref, b, upstream)
        same = (torch.equal(_bits(out_fast), _bits(out_ref))
                and torch.equal(_bits(g_fast + 0.0), _bits(g_ref + 0.0)))  # -0.0 + 0.0 is +0.0
        stats["layers_checked"] += 1  # type: ignore[operator]
        stats["mismatches"] += 0 if same else 1  # type: ignore[operator]

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, KWTA)]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return stats


# --- timing -------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(run: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return (time.perf_counter() - start) * 1e3


def bench_workload(workload: Workload, impls: list[str], *, gamma: float, device: torch.device,
                   warmup: int, repeats: int, amp: torch.dtype | None, seed: int = 0,
                   check: bool = True) -> list[dict[str, object]]:
    """Time ``workload`` for each impl, interleaved; one result row per impl."""
    jobs: dict[str, Callable[[], None]] = {}
    models: dict[str, nn.Module | None] = {}
    errors: dict[str, str] = {}
    for impl in impls:
        try:
            jobs[impl], models[impl] = _job(workload, impl, gamma, device, amp, seed)
        except RuntimeError as error:  # e.g. a CUDA graph that cannot be captured
            errors[impl] = repr(error)
    checks: dict[str, dict[str, object]] = {}
    for impl, run in jobs.items():
        for _ in range(warmup):
            run()
        model = models[impl]
        if check and impl not in ("relu", "reference") and model is not None:
            checks[impl] = check_layers(model, run, impl)
    times: dict[str, list[float]] = {impl: [] for impl in jobs}
    for _ in range(repeats):
        for impl, run in jobs.items():
            times[impl].append(_time(run, device))
    relu_ms = statistics.median(times["relu"]) if times.get("relu") else math.nan
    rows = []
    for impl in impls:
        row: dict[str, object] = {
            "workload": workload.name,
            "impl": impl,
            "batch": workload.batch,
            "kind": workload.kind,
            "gamma": gamma if workload.kind != "click" else [0.2, 0.1],
            "dtype": "float32" if amp is None else str(amp).removeprefix("torch."),
            "goal": workload.goal(device) if impl.startswith("fast") else "",
        }
        if impl in errors:
            row.update(ms=None, ratio_vs_relu=None, error=errors[impl])
        else:
            ms = statistics.median(times[impl])
            row.update(
                ms=round(ms, 3),
                ratio_vs_relu=round(ms / relu_ms, 3),
                ms_min=round(min(times[impl]), 3),
                ms_repeats=[round(t, 3) for t in times[impl]],
            )
        if impl in checks:
            row["check"] = checks[impl]
        rows.append(row)
    return rows


# --- environment and output ---------------------------------------------------------------


def _load_average() -> list[float] | None:
    """The 1/5/15-minute load averages: other work on the machine shows up here."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def environment(device: torch.device) -> dict[str, object]:
    """Device, versions and threads, for the JSON header."""
    info: dict[str, object] = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": _load_average(),
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def device_tag(device: torch.device) -> str:
    """``cpu``, or ``cuda-<model>`` (``cuda-h200`` on an NVIDIA H200)."""
    if device.type != "cuda":
        return device.type
    words = torch.cuda.get_device_name(device).lower().replace("nvidia", "").split()
    return "cuda-" + (words[0] if words else "gpu")


def format_table(rows: list[dict[str, object]]) -> str:
    """A fixed-width text table of the rows (the same columns as docs/performance.md)."""
    lines = [f"{'workload':30} {'impl':14} {'ms':>10} {'x ReLU':>7}  check"]
    for r in rows:
        ms = "error" if r.get("ms") is None else f"{r['ms']:.1f}"
        ratio = "" if r.get("ratio_vs_relu") is None else f"{r['ratio_vs_relu']:.2f}"
        check = r.get("check")
        note = ""
        if isinstance(check, dict):
            note = f"{check['layers_checked']} layers, {check['mismatches']} mismatches"
        lines.append(f"{r['workload']:30} {r['impl']:14} {ms:>10} {ratio:>7}  {note}")
    return "\n".join(lines)


def markdown_table(rows: list[dict[str, object]]) -> str:
    """The rows as a markdown table (what docs/performance.md shows)."""
    lines = ["| workload | impl | ms (median) | x ReLU | goal | exactness check |",
             "|---|---|---:|---:|---|---|"]
    for r in rows:
        ms = "error" if r.get("ms") is None else f"{r['ms']:.1f}"
        ratio = "" if r.get("ratio_vs_relu") is None else f"{r['ratio_vs_relu']:.2f}"
        check = r.get("check")
        note = ""
        if isinstance(check, dict):
            used = ", ".join(f"{k} x{v}" for k, v in check.get("resolved", {}).items())
            note = f"{check['layers_checked']} layers ({used}): {check['mismatches']} mismatches"
        goal = r.get("goal", "")
        lines.append(f"| {r['workload']} | {r['impl']} | {ms} | {ratio} | {goal} | {note} |")
    return "\n".join(lines)


def run_bench(workloads: list[str], *, device: torch.device, impls: list[str], gamma: float,
              warmup: int, repeats: int, amp: torch.dtype | None,
              progress: Callable[[str], None] | None = None) -> list[dict[str, object]]:
    """Bench each named workload; returns all rows."""
    rows: list[dict[str, object]] = []
    for name in workloads:
        workload = WORKLOADS[name]
        its = list(impls)
        if workload.kind == "click" and device.type == "cuda" and "fast" in its:
            its.append("fast+graphs")
        if progress:
            progress(f"{name}: {', '.join(its)}")
        # A click is 120 forward-backward passes: fewer repeats say enough.
        reps = max(min(repeats, 5), repeats // 3) if workload.kind == "click" else repeats
        rows += bench_workload(workload, its, gamma=gamma, device=device, warmup=warmup,
                               repeats=reps, amp=amp)
    return rows
