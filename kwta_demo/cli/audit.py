"""``python -m kwta_demo audit``: the gradient-masking audit and transfer matrix of one
architecture's checkpoints (kwta_demo.evaluation.audit)."""

from __future__ import annotations

import argparse

from ..evaluation.audit import (
    appender,
    audit_checkpoints,
    load_rows,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m kwta_demo audit``."""
    parser.add_argument("--arch", default="alexnet", choices=("resnet18", "alexnet"))
    parser.add_argument("--attacks", default="pgd:report,deepfool:paper,pgd:corrected",
                        help="comma list of name:preset to audit; the last one also makes "
                             "the transfer matrix (default: %(default)s)")
    parser.add_argument("--n", type=int, default=100, help="class-balanced test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--square", default="cpu", help="Square preset (default: %(default)s)")
    parser.add_argument("--data", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default="results/audit.json",
                        help="rows are added to this JSON file (kept across runs)")


def main(args: argparse.Namespace) -> int:
    """Run ``python -m kwta_demo audit``; prints each model's verdict."""
    rows = load_rows(args.out)
    save = appender(args.out, rows)
    found = audit_checkpoints(args.arch, attacks=[a for a in args.attacks.split(",") if a],
                              n=args.n, seed=args.seed, data=args.data, device=args.device,
                              square_preset=args.square, done=rows, on_row=save)
    for row in found:
        if row["kind"] == "audit":
            print(f"{row['model']} under {row['attack']} ({row['correct']} of {row['n']} images "
                  f"correct, seed {row['seed']}): {row['verdict']}")
    return 0
