"""``python -m kwta_demo evaluate``: clean and robust accuracy tables, resumable, over any
number of ``torchrun`` processes (kwta_demo.evaluation)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..evaluation import distributed
from ..evaluation.batches import EvaluationStopped
from ..evaluation.evaluate import STOPPED_EXIT, evaluate
from ..evaluation.results import RobustColumn, load_result, save_result, to_markdown
from ..models.checkpoints import (
    MODEL_NAMES,
    atomic_write_text,
)
from ..settings import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=",".join(MODEL_NAMES),
                        help="comma-separated checkpoint names or folders (default: the six)")
    parser.add_argument("--attacks", default="",
                        help="comma-separated name[:preset][@eps], e.g. pgd:paper,pgd:report,deepfool")
    parser.add_argument("--eps", type=float, default=0.031, help="default epsilon for attacks")
    parser.add_argument("--images", "--n", dest="n", type=int, default=1000,
                        help="images for robust accuracy (--images under torchrun, whose own "
                             "options --n would abbreviate)")
    parser.add_argument("--limit-clean", type=int, default=None,
                        help="seeded subset for clean accuracy (default: whole test split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64,
                        help="images per attack call; the batches are also the units the "
                             "processes of a torchrun share and a stopped row resumes from")
    parser.add_argument("--data", default=None, help="CIFAR-10 source (see README)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:1 ... (default: auto; under torchrun on GPUs, "
                             "each process takes the GPU of its LOCAL_RANK)")
    parser.add_argument("--out", default="results/evaluation",
                        help="output stem: writes STEM.json (after every row) and STEM.md; rows "
                             "already in STEM.json for the same weights and settings are kept "
                             "(a run that measures nothing leaves both files as they are), "
                             "and finished batches are kept in STEM.parts/ (a cache)")
    parser.add_argument("--fresh", action="store_true",
                        help="compute every row again instead of keeping those in STEM.json")
    parser.add_argument("--stop-file", default=None,
                        help="stop (keeping every finished batch) once this file exists; "
                             "the exit status is then 3, or 0 under torchrun")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars (for a log file: each finished row is logged)")


def main(args: argparse.Namespace) -> int:
    models = [m for m in args.models.split(",") if m]
    attacks = [RobustColumn.parse(a, args.eps) for a in args.attacks.split(",") if a]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Appended, not with_suffix: a stem such as "eval-alexnet-kwta-0.1" keeps its dots.
    json_path, md_path = out.parent / f"{out.name}.json", out.parent / f"{out.name}.md"
    stop_file = Path(args.stop_file) if args.stop_file else None
    should_stop = (lambda: stop_file.exists()) if stop_file is not None else None

    with distributed.process_group(resolve_device(args.device)) as device:
        ranks = distributed.current()
        earlier = None if args.fresh else load_result(json_path)
        try:
            result = evaluate(models, attacks, data=args.data, n_robust=args.n, seed=args.seed,
                              batch_size=args.batch_size, device=str(device),
                              limit_clean=args.limit_clean, progress=args.progress,
                              on_update=lambda r: save_result(json_path, r),
                              done=earlier["rows"] if earlier else (), should_stop=should_stop,
                              parts_dir=out.parent / f"{out.name}.parts")
        except EvaluationStopped as e:
            if ranks.leader:
                print(f"stopped: {e}", file=sys.stderr)
            return 0 if ranks.world > 1 else STOPPED_EXIT
        except RuntimeError as e:
            if ranks.world > 1:
                raise RuntimeError(
                    f"rank {ranks.rank} of {ranks.world}: {e}. If another process of this run "
                    "died, rerun the same command: finished rows and batches are kept"
                ) from None
            raise
        if ranks.leader:
            if earlier is not None and len(result["rows"]) == len(earlier["rows"]) \
                    and md_path.exists():
                # nothing measured: the files keep the meta of the run that made their rows
                print(f"every row is in {json_path} already; nothing measured, the files "
                      "are left as they are", file=sys.stderr)
                return 0
            save_result(json_path, result)
            table = to_markdown(result)
            atomic_write_text(md_path, table)
            print(table)
    return 0
