"""Train the six shipped checkpoints (and the findings runs) inside a fixed time budget.

Run on the GPU machine by ``scripts/device_train.sh`` (see docs/training.md); also runs
on a CPU with ``--limit-train``/``--limit-test`` as a dry run of the whole flow.

1. Load CIFAR-10 once; time a few real training steps of every (arch, activation).
2. Plan the epochs: the recipe's epochs (``train.DEFAULT_EPOCHS``) times one factor,
   chosen so that the whole plan fits the budget (at most ``--scale-max``). The
   from-scratch k-WTA runs of finding (2) are planned too, and dropped first when time
   is short.
3. Train: per architecture ReLU from scratch, k-WTA 0.2 from ReLU, k-WTA 0.1 from 0.2
   (``train.train_schedule``, weights stored as float16); then the findings runs, each
   only if the time left allows it.
4. Write the checksum manifest, ``summary.json`` (plan, probe, every history and
   metric, target checks), ``summary.md`` (the tables of docs/training.md) and the chart.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

# scripts/ is not a package: make the checkout's kwta_demo importable when run directly.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from kwta_demo import train as T  # noqa: E402
from kwta_demo.checkpoints import write_manifest  # noqa: E402
from kwta_demo.kwta import IMPLS, set_kwta_impl  # noqa: E402
from kwta_demo.data import load_cifar10, seeded_subset  # noqa: E402
from kwta_demo.settings import resolve_device  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import training_report  # noqa: E402

log = logging.getLogger("device_train")

ARCH_ORDER = ("alexnet", "resnet18")  # the cheap one first: it is done even if time runs out
RUN_OVERHEAD_S = 6.0  # per run: data checksums, initial eval, save, reload, fp32 eval, sparsity
EVAL_FACTOR = 1.08  # an epoch's evaluation on the 10k test images, relative to its training
EPOCH_OVERHEAD_S = 0.3  # per epoch: writing the resumable state (ResNet18: ~90 MB)


def probe(archs: list[str], n_train: int, batch_size: int, device: torch.device,
          steps: int) -> dict[str, dict[str, float]]:
    """Seconds per training epoch of every (arch, relu / k-WTA), from real timed steps."""
    out: dict[str, dict[str, float]] = {}
    for arch in archs:
        out[arch] = {}
        for key, stage in (("relu", "relu"), ("kwta", "kwta-0.2:scratch")):
            cfg = T.stage_config(arch, stage, batch_size=batch_size, epochs=1)
            seconds = T.benchmark_epoch_seconds(cfg, n_train, device, steps=steps)
            out[arch][key] = seconds * EVAL_FACTOR + EPOCH_OVERHEAD_S
            log.info("probe %s %s: %.2f s per epoch (with evaluation)", arch, key, out[arch][key])
    return out


def plan_epochs(
    archs: list[str], speeds: dict[str, dict[str, float]], budget_s: float, *,
    scale_max: float, findings: bool, scale: float | None = None,
) -> dict[str, Any]:
    """Epochs for every run so the whole plan fits ``budget_s``; see the module docstring."""
    nominal = {a: [T.DEFAULT_EPOCHS[a]["scratch"], T.DEFAULT_EPOCHS[a]["finetune"],
                   T.DEFAULT_EPOCHS[a]["finetune"]] for a in archs}

    def cost(s: float, finding_archs: list[str]) -> float:
        total = 0.0
        for a in archs:
            e = [max(1, round(n * s)) for n in nominal[a]]
            total += e[0] * speeds[a]["relu"] + (e[1] + e[2]) * speeds[a]["kwta"]
            total += 3 * RUN_OVERHEAD_S
            if a in finding_archs:
                total += e[1] * speeds[a]["kwta"] + RUN_OVERHEAD_S
        return total

    finding_archs = list(archs) if findings else []
    if scale is None:
        while True:
            # cost is linear in s up to rounding: solve, then step down until it fits
            fixed = cost(0.0, finding_archs)
            per_unit = max(cost(1.0, finding_archs) - fixed, 1e-9)
            s = min(scale_max, (budget_s - fixed) / per_unit)
            while s > 0.05 and cost(s, finding_archs) > budget_s:
                s -= 0.01
            if s >= 0.8 or not finding_archs:
                break
            finding_archs.pop()  # drop the most expensive findings run (resnet18) first
        scale = max(s, 0.05)
    epochs = {a: [max(1, round(n * scale)) for n in nominal[a]] for a in archs}
    return {"scale": round(scale, 3), "epochs": epochs, "findings": finding_archs,
            "predicted_s": round(cost(scale, finding_archs), 1), "budget_s": round(budget_s, 1),
            "nominal": nominal}


def _slim(result: dict[str, Any]) -> dict[str, Any]:
    metrics = {k: v for k, v in result["metrics"].items() if k not in ("history", "data_caveat")}
    return {"name": result["name"], "config": result["config"], "history": result["history"],
            "metrics": metrics, "resumed_from": result["resumed_from"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="CIFAR-10 source (the JPEG tar)")
    p.add_argument("--work", default="/tmp/kwta-train", help="output folder")
    p.add_argument("--deadline-s", type=float, default=450,
                   help="seconds from start by which everything must be written")
    p.add_argument("--reserve-s", type=float, default=25, help="kept for the final summary")
    p.add_argument("--safety", type=float, default=0.92, help="plan to this share of the budget")
    p.add_argument("--scale-max", type=float, default=1.5)
    p.add_argument("--scale", type=float, default=None, help="fixed epoch factor (no budget)")
    p.add_argument("--archs", default=",".join(ARCH_ORDER))
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe-steps", type=int, default=10)
    p.add_argument("--no-findings", action="store_true")
    p.add_argument("--plan-only", action="store_true", help="probe and plan, train nothing")
    p.add_argument("--limit-train", type=int, default=None, help="dry runs only")
    p.add_argument("--limit-test", type=int, default=None, help="dry runs only")
    p.add_argument("--device", default=None)
    p.add_argument("--kwta-impl", choices=IMPLS, default="auto",
                   help="k-WTA threshold implementation (same results; 'topk' avoids Triton)")
    args = p.parse_args(argv)

    start = time.monotonic()
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("huggingface_hub").setLevel(logging.WARNING)
    work = Path(args.work)
    ckpt_root, find_root, state_dir = work / "checkpoints", work / "findings", work / "runs"
    device = resolve_device(args.device)
    set_kwta_impl(args.kwta_impl)
    archs = [a for a in args.archs.split(",") if a]
    env = {"device": str(device), "device_name": T._device_name(device), "torch": torch.__version__,
           "python": platform.python_version(), "argv": sys.argv[1:], "kwta_impl": args.kwta_impl,
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    log.info("environment: %s", env)

    t0 = time.monotonic()
    train, test = load_cifar10("train", args.data), load_cifar10("test", args.data)
    if args.limit_train:
        train = seeded_subset(train, args.limit_train, args.seed)
    if args.limit_test:
        test = seeded_subset(test, args.limit_test, args.seed)
    env["data_load_s"] = round(time.monotonic() - t0, 1)
    env["train_images"], env["test_images"] = len(train.labels), len(test.labels)
    log.info("data: %d train, %d test images in %.1f s", len(train.labels), len(test.labels),
             env["data_load_s"])

    t0 = time.monotonic()
    speeds = probe(archs, len(train.labels), args.batch_size, device, args.probe_steps)
    env["probe_s"] = round(time.monotonic() - t0, 1)
    budget = (args.deadline_s - (time.monotonic() - start) - args.reserve_s) * args.safety
    plan = plan_epochs(archs, speeds, budget, scale_max=args.scale_max,
                       findings=not args.no_findings, scale=args.scale)
    log.info("plan: %s", plan)
    summary: dict[str, Any] = {"env": env, "probe_s_per_epoch": speeds, "plan": plan,
                               "runs": [], "findings": [], "skipped": []}
    if args.plan_only:
        print(json.dumps(summary, indent=2))
        return 0

    common = dict(batch_size=args.batch_size, seed=args.seed, half=True, progress=False,
                  data_hint="../shared/cifar10/cifar10-jpeg.tar.gz",
                  limit_train=args.limit_train)
    status = 0
    try:
        for arch in archs:
            t0 = time.monotonic()
            results = T.train_schedule(arch, T.STAGES, train, test, device, out_root=ckpt_root,
                                       state_dir=state_dir, epochs=plan["epochs"][arch], **common)
            summary["runs"] += [_slim(r) for r in results]
            log.info("%s: three stages in %.0f s", arch, time.monotonic() - t0)
        for arch in plan["findings"]:
            epochs = plan["epochs"][arch][1]  # the same epochs as the fine-tuning from ReLU
            predicted = epochs * speeds[arch]["kwta"] + RUN_OVERHEAD_S
            left = args.deadline_s - (time.monotonic() - start) - args.reserve_s
            if predicted > left:
                summary["skipped"].append(f"{arch}-kwta-0.2-scratch: needs ~{predicted:.0f} s, "
                                          f"{left:.0f} s left")
                log.warning("skipping %s-kwta-0.2-scratch (time)", arch)
                continue
            results = T.train_schedule(arch, ["kwta-0.2:scratch"], train, test, device,
                                       out_root=find_root, state_dir=state_dir, epochs=epochs,
                                       **common)
            summary["findings"] += [_slim(r) for r in results]
    except Exception:  # noqa: BLE001 - keep what was trained, report, and still summarise
        log.exception("training stopped")
        status = 1
    if ckpt_root.is_dir():
        write_manifest(ckpt_root)
    summary["elapsed_s"] = round(time.monotonic() - start, 1)
    summary["checks"] = training_report.checks(summary)
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (work / "summary.md").write_text(training_report.tables(summary))
    try:
        training_report.plot(summary, work / "training_curves.png")
    except ImportError as e:  # matplotlib is on the GPU image, not in requirements.txt
        log.warning("no chart: %s", e)
    log.info("done in %.0f s; checks: %s", summary["elapsed_s"], summary["checks"])
    return status


if __name__ == "__main__":
    sys.exit(main())
