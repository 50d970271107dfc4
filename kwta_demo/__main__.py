"""Command line: `python -m kwta_demo train|evaluate|audit|bench|publish|verify|pipeline ...`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Each command lives in its own module, imported only when it runs, and exposes
# add_arguments(parser) and main(args) -> int.
COMMANDS = {
    "train": ("kwta_demo.cli.train", "train ReLU then incremental k-WTA models"),
    "evaluate": ("kwta_demo.cli.evaluate", "clean and robust accuracy tables"),
    "bench": ("kwta_demo.cli.bench", "ReLU vs k-WTA speed, as ratios measured in one run"),
    "publish": ("kwta_demo.cli.publish", "upload checkpoint folders to the Hugging Face Hub"),
    "audit": ("kwta_demo.cli.audit", "gradient-masking audit and transfer matrix of one "
                                 "architecture's three checkpoints"),
    "verify": ("kwta_demo.cli.verify", "check checkpoints: manifest, strict load, accuracy, "
                                   "k-WTA sparsity"),
    "pipeline": ("kwta_demo.cli.pipeline", "train what is missing, then evaluate, resumably "
                                       "(run | status | stop)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (help stays fast and one broken
    command cannot take the others down)."""
    parser = argparse.ArgumentParser(prog="python -m kwta_demo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("huggingface_hub").setLevel(logging.WARNING)  # one line per saved shard
    logging.getLogger("art").setLevel(logging.WARNING)  # one line per attack call of ART's
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    try:
        return importlib.import_module(args._module).main(args)
    except (ValueError, FileNotFoundError, RuntimeError, ConnectionError) as e:
        # Expected failures (bad arguments, missing data or checkpoints, no GPU) get one
        # clear line, not a traceback.
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
