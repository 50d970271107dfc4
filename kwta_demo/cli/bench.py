"""``python -m kwta_demo bench``: ReLU vs k-WTA speed as ratios measured in one run
(kwta_demo.evaluation.speed)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

from ..evaluation.speed import (
    DEFAULT_WORKLOADS,
    GAMMA,
    IMPLS,
    QUICK_WORKLOADS,
    WORKLOADS,
    _load_average,
    device_tag,
    environment,
    format_table,
    run_bench,
)
from ..settings import PROJECT_ROOT, resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` command's options."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: KWTA_DEVICE, else cuda if present)")
    parser.add_argument("--workloads", default=None,
                        help=f"comma-separated, from: {', '.join(WORKLOADS)} (default: per device)")
    parser.add_argument("--impls", default=",".join(IMPLS),
                        help="comma-separated: relu, reference, fast, or a concrete k-WTA impl "
                             "(kthvalue, topk, numpy, triton); relu is always added")
    parser.add_argument("--gamma", type=float, default=GAMMA, help="k-WTA gamma (the click uses 0.2 and 0.1)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs per impl (default 3 CUDA, 1 CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per impl (default 10 CUDA, 5 CPU)")
    parser.add_argument("--amp", choices=["bf16", "fp16"], default=None, help="run under autocast")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="smoke run: two workloads, two repeats")
    parser.add_argument("--output", default=None,
                        help="JSON path (default results/bench-<device>.json; '-' for none)")


def _command_line() -> str:
    argv = sys.argv[1:]
    if "bench" in argv:
        argv = argv[argv.index("bench") + 1:]
    return " ".join(["python -m kwta_demo bench", *argv])


def main(args: argparse.Namespace) -> int:
    """Run the bench, print the table, write the JSON."""
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.workloads:
        workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    else:
        workloads = QUICK_WORKLOADS if args.quick else DEFAULT_WORKLOADS.get(device.type, DEFAULT_WORKLOADS["cpu"])
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    if "relu" not in impls:
        impls.insert(0, "relu")
    cuda = device.type == "cuda"
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3 if cuda else 1)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 10 if cuda else 5)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[args.amp]
    torch.backends.cudnn.benchmark = True

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.time()
    env = environment(device)
    path = None
    if args.output != "-":
        path = Path(args.output) if args.output else PROJECT_ROOT / "results" / f"bench-{device_tag(device)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    messages: set[str] = set()

    def write(complete: bool) -> None:
        # Written after every workload, so that a run cut short keeps what it measured.
        result = {
            "command": _command_line(),
            "environment": env,
            "settings": {"warmup": warmup, "repeats": repeats, "gamma": args.gamma,
                         "amp": args.amp, "statistic": "median of repeats, impls interleaved"},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(time.time() - started, 1),
            "complete": complete,
            "load_average_at_end": _load_average(),
            "warnings": sorted(messages),
            "rows": rows,
        }
        if path is not None:
            path.write_text(json.dumps(result, indent=1) + "\n")

    for name in workloads:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows += run_bench([name], device=device, impls=impls, gamma=args.gamma, warmup=warmup,
                              repeats=repeats, amp=amp, progress=progress)
        messages.update(str(w.message) for w in caught)
        write(complete=False)
    write(complete=True)
    print(format_table(rows))
    if path is not None:
        print(f"wrote {path}", file=sys.stderr)
    bad = sum(r.get("check", {}).get("mismatches", 0) for r in rows if isinstance(r.get("check"), dict))
    return 1 if bad else 0
