"""Run the k-WTA speed bench without the package CLI: same options as
``python -m kwta_demo bench`` (see kwta_demo/evaluation/speed.py)."""

from __future__ import annotations

import argparse
import sys

from kwta_demo.cli import bench


def main() -> int:
    parser = argparse.ArgumentParser(description=bench.__doc__.splitlines()[0])
    bench.add_arguments(parser)
    return bench.main(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
