"""The CPU k-WTA selection on a training step's real k-WTA inputs: bits against values.

Captures the inputs of every k-WTA layer in one forward pass of a ResNet18 in training
mode (batch 128, channels-last, bf16 autocast where the CPU has native bf16, as ``train``
runs), then times, interleaved repeat by repeat, finding every layer's threshold three
ways: ``bits`` (the numpy path: partition the floats' bits as integers, rows it cannot
settle by their values), ``values`` (partition the values, widened to float32: the numpy
path before), and ``topk`` (the reference). It also counts the (layer, image) rows whose
threshold is <= 0, which the bits path hands to the values path.

    python benchmarks/kwta_select.py [--checkpoint resnet18-kwta-0.2] [--data SRC]
                                     [--repeats 9] [--threads 2] [--out PATH]

Random weights and inputs by default; ``--checkpoint`` takes trained weights, and with
``--data`` the first 128 test images. Results: a table on stdout and a JSON file
(default ``results/kwta-select-cpu.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from kwta_demo.evaluation.speed import environment
from kwta_demo.models import kwta as K
from kwta_demo.settings import PROJECT_ROOT
from kwta_demo.training import cpu_has_native_bf16, set_threads

PATHS = {
    "bits": lambda flat, k: K._numpy_select(flat, k)[0],
    "values": K._numpy_float_threshold,
    "topk": K.kwta_threshold,
}


def kwta_inputs(checkpoint: str | None, data: str | None, gamma: float, batch: int = 128
                ) -> tuple[list[torch.Tensor], list[int], str]:
    """Every k-WTA layer's input, flattened (rows, N), its k, and what the model was."""
    from kwta_demo.models.architectures import build_model

    if checkpoint:
        from kwta_demo.models.checkpoints import load_model

        model, what = load_model(checkpoint, "cpu"), checkpoint
    else:
        torch.manual_seed(0)
        model, what = build_model("resnet18", "kwta", gamma), f"resnet18 k-WTA {gamma}, random weights"
    if data:
        from kwta_demo.data.cifar10 import load_cifar10

        x = load_cifar10("test", data).images[:batch].float() / 255
        what += f", the first {batch} test images"
    else:
        x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        what += f", {batch} random images"
    model = model.to(memory_format=torch.channels_last).train()
    flats, ks = [], []

    def hook(module: K.KWTA, inputs: tuple[torch.Tensor, ...]) -> None:
        flat = K._flatten(inputs[0].detach())[0].clone()
        flats.append(flat)
        ks.append(K.num_winners(module.gamma, flat.shape[1]))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, K.KWTA)]
    amp = cpu_has_native_bf16()
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            model(x.contiguous(memory_format=torch.channels_last))
    finally:
        for h in handles:
            h.remove()
    return flats, ks, what + (", bf16 autocast" if amp else ", float32")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--data", default=None)
    parser.add_argument("--gamma", type=float, default=0.2, help="with random weights")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(PROJECT_ROOT / "results" / "kwta-select-cpu.json"))
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)
    flats, ks, what = kwta_inputs(args.checkpoint, args.data, args.gamma)
    for flat, k in zip(flats, ks):  # the same thresholds, or nothing here means anything
        ref = K.kwta_threshold(flat, k)
        for name, fn in PATHS.items():
            if not torch.equal(fn(flat, k).float(), ref.float()):
                raise SystemExit(f"{name} disagrees with the reference on {tuple(flat.shape)}")
    times: dict[str, list[float]] = {name: [] for name in PATHS}
    for _ in range(args.repeats + 1):  # the first round warms up
        for name, fn in PATHS.items():
            t0 = time.perf_counter()
            for flat, k in zip(flats, ks):
                fn(flat, k)
            times[name].append(time.perf_counter() - t0)
    rows = []
    base = statistics.median(times["values"][1:])
    for name, values in times.items():
        ms = 1000 * statistics.median(values[1:])
        rows.append({"path": name, "ms": ms, "vs_values": ms / (1000 * base),
                     "repeats_ms": [1000 * v for v in values[1:]]})
    non_positive = sum(int((K.kwta_threshold(f, k) <= 0).sum()) for f, k in zip(flats, ks))
    total_rows = sum(f.shape[0] for f in flats)
    env = {**environment(torch.device("cpu")), "threads": threads,
           "command": "python benchmarks/kwta_select.py " + " ".join(argv or sys.argv[1:])}
    result = {"environment": env, "inputs": what, "layers": len(flats),
              "elements": sum(f.numel() for f in flats), "non_positive_rows": non_positive,
              "rows": total_rows, "rows_by_path": rows}
    print(f"{what}; {len(flats)} k-WTA layers, {result['elements']:,} values; "
          f"{non_positive} of {total_rows} rows with a threshold <= 0")
    print("| path | ms (median of %d) | x values |" % args.repeats)
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r['path']} | {r['ms']:.1f} | {r['vs_values']:.2f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
