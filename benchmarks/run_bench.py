"""Run the k-WTA speed bench without the package CLI: same options as
``python -m kwta_demo bench`` (see kwta_demo/evaluation/speed.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kwta_demo.evaluation import speed as bench  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=bench.__doc__.splitlines()[0])
    bench.add_arguments(parser)
    return bench.main(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
