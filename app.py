"""Start the k-WTA explorer: ``python app.py [--checkpoints DIR] [--data SRC] [--port N] ...``.

Builds the demo from ``kwta_demo.app.ui`` and launches it; nothing else. Every flag overrides
the environment variable that ``kwta_demo.settings`` reads (the one place settings are
read) and means exactly the same thing; the settings go to the model cache and the
explorer as arguments, not through the environment. ``GRADIO_SERVER_NAME`` and
``GRADIO_SERVER_PORT`` are honoured when ``--host`` and ``--port`` are not given. A bad
flag, variable or device, or a port in use, ends the program with one line saying so
(exit status 2), not a traceback.
"""

from __future__ import annotations

import argparse
import os

FLAG_TO_SETTING = {
    "checkpoints": "checkpoint_dir",  # KWTA_CHECKPOINTS
    "hub_repo": "hub_repo",  # KWTA_HUB_REPO
    "data": "cifar10",  # KWTA_CIFAR10
    "device": "device",  # KWTA_DEVICE
}


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must lie in 1..65535, got {port}")
    return port


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="k-Winners-Take-All adversarial-defence explorer")
    parser.add_argument("--checkpoints", help="checkpoint folder (KWTA_CHECKPOINTS; default: checkpoints/)")
    parser.add_argument("--hub-repo", help="each model's Hub repo, {name} for its name (KWTA_HUB_REPO)")
    parser.add_argument("--data", help="CIFAR-10 source: batches folder, image folder or .tar.gz (KWTA_CIFAR10)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (KWTA_DEVICE; default: GPU when present)")
    parser.add_argument("--host", help="address to listen on (GRADIO_SERVER_NAME; default 127.0.0.1)")
    parser.add_argument("--port", type=_port, help="port (GRADIO_SERVER_PORT; default 7860)")
    parser.add_argument("--concurrency", type=_positive(int), default=1,
                        help="attacks and sweeps run at once (default 1; more only on a GPU)")
    parser.add_argument("--queue-size", type=_positive(int), default=None,
                        help="requests that may wait; more are refused as busy (default 64)")
    parser.add_argument("--time-limit", type=_positive(float), default=None,
                        help="seconds any one request may run (default 300)")
    parser.add_argument("--threads", type=_positive(int), default=None,
                        help="torch CPU threads (default: torch's choice, the physical cores)")
    return parser


def parse_args(argv: list[str] | None = None,
               parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The flags, with the port taken from ``GRADIO_SERVER_PORT`` when ``--port`` is absent."""
    parser = parser or _parser()
    args = parser.parse_args(argv)
    if args.port is None and os.environ.get("GRADIO_SERVER_PORT"):
        try:
            args.port = _port(os.environ["GRADIO_SERVER_PORT"])
        except argparse.ArgumentTypeError as e:
            parser.error(f"GRADIO_SERVER_PORT: {e}")
    return args


def settings_from(args: argparse.Namespace):
    """The environment's settings (``kwta_demo.settings``) with the flags given applied."""
    import dataclasses
    from pathlib import Path

    from kwta_demo.settings import get_settings

    flags = {setting: getattr(args, flag) for flag, setting in FLAG_TO_SETTING.items()
             if getattr(args, flag)}
    if "checkpoint_dir" in flags:
        flags["checkpoint_dir"] = Path(flags["checkpoint_dir"])
    return dataclasses.replace(get_settings(), **flags)


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parse_args(argv, parser)
    import torch

    from kwta_demo.settings import resolve_device

    try:  # a bad setting (KWTA_HUB_TIMEOUT, a missing GPU...) fails before Gradio loads
        settings = settings_from(args)
        device = resolve_device(settings.device)
    except (ValueError, RuntimeError) as e:
        parser.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)

    from kwta_demo.app.explorer import Explorer
    from kwta_demo.app.inputs import Limits
    from kwta_demo.app.model_cache import ModelCache
    from kwta_demo.app.ui import LAUNCH_KWARGS, QUEUE_SIZE, create_demo

    limits = Limits() if args.time_limit is None else Limits(time_limit_s=args.time_limit)
    explorer = Explorer(ModelCache(device, settings=settings), data_source=settings.cifar10,
                        limits=limits)
    try:
        demo = create_demo(explorer, concurrency=args.concurrency,
                           queue_size=args.queue_size or QUEUE_SIZE)
    except (ValueError, RuntimeError) as e:
        parser.error(str(e))
    try:
        demo.launch(
            server_name=args.host or os.environ.get("GRADIO_SERVER_NAME") or None,
            server_port=args.port,
            **LAUNCH_KWARGS,
        )
    except OSError as e:  # the port is taken, the address cannot be bound
        parser.error(str(e))


if __name__ == "__main__":
    main()
