"""Seconds for one click of the audit, the transfer matrix and the loss landscape: one
image, three models.

The explorer's own path (``Explorer.audit_last``, ``transfer_last`` and ``landscape``
(41 points per line, a 21x21 plane) after an attack
with the app's defaults: PGD ``interactive``, eps 8/255), on one CIFAR-10 test image,
for the three models of an architecture. ResNet18 weights can come from a training state
file (``--resnet-state``, e.g. the ReLU run in progress, swapped to k-WTA for the other
two), so that early-stopping attacks behave as on trained models.

    python benchmarks/audit_cost.py --arch resnet18 --resnet-state runs/resnet18-relu.state.safetensors
    python benchmarks/audit_cost.py --arch resnet18 --attack deepfool:interactive
    python benchmarks/audit_cost.py --arch resnet18 --image 12

The cost depends on the image too (Square and the early-stopping attacks stop when they
succeed), so ``--image`` picks the gallery image (default 0; the screenshots use 12).

The audit's cost depends on the audited attack (it runs that attack again with five times
the steps), so ``--attack`` picks the click audited; results go to
``results/audit-cost-<arch>-cpu.json`` for the defaults, else
``results/audit-cost-<arch>[-<attack>-<preset>][-image<i>]-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from kwta_demo.app.explorer import Explorer
from kwta_demo.app.model_cache import ModelCache
from kwta_demo.attacks import get_attack
from kwta_demo.evaluation.speed import environment
from kwta_demo.settings import PROJECT_ROOT
from kwta_demo.training import set_threads

DEFAULT_ATTACK = "pgd:interactive"


def _state_models(state: str) -> dict[str, torch.nn.Module]:
    from safetensors.torch import load_file

    from kwta_demo import build_model

    tensors = {k[6:]: v for k, v in load_file(state).items() if k.startswith("model.")}
    out = {}
    for name, act, gamma in (("resnet18-relu", "relu", None), ("resnet18-kwta-0.2", "kwta", 0.2),
                             ("resnet18-kwta-0.1", "kwta", 0.1)):
        model = build_model("resnet18", act, gamma)
        model.load_state_dict(tensors)
        out[name] = model.eval()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18", choices=("resnet18", "alexnet"))
    parser.add_argument("--resnet-state", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--image", type=int, default=0,
                        help="gallery image index (default 0)")
    parser.add_argument("--attack", default=DEFAULT_ATTACK,
                        help=f"the attack click audited, NAME:PRESET (default {DEFAULT_ATTACK})")
    args = parser.parse_args()
    attack, _, preset = args.attack.partition(":")
    get_attack(attack)  # an unknown name fails here, before any model is loaded
    threads = set_threads(args.threads)
    explorer = Explorer(ModelCache("cpu"))
    if args.arch == "resnet18" and args.resnet_state:
        models = _state_models(args.resnet_state)
        explorer.cache.get = lambda name: models[name]  # the cache serves these weights
    try:
        image, _ = explorer.gallery_item(args.image)
    except ValueError as e:
        parser.error(f"--image {args.image}: {e}")
    times: dict[str, list[float]] = {"attack": [], "audit": [], "transfer": [], "landscape": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = explorer.attack(image, arch=args.arch, variants=["relu", "kwta-0.2", "kwta-0.1"],
                              attack=attack, preset=preset or "interactive", eps_255=8)
        t1 = time.perf_counter()
        explorer.audit_last(out.state())
        t2 = time.perf_counter()
        explorer.transfer_last(out.state())
        t3 = time.perf_counter()
        explorer.landscape(out.state())
        t4 = time.perf_counter()
        for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[key].append(value)
    rows = {k: {"median_s": statistics.median(v), "all_s": v} for k, v in times.items()}
    env = {**environment(torch.device("cpu")), "threads": threads, "arch": args.arch,
           "weights": args.resnet_state or "checkpoints/", "attack": args.attack,
           "gallery_image": args.image,
           "command": "python benchmarks/audit_cost.py " + " ".join(sys.argv[1:])}
    tag = "" if args.attack == DEFAULT_ATTACK else f"-{attack}-{preset or 'interactive'}"
    tag += f"-image{args.image}" if args.image else ""
    out_path = PROJECT_ROOT / "results" / f"audit-cost-{args.arch}{tag}-cpu.json"
    out_path.write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    for k, r in rows.items():
        print(f"{k:9s} {r['median_s']:.1f} s (median of {args.repeats})")
    print(f"written to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
