"""Seconds per image of each evaluation attack on each architecture: the evaluation's budget.

Times ``robust_accuracy`` (the path ``evaluate`` and the pipeline take) on a few
class-balanced test images, for a ReLU and a k-WTA γ=0.1 model of each architecture,
and prints seconds per image with the CPU-hours that the pipeline's plan would take
(its n per attack and model). Attacks that stop early on success run faster on weaker
models, so use weights close to the final ones: ``--resnet-state`` takes the weights of
a training state file (e.g. the ReLU run in progress).

    python benchmarks/attack_cost.py --images 8 --resnet-state runs/resnet18-relu.state.safetensors

Results: a table on stdout and ``results/attack-cost-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from kwta_demo import build_model, load_model
from kwta_demo.data.cifar10 import evaluation_sample, load_cifar10
from kwta_demo.evaluation.accuracy import robust_accuracy
from kwta_demo.evaluation.results import RobustColumn
from kwta_demo.evaluation.speed import environment
from kwta_demo.models.kwta import relu_to_kwta
from kwta_demo.pipeline.plan import DEFAULT_PLAN
from kwta_demo.settings import PROJECT_ROOT, resolve_device
from kwta_demo.training import set_threads


def _resnet(state: str | None, gamma: float | None) -> torch.nn.Module:
    model = build_model("resnet18")
    if state:
        from safetensors.torch import load_file

        tensors = load_file(state)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if gamma is not None:
        relu_to_kwta(model, gamma)
    return model.eval()


def models(resnet_state: str | None) -> dict[str, torch.nn.Module]:
    """ReLU and k-WTA 0.1 of each architecture (AlexNet: the shipped checkpoints)."""
    return {
        "resnet18-relu": _resnet(resnet_state, None),
        "resnet18-kwta-0.1": _resnet(resnet_state, 0.1),
        "alexnet-relu": load_model("checkpoints/alexnet-relu", "cpu"),
        "alexnet-kwta-0.1": load_model("checkpoints/alexnet-kwta-0.1", "cpu"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--slow-images", type=int, default=2,
                        help="images for gradient estimation and C&W")
    parser.add_argument("--resnet-state", default=None)
    parser.add_argument("--data", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attacks", default=None,
                        help="comma-separated specs to time (default: every one of the plan); "
                             "their rows replace those of the same model and spec in the file")
    args = parser.parse_args()
    device = resolve_device("cpu")
    threads = set_threads(args.threads)
    test = load_cifar10("test", args.data)
    specs = list(dict.fromkeys(a for step in DEFAULT_PLAN.evaluate for a in step.attacks))
    if args.attacks:
        specs = [a for a in args.attacks.split(",") if a]
    command = "python benchmarks/attack_cost.py " + " ".join(sys.argv[1:])
    out = PROJECT_ROOT / "results" / f"attack-cost-{device.type}.json"
    earlier = json.loads(out.read_text()) if args.attacks and out.is_file() else None
    rows = []
    for name, model in models(args.resnet_state).items():
        for text in specs:
            spec = RobustColumn.parse(text, 0.031)
            slow = spec.attack in ("gradient-estimation", "cw")
            k = args.slow_images if slow else args.images
            sample, _ = evaluation_sample(test, k, args.seed)
            t0 = time.perf_counter()
            res = robust_accuracy(model, sample.images, sample.labels, spec.attack, eps=spec.eps,
                                  preset=spec.preset, seed=args.seed, batch_size=k, device=device)
            per_image = (time.perf_counter() - t0) / k
            rows.append({"model": name, "attack": text, "images": k, "seconds_per_image": per_image,
                         "robust_acc_on_these": res["robust_acc"], "command": command})
            print(f"{name:20s} {text:32s} {per_image:8.2f} s/image ({k} images)", flush=True)
    environment_ = {**environment(device), "threads": threads, "resnet_state": args.resnet_state,
                    "command": command}
    if earlier is not None:  # keep the other rows, each with the command that measured it
        new = {(r["model"], r["attack"]) for r in rows}
        old_command = earlier["environment"].get("command")
        kept = [{"command": old_command, **r} for r in earlier["rows"]
                if (r["model"], r["attack"]) not in new]
        rows = kept + rows
        environment_ = {**earlier["environment"], **environment_,
                        "command": "per row (rows measured by different commands)"}
    out.write_text(json.dumps({"environment": environment_, "rows": rows}, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
