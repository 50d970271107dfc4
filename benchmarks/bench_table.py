"""Print a bench JSON (results/bench-*.json) as the markdown table of docs/performance.md.

    python benchmarks/bench_table.py results/bench-cpu.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kwta_demo.evaluation.speed import markdown_table


def main(paths: list[str]) -> int:
    for path in paths:
        data = json.loads(Path(path).read_text())
        env = data.get("environment", {})
        where = env.get("gpu") or f"{env.get('cpu')} ({env.get('cpu_count')} cores, {env.get('torch_threads')} torch threads)"
        print(f"`{data.get('command')}` on {where}, torch {env.get('torch')}, "
              f"load average {env.get('load_average_at_start')} -> {data.get('load_average_at_end')}\n")
        print(markdown_table(data["rows"]))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
