"""Tables, target checks and the accuracy chart from a training ``summary.json``.

``scripts/device_train.py`` calls these at the end of its run; to redo them from a
returned summary (matplotlib needed for the chart only):

    python scripts/training_report.py runs/device-train/summary.json --png docs/training_curves.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

# Targets on the JPEG test split (the issue); AlexNet's k-WTA models: within 3 points of its ReLU.
TARGETS = {"resnet18-relu": 0.93, "resnet18-kwta-0.2": 0.91, "resnet18-kwta-0.1": 0.88,
           "alexnet-relu": 0.85}
ALEXNET_KWTA_MARGIN = 0.03
SPARSITY_TOLERANCE = 0.1  # relative to gamma


def _runs(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in summary.get("runs", []) + summary.get("findings", [])}


def _target(name: str, runs: dict[str, dict[str, Any]]) -> float | None:
    if name in TARGETS:
        return TARGETS[name]
    relu = runs.get("alexnet-relu")
    if name.startswith("alexnet-kwta-") and not name.endswith("-scratch") and relu:
        return relu["metrics"]["clean_accuracy"] - ALEXNET_KWTA_MARGIN
    return None


def _sec_per_epoch(run: dict[str, Any]) -> float | None:
    times = [h["train_seconds"] for h in run["history"] if h.get("epoch", 0) > 0]
    if len(times) > 1:
        times = times[1:]  # the first epoch also pays for cuDNN's kernel search
    return statistics.median(times) if times else None


def checks(summary: dict[str, Any]) -> dict[str, Any]:
    """Pass/fail of every accuracy target and of the k-WTA sparsity (about gamma)."""
    runs = _runs(summary)
    out: dict[str, Any] = {}
    for run in summary.get("runs", []):
        name, m = run["name"], run["metrics"]
        target = _target(name, runs)
        entry: dict[str, Any] = {"accuracy": m["clean_accuracy"], "target": target,
                                 "accuracy_ok": None if target is None else m["clean_accuracy"] >= target}
        gamma = run["config"].get("gamma")
        if gamma and m.get("sparsity"):
            worst = max(abs(v - gamma) for v in m["sparsity"].values())
            entry.update(sparsity_max_deviation=worst,
                         sparsity_ok=worst <= SPARSITY_TOLERANCE * gamma)
        out[name] = entry
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _first_config(summary: dict[str, Any]) -> dict[str, Any]:
    return (summary.get("runs") or [{}])[0].get("config", {})


def _caption(summary: dict[str, Any]) -> str:
    env = summary.get("env", {})
    return (f"Data: CIFAR-10 JPEG q75 copy, {env.get('train_images')} training and "
            f"{env.get('test_images')} test images; seed {_first_config(summary).get('seed')}; "
            f"device {env.get('device_name')}, torch {env.get('torch')}.")


def tables(summary: dict[str, Any]) -> str:
    """The markdown tables of docs/training.md, each with how its numbers were obtained."""
    runs = _runs(summary)
    res = summary.get("checks") or checks(summary)
    lines = ["## Shipped models", "",
             f"Clean accuracy on all {summary.get('env', {}).get('test_images')} test images, measured after storing the weights as "
             "float16 and loading them back into a float32 model (no autocast). " + _caption(summary), "",
             "| model | initialised from | epochs | peak LR | clean accuracy % | target % | met | "
             "k-WTA non-zero fraction (mean, min–max) | s/epoch | train+eval s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for run in summary.get("runs", []):
        name, m, cfg = run["name"], run["metrics"], run["config"]
        sp = m.get("sparsity") or {}
        if cfg.get("gamma") and sp:
            v = list(sp.values())
            sparsity = f"{sum(v) / len(v):.4f} ({min(v):.4f}–{max(v):.4f})"
        else:
            sparsity = "–"
        r = res.get(name, {})
        met = {True: "yes", False: "**no**", None: "–"}[r.get("accuracy_ok")]
        lines.append(
            f"| {name} | {m['recipe'].get('init_from') or 'scratch'} | {cfg['epochs']} | {cfg['lr']:g} | "
            f"{_pct(m['clean_accuracy'])} | {_pct(r.get('target'))} | {met} | {sparsity} | "
            f"{(_sec_per_epoch(run) or 0):.2f} | {m['recipe']['wall_seconds']:.0f} |")

    lines += ["", "## (1) Time per epoch, ReLU vs k-WTA", "",
              "Median wall time of one training epoch (all training images, batch "
              f"{_first_config(summary).get('batch_size')}, "
              "evaluation excluded, first epoch excluded), from the runs above; the probe column "
              "is the estimate from 10 timed steps before training. The report's Table 3: "
              "381 s (ReLU) vs 735 s (k-WTA) per epoch on Colab, a ratio of 1.93. " + _caption(summary), "",
              "| arch | ReLU s/epoch | k-WTA 0.2 s/epoch | k-WTA 0.1 s/epoch | ratio 0.2 / ReLU | "
              "ratio 0.1 / ReLU | probe ReLU / k-WTA s/epoch |",
              "|---|---|---|---|---|---|---|"]
    probe = summary.get("probe_s_per_epoch", {})
    for arch in summary.get("plan", {}).get("epochs", {}):
        t = [_sec_per_epoch(runs[n]) if n in runs else None
             for n in (f"{arch}-relu", f"{arch}-kwta-0.2", f"{arch}-kwta-0.1")]
        ratio = [f"{x / t[0]:.2f}" if x and t[0] else "–" for x in t[1:]]
        pr = probe.get(arch, {})
        lines.append(f"| {arch} | " + " | ".join(f"{x:.2f}" if x else "–" for x in t)
                     + f" | {ratio[0]} | {ratio[1]} | {pr.get('relu', 0):.2f} / {pr.get('kwta', 0):.2f} |")

    lines += ["", "## (2) k-WTA 0.2 initialised from ReLU vs from scratch, same epochs", "",
              "Test accuracy after each epoch (bf16 autocast on CUDA, all test images). From ReLU: "
              "the fine-tuning recipe (cosine LR); from scratch: the from-scratch recipe "
              "(one-cycle LR) with the same number of epochs. The report: 6 epochs from ReLU "
              "matched 80 from scratch. " + _caption(summary), ""]
    for arch in summary.get("plan", {}).get("epochs", {}):
        tuned, scratch = runs.get(f"{arch}-kwta-0.2"), runs.get(f"{arch}-kwta-0.2-scratch")
        if not tuned:
            continue
        if not scratch:
            lines.append(f"{arch}: the from-scratch run was skipped ({'; '.join(summary.get('skipped', [])) or 'not planned'}).\n")
            continue
        n = max(len(tuned["history"]), len(scratch["history"]))
        by = lambda run: {h["epoch"]: h.get("test_acc") for h in run["history"]}  # noqa: E731
        a, b = by(tuned), by(scratch)
        lines += [f"**{arch}**, {tuned['config']['epochs']} epochs for both:", "",
                  "| epoch | " + " | ".join(str(e) for e in range(n)) + " |",
                  "|---|" + "---|" * n,
                  "| from ReLU % | " + " | ".join(_pct(a.get(e)) for e in range(n)) + " |",
                  "| from scratch % | " + " | ".join(_pct(b.get(e)) for e in range(n)) + " |",
                  "", f"Final (float16 round trip, float32): from ReLU {_pct(tuned['metrics']['clean_accuracy'])}%, "
                  f"from scratch {_pct(scratch['metrics']['clean_accuracy'])}%.", ""]

    lines += ["## (3) Accuracy with unaltered weights, before fine-tuning", "",
              "The previous stage's weights loaded unchanged into the k-WTA model (epoch 0 of "
              "the fine-tuning run; bf16 autocast on CUDA, all test images). The report: about 50% "
              "for AlexNet. " + _caption(summary), "",
              "| arch | ReLU model % | k-WTA 0.2 with ReLU weights % | k-WTA 0.2 after fine-tuning % | "
              "k-WTA 0.1 with k-WTA 0.2 weights % | k-WTA 0.1 after fine-tuning % |",
              "|---|---|---|---|---|---|"]
    for arch in summary.get("plan", {}).get("epochs", {}):
        row = [_pct(runs[f"{arch}-relu"]["metrics"]["clean_accuracy"]) if f"{arch}-relu" in runs else "–"]
        for g in ("0.2", "0.1"):
            run = runs.get(f"{arch}-kwta-{g}")
            row += [_pct(run["metrics"].get("initial_accuracy")) if run else "–",
                    _pct(run["metrics"]["clean_accuracy"]) if run else "–"]
        lines.append(f"| {arch} | " + " | ".join(row) + " |")
    plan = summary.get("plan", {})
    lines += ["", f"Plan: epochs {plan.get('epochs')} (recipe x {plan.get('scale')}), "
              f"findings runs for {plan.get('findings')}, predicted {plan.get('predicted_s')} s of "
              f"a {plan.get('budget_s')} s budget; whole run {summary.get('elapsed_s')} s.", ""]
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: str | Path) -> Path:
    """Test accuracy per epoch of every run, one panel per architecture (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    runs = _runs(summary)
    archs = list(summary.get("plan", {}).get("epochs", {})) or sorted({n.split("-")[0] for n in runs})
    fig, axes = plt.subplots(1, len(archs), figsize=(6 * len(archs), 4.2), squeeze=False)
    styles = [("relu", "ReLU, from scratch", "-"), ("kwta-0.2", "k-WTA 0.2, from ReLU", "-"),
              ("kwta-0.1", "k-WTA 0.1, from k-WTA 0.2", "-"),
              ("kwta-0.2-scratch", "k-WTA 0.2, from scratch", "--")]
    for ax, arch in zip(axes[0], archs):
        for suffix, label, style in styles:
            run = runs.get(f"{arch}-{suffix}")
            if not run:
                continue
            pts = [(h["epoch"], 100 * h["test_acc"]) for h in run["history"] if "test_acc" in h]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", markersize=3, label=label)
        ax.set_title(f"{arch}: test accuracy per epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch of the run (0 = initial weights, before fine-tuning)")
        ax.set_ylabel("test accuracy, % (CIFAR-10 JPEG copy)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    env = summary.get("env", {})
    fig.suptitle(f"{env.get('test_images')} test images, {env.get('device_name')}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("summary", type=Path)
    p.add_argument("--png", type=Path, default=None, help="also draw the chart here")
    args = p.parse_args(argv)
    summary = json.loads(args.summary.read_text())
    summary["checks"] = checks(summary)
    print(tables(summary))
    print(json.dumps(summary["checks"], indent=2))
    if args.png:
        plot(summary, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
