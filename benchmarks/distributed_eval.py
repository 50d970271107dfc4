"""One process of 2 threads against 2 torchrun ranks of 1 thread, on the same evaluation.

For each attack, the same ``python -m kwta_demo evaluate`` row (one model, N seeded test
images, fixed batches) is run both ways, alternately, ``--repeats`` times; the attack
row's own seconds are compared (the best of the repeats, as machines here are noisy),
and the rows' per-image outcomes must agree. A batched attack (PGD: one call per batch
of images) and attacks run one image per call (Square and APGD, whose library draws from
a global generator) show where two ranks help on a 2-core CPU and where they do not.

    python benchmarks/distributed_eval.py --model checkpoints/alexnet-kwta-0.1

Results: a table on stdout and ``results/distributed-eval-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from kwta_demo.evaluation.speed import environment

# attack spec, images, batch size: batched attacks get a batch per rank; the one-image
# attacks run image by image inside each batch anyway
DEFAULT_CASES = ("pgd:paper@0.031:64:32", "apgd-ce:interactive@0.031:32:16",
                 "square:interactive@0.031:16:8")


def _run(ranks: int, threads: int, model: str, attack: str, n: int, batch: int, data: str | None,
         out: Path) -> dict:
    evaluate = ["-m", "kwta_demo", "evaluate", "--models", model, "--attacks", attack,
                "--images", str(n), "--batch-size", str(batch), "--limit-clean", "10",
                "--device", "cpu", "--out", str(out), "--fresh"]
    evaluate += ["--data", data] if data else []
    command = ([sys.executable, *evaluate] if ranks == 1 else
               [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc-per-node={ranks}", *evaluate])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    (row,) = [r for r in json.loads(out.with_name(out.name + ".json").read_text())["rows"]
              if r["attack"] != "none"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/alexnet-kwta-0.1")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                        help="comma-separated ATTACK:PRESET@EPS:IMAGES:BATCH")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            attack, n, batch = case.rsplit(":", 2)
            seconds: dict[str, list[float]] = {"1x2": [], "2x1": []}
            outcomes = {}
            for _ in range(args.repeats):
                for label, ranks, threads in (("1x2", 1, 2), ("2x1", 2, 1)):
                    row = _run(ranks, threads, args.model, attack, int(n), int(batch), args.data,
                               Path(tmp) / label)
                    seconds[label].append(row["seconds"])
                    outcomes[label] = row["robust_per_image"]
            same = outcomes["1x2"] == outcomes["2x1"]
            best = {k: min(v) for k, v in seconds.items()}
            rows.append({"attack": attack, "images": int(n), "batch_size": int(batch),
                         "seconds_1_process_2_threads": best["1x2"],
                         "seconds_2_ranks_1_thread": best["2x1"],
                         "speedup_of_2_ranks": best["1x2"] / best["2x1"],
                         "all_seconds": seconds, "same_outcomes": same})
            print(f"{attack:32s} {n:>4s} images, batch {batch:>3s}: 1x2 threads "
                  f"{best['1x2']:7.1f} s, 2 ranks x 1 thread {best['2x1']:7.1f} s, "
                  f"2 ranks {best['1x2'] / best['2x1']:.2f}x; same outcomes: {same}", flush=True)
    out = ROOT / "results" / "distributed-eval-cpu.json"
    out.write_text(json.dumps({
        "environment": {**environment(__import__("torch").device("cpu")), "model": args.model,
                        "command": "python benchmarks/distributed_eval.py " + " ".join(sys.argv[1:])},
        "rows": rows}, indent=2) + "\n")
    print(f"written to {out}")
    return 0 if all(r["same_outcomes"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
