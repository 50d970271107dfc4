"""Time every attack's preset on one image: ``python benchmarks/click_cost.py [--preset P]``.

Random-initialised ResNet18s (ReLU and k-WTA) stand in for trained ones: the cost of a
preset is its number of model passes, which barely depends on the weights (except where
an attack stops early; ``gradient-estimation`` is run without early stopping here, its
worst case). Prints wall seconds (the fastest of ``--repeat`` runs), passes and images
forwarded per attack.
"""

from __future__ import annotations

import argparse
import time

import torch

from kwta_demo.attacks import ATTACKS, run_attack
from kwta_demo.models.architectures import build_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/click_cost.py", description=__doc__)
    parser.add_argument("--preset", default="interactive")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated names")
    parser.add_argument("--models", default="relu,kwta-0.1", help="relu and/or kwta-<gamma>")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--repeat", type=int, default=1, help="report the fastest of N runs")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32, device=device)
    y = torch.tensor([3], device=device)
    for spec in args.models.split(","):
        activation, _, gamma = spec.partition("-")
        model = build_model("resnet18", activation, float(gamma) if gamma else None)
        model = model.to(device).eval()
        sizes: list[int] = []
        model.register_forward_pre_hook(lambda _m, a: sizes.append(a[0].shape[0]))
        run_attack("fgsm", model, x, y, eps=args.eps)  # warm-up
        for name in args.attacks.split(","):
            kwargs = {"target": (y + 1) % 10} if ATTACKS[name].targeted == "required" else {}
            if "early_stop" in ATTACKS[name].params:
                kwargs["early_stop"] = False
            walls = []
            for _ in range(max(1, args.repeat)):
                sizes.clear()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                run_attack(name, model, x, y, eps=args.eps, preset=args.preset, **kwargs)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                walls.append(time.perf_counter() - start)
            wall = min(walls)
            print(f"{spec:10s} {name:20s} {wall:7.2f} s  {len(sizes):5d} passes  "
                  f"{sum(sizes):6d} images", flush=True)


if __name__ == "__main__":
    main()
