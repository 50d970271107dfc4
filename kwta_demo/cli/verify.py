"""``python -m kwta_demo verify``: checks of shipped checkpoints, optionally recorded in their
metrics and cards (kwta_demo.evaluation.verify)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.cifar10 import load_cifar10, seeded_subset
from ..evaluation.verify import (
    verify_checkpoint,
)
from ..models.checkpoints import (
    atomic_write_text,
    write_manifest,
)
from ..reporting.cards import record_verification


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m kwta_demo verify``."""
    parser.add_argument("folders", nargs="+", help="checkpoint folders")
    parser.add_argument("--manifest", default=None,
                        help="a SHA256SUMS file to check against (default: the folders' "
                             "parent's, when it covers them)")
    parser.add_argument("--data", default=None, help="CIFAR-10 source (see README)")
    parser.add_argument("--limit-test", type=int, default=None,
                        help="seeded test subset (default: all 10,000 images)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default=None, help="write the findings to this JSON file")
    parser.add_argument("--results", default="results/reproduction.json",
                        help="with --record: the evaluation rows whose robust accuracies, "
                             "measured on these weights, go on the card (default: %(default)s)")
    parser.add_argument("--record", action="store_true",
                        help="for each checkpoint that passes, store the findings in its "
                             "metrics.json and model card, and rewrite the SHA256SUMS of its "
                             "parent folder")


def main(args: argparse.Namespace) -> int:
    """Run ``python -m kwta_demo verify``; returns 1 if any checkpoint failed."""
    test = load_cifar10("test", args.data)
    if args.limit_test:
        test = seeded_subset(test, args.limit_test, 0)
    results = [verify_checkpoint(f, test, device=args.device, manifest=args.manifest)
               for f in args.folders]
    print("| checkpoint | verdict | clean accuracy | k-WTA non-zero share (min-max) |")
    print("|---|---|---|---|")
    for r in results:
        acc = f"{100 * r['clean_accuracy']:.2f}% of {r['test_images']}" if "clean_accuracy" in r else "-"
        sp = r.get("sparsity") or {}
        share = (f"{min(sp.values()):.4f}-{max(sp.values()):.4f}"
                 if sp and r.get("name", "").find("kwta") >= 0 else "-")
        verdict = "ok" if r["ok"] else "FAILED: " + "; ".join(r["problems"])
        print(f"| {r.get('name', r['folder'])} | {verdict} | {acc} | {share} |")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    if args.record:
        command = "python -m kwta_demo verify " + " ".join(Path(f).name for f in args.folders)
        for folder, r in zip(args.folders, results):
            if r["ok"]:
                record_verification(folder, r, command=command, results=args.results)
        for parent in {Path(f).parent for f, r in zip(args.folders, results) if r["ok"]}:
            write_manifest(parent)
    return 0 if all(r["ok"] for r in results) else 1
