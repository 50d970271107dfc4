"""Start the k-WTA explorer: ``python app.py [--checkpoints DIR] [--data SRC] [--port N] ...``.

Builds the demo from ``kwta_demo.ui`` and launches it; nothing else. Every flag maps to
the environment variable that ``kwta_demo.settings`` reads (the one place settings are
read), so a flag and its variable mean exactly the same thing. ``GRADIO_SERVER_NAME`` and
``GRADIO_SERVER_PORT`` are honoured when ``--host`` and ``--port`` are not given.
"""

from __future__ import annotations

import argparse
import os

FLAG_TO_ENV = {
    "checkpoints": "KWTA_CHECKPOINTS",
    "hub_repo": "KWTA_HUB_REPO",
    "data": "KWTA_CIFAR10",
    "device": "KWTA_DEVICE",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="k-Winners-Take-All adversarial-defence explorer")
    parser.add_argument("--checkpoints", help="checkpoint folder (KWTA_CHECKPOINTS; default: checkpoints/)")
    parser.add_argument("--hub-repo", help="Hugging Face Hub repo with the six models (KWTA_HUB_REPO)")
    parser.add_argument("--data", help="CIFAR-10 source: batches folder, image folder or .tar.gz (KWTA_CIFAR10)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (KWTA_DEVICE; default: GPU when present)")
    parser.add_argument("--host", help="address to listen on (GRADIO_SERVER_NAME; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (GRADIO_SERVER_PORT; default 7860)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="attacks and sweeps run at once (default 1; more only on a GPU)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for flag, env in FLAG_TO_ENV.items():
        value = getattr(args, flag)
        if value:
            os.environ[env] = value
    from kwta_demo.ui import LAUNCH_KWARGS, create_demo  # after the environment is set

    demo = create_demo(concurrency=args.concurrency)
    demo.launch(
        server_name=args.host or os.environ.get("GRADIO_SERVER_NAME") or None,
        server_port=args.port or (int(os.environ["GRADIO_SERVER_PORT"])
                                  if os.environ.get("GRADIO_SERVER_PORT") else None),
        **LAUNCH_KWARGS,
    )


if __name__ == "__main__":
    main()
