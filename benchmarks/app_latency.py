"""App latency on this machine: cold start and one attack click. Prints figures, asserts nothing.

    python benchmarks/app_latency.py [--repeats 5] [--arch resnet18] [--data SRC] [--checkpoints DIR]

Cold start (each repeat in a fresh Python process): import the app, build the demo and
load the first model; and when the gallery (decoded from the CIFAR-10 source in the
background while the app already serves) is ready. One attack click:
PGD with the ``interactive`` preset on one gallery image against the three models of one
architecture, then the activation maps: the two handlers the app's button calls (without
Gradio's own overhead, a few milliseconds on localhost). The first click includes
loading the models, the warm figure is the median of the clicks after it.

Without the six trained checkpoints, randomly initialised stand-ins with the same
architectures are written to a temporary folder (timings do not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_COLD = """
import json, sys, time
t0 = time.perf_counter()
from kwta_demo.app.ui import create_demo
from kwta_demo.app.explorer import Explorer
t1 = time.perf_counter()
explorer = Explorer()
demo = create_demo(explorer)
t2 = time.perf_counter()
explorer.cache.get(sys.argv[1])
t3 = time.perf_counter()
n = len(explorer.gallery().images)  # loaded in the background since create_demo
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "first_model": t3 - t2, "total": t3 - t0,
                  "gallery_ready": t4 - t0, "gallery": n, "device": str(explorer.cache.device)}))
"""


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def _checkpoints(arch: str, given: str | None) -> tuple[str, str, bool]:
    """A checkpoint folder holding the three models of ``arch``, what it is, and whether
    it is a temporary folder of stand-ins (to delete afterwards)."""
    from kwta_demo.settings import get_settings

    names = [f"{arch}-relu", f"{arch}-kwta-0.2", f"{arch}-kwta-0.1"]
    folder = Path(given) if given else get_settings().checkpoint_dir
    if all((folder / n / "config.json").is_file() for n in names):
        return str(folder), f"trained checkpoints in {folder}", False
    from kwta_demo.testing import write_random_checkpoints

    tmp = Path(tempfile.mkdtemp(prefix="kwta-bench-"))
    write_random_checkpoints(tmp, names)
    return str(tmp), f"randomly initialised stand-ins (no trained {arch} checkpoints in {folder})", True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--arch", default="resnet18", choices=["resnet18", "alexnet"])
    parser.add_argument("--data", help="CIFAR-10 source (default: KWTA_CIFAR10 / the search path)")
    parser.add_argument("--checkpoints", help="checkpoint folder (default: KWTA_CHECKPOINTS)")
    args = parser.parse_args()

    os.environ["KWTA_DEVICE"] = "cpu"  # the figures are for a CPU
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if args.data:
        os.environ["KWTA_CIFAR10"] = args.data
    folder, what, temporary = _checkpoints(args.arch, args.checkpoints)
    os.environ["KWTA_CHECKPOINTS"] = folder
    try:
        _measure(args, what)
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)


def _measure(args: argparse.Namespace, what: str) -> None:
    print(f"machine: {_machine()}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other work on the machine slows every figure)")
    print(f"models: {what}")
    cold = []
    for _ in range(args.repeats):
        out = subprocess.run([sys.executable, "-c", _COLD, f"{args.arch}-relu"], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        cold.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = ("import", "build", "first_model", "total", "gallery_ready")
    med = {k: statistics.median(r[k] for r in cold) for k in keys}
    print(f"cold start, median of {args.repeats} fresh processes: {med['total']:.2f} s to a built "
          f"demo with its first model loaded (import {med['import']:.2f} s, build demo "
          f"{med['build']:.2f} s, first model {med['first_model']:.2f} s); the "
          f"{cold[0]['gallery']}-image gallery, loaded in the background, ready after "
          f"{med['gallery_ready']:.2f} s")

    from kwta_demo.app.explorer import Explorer
    from kwta_demo.app.model_cache import ModelCache

    explorer = Explorer(ModelCache("cpu"))
    gallery = explorer.gallery()
    if gallery.images:
        image, label = explorer.gallery_item(0)
    else:
        import numpy as np

        image, label = np.full((32, 32, 3), 128, dtype=np.uint8), None
    clicks = []
    for _ in range(args.repeats + 1):
        t = time.perf_counter()
        outcome = explorer.attack(image, arch=args.arch, variants=["relu", "kwta-0.2", "kwta-0.1"],
                                  attack="pgd", preset="interactive", eps_255=8, true_class=label)
        explorer.activations(outcome.state())  # the button's chained second step
        clicks.append(time.perf_counter() - t)
    print(f"one attack click (PGD interactive: 10 steps, one image, three {args.arch} models): "
          f"first {clicks[0]:.2f} s (loads the models), then median {statistics.median(clicks[1:]):.2f} s "
          f"over {args.repeats} clicks (min {min(clicks[1:]):.2f}, max {max(clicks[1:]):.2f})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
