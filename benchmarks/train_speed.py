"""Training speed of the CIFAR ResNet18 (and AlexNet) per setting, as ratios in one run.

Every variant is one real training step of ``kwta_demo.training`` (SGD with momentum and
Nesterov, cross-entropy, the model's own normalisation) on random data, built once and
timed repeat by repeat in turn, so that load from elsewhere hits all of them alike. A
row reports the median step time after warm-up as images per second, the minutes a
50,000-image epoch would take, and the ratio of its speed to the baseline row: NCHW,
float32, batch 128, 32 px, which is how ``train`` ran on a CPU before channels-last and
bf16 autocast. A k-WTA row also gets its step time over that of the same setting's ReLU
row, repeat by repeat (the two steps ran seconds apart): the median of those paired
ratios and their quartiles, which load that drifts over the run does not bias.

    python benchmarks/train_speed.py [--repeats 5] [--device cpu] [--threads 2]
    python benchmarks/train_speed.py --only "b128 32px NHWC" --repeats 31   # a subset

Results: a table on stdout and ``results/bench-train-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from kwta_demo.evaluation.speed import environment
from kwta_demo.models.architectures import build_model
from kwta_demo.settings import PROJECT_ROOT, resolve_device
from kwta_demo.training import cpu_has_native_bf16, set_threads
from kwta_demo.training.adversarial import (
    DEFAULT_EPS,
    DEFAULT_METHOD,
    training_examples,
)


@dataclass(frozen=True)
class Variant:
    arch: str
    activation: str
    gamma: float | None
    batch: int
    size: int
    channels_last: bool
    bf16: bool
    adversarial: str | None = None  # adversarial training's single-step method

    @property
    def label(self) -> str:
        act = "relu" if self.activation == "relu" else f"kwta-{self.gamma:g}"
        return (f"{self.arch}-{act} b{self.batch} {self.size}px "
                f"{'NHWC' if self.channels_last else 'NCHW'} {'bf16' if self.bf16 else 'fp32'}"
                + (f" {self.adversarial}" if self.adversarial else ""))


BASELINE = Variant("resnet18", "relu", None, 128, 32, False, False)


def variants(bf16: bool) -> list[Variant]:
    """The baseline, each change alone, then the chosen setting at every size and activation."""
    r = [BASELINE,
         Variant("resnet18", "relu", None, 128, 32, True, False),
         Variant("resnet18", "relu", None, 64, 32, True, False),
         Variant("resnet18", "relu", None, 256, 32, True, False)]
    if bf16:
        r += [Variant("resnet18", "relu", None, 128, 32, False, True),
              Variant("resnet18", "relu", None, 64, 32, True, True),
              Variant("resnet18", "relu", None, 256, 32, True, True)]
    chosen = dict(batch=128, channels_last=True, bf16=bf16)
    r += [Variant("resnet18", "relu", None, size=s, **chosen) for s in (32, 24, 16)]
    r += [Variant("resnet18", "kwta", g, size=32, **chosen) for g in (0.2, 0.1)]
    r += [Variant("alexnet", a, g, size=32, **chosen)
          for a, g in (("relu", None), ("kwta", 0.2), ("kwta", 0.1))]
    # adversarial training (its examples cost one more forward and backward pass a step)
    r += [Variant(arch, a, g, size=32, adversarial=DEFAULT_METHOD, **chosen)
          for arch, a, g in (("resnet18", "relu", None), ("resnet18", "kwta", 0.1),
                             ("alexnet", "relu", None), ("alexnet", "kwta", 0.1))]
    return list(dict.fromkeys(r))


class _Job:
    def __init__(self, v: Variant, device: torch.device, seed: int) -> None:
        torch.manual_seed(seed)
        self.v, self.device = v, device
        fmt = torch.channels_last if v.channels_last else torch.contiguous_format
        self.model = build_model(v.arch, v.activation, v.gamma).to(device).to(memory_format=fmt)
        self.model.train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                                   weight_decay=5e-4)
        gen = torch.Generator().manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.x = torch.rand(v.batch, 3, v.size, v.size, generator=gen).to(device)
        self.x = self.x.contiguous(memory_format=fmt)
        self.y = torch.randint(0, 10, (v.batch,), generator=gen).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.v.bf16):
            return self.model(x)

    def step(self) -> float:
        t0 = time.perf_counter()
        x = self.x
        if self.v.adversarial:  # the training's own code path for its examples
            x = training_examples(self.forward, x, self.y, method=self.v.adversarial,
                                  eps=DEFAULT_EPS, generator=self.gen)
        logits = self.forward(x)
        loss = F.cross_entropy(logits.float(), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0


def relu_of(v: Variant) -> Variant:
    """The ReLU variant of ``v``'s setting (``v`` itself for a ReLU variant)."""
    return replace(v, activation="relu", gamma=None)


def standard_of(v: Variant) -> Variant:
    """``v`` without adversarial training."""
    return replace(v, adversarial=None)


def paired_ratios(slow: list[float], fast: list[float]) -> dict[str, float]:
    """Median and quartiles of ``slow[i] / fast[i]``: step times taken in the same repeat."""
    ratios = [a / b for a, b in zip(slow, fast, strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {"median": statistics.median(ratios), "q1": q1, "q3": q3}


def pick(todo: list[Variant], only: tuple[str, ...] = ()) -> list[Variant]:
    """The variants of ``todo`` whose label holds one of ``only`` (all when empty), with the
    baseline and each one's ReLU row; a ``ValueError`` names the labels when none does."""
    if not only:
        return todo
    picked = [v for v in todo if any(s in v.label for s in only)]
    if not picked:
        raise ValueError(f"no variant's label holds {' or '.join(map(repr, only))}; the labels: "
                         + ", ".join(v.label for v in todo))
    return list(dict.fromkeys([BASELINE] + [relu_of(v) for v in picked]
                              + [standard_of(v) for v in picked] + picked))


def run(device: torch.device, repeats: int, warmup: int, seed: int = 0,
        only: tuple[str, ...] = ()) -> list[dict]:
    """Time every variant (those whose label holds one of ``only``, with the baseline and
    each one's ReLU row, when given), interleaved; returns one row per variant."""
    bf16 = device.type == "cuda" or cpu_has_native_bf16()
    todo = pick(variants(bf16), only)
    jobs = [_Job(v, device, seed) for v in todo]
    times: dict[Variant, list[float]] = {v: [] for v in todo}
    for r in range(warmup + repeats):
        for job in jobs:
            t = job.step()
            if r >= warmup:
                times[job.v].append(t)
    base = statistics.median(times[BASELINE]) / BASELINE.batch
    rows = []
    for v in todo:
        per_image = statistics.median(times[v]) / v.batch
        row = {**asdict(v), "label": v.label, "images_per_s": 1 / per_image,
               "epoch_minutes": 50_000 * per_image / 60, "speed_vs_baseline": base / per_image,
               "step_seconds": times[v]}
        if v.activation != "relu" and relu_of(v) in times:
            row["step_vs_relu_paired"] = paired_ratios(times[v], times[relu_of(v)])
        if v.adversarial and standard_of(v) in times:
            row["step_vs_standard_paired"] = paired_ratios(times[v], times[standard_of(v)])
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| variant | img/s | 50k-image epoch | speed vs baseline | step time vs ReLU "
             "(paired median, quartiles) | step time vs standard training (paired) |",
             "|---|---|---|---|---|---|"]

    def paired(r: dict, key: str) -> str:
        p = r.get(key)
        return f"{p['median']:.3f}x ({p['q1']:.3f}-{p['q3']:.3f})" if p else ""

    for r in rows:
        lines.append(f"| {r['label']} | {r['images_per_s']:.1f} | {r['epoch_minutes']:.1f} min "
                     f"| {r['speed_vs_baseline']:.2f}x | {paired(r, 'step_vs_relu_paired')} "
                     f"| {paired(r, 'step_vs_standard_paired')} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=None, help="JSON path (default: results/bench-train-<device>.json)")
    parser.add_argument("--only", nargs="+", default=(), metavar="TEXT",
                        help="only the variants whose label holds one of these (the baseline "
                             "and their ReLU rows are timed too)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    threads = set_threads(args.threads)
    t0 = time.perf_counter()
    try:
        rows = run(device, args.repeats, args.warmup, only=tuple(args.only))
    except ValueError as e:
        parser.error(f"--only: {e}")
    env = {**environment(device), "threads": threads, "native_bf16": cpu_has_native_bf16(),
           "repeats": args.repeats, "warmup": args.warmup, "only": list(args.only),
           "wall_seconds": time.perf_counter() - t0,
           "command": shlex.join(["python", "benchmarks/train_speed.py", *sys.argv[1:]]),
           "python": platform.python_version()}
    out = Path(args.out) if args.out else PROJECT_ROOT / "results" / f"bench-train-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": env, "baseline": BASELINE.label, "rows": rows},
                              indent=2) + "\n")
    print(table(rows))
    print(f"\nMedian of {args.repeats} steps after {args.warmup} warm-up, variants interleaved; "
          f"random data; {threads} threads on {env.get('cpu') or env.get('device_name')}. "
          f"Written to {out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
