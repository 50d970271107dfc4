"""``python -m kwta_demo publish``: upload checkpoint folders to the Hugging Face Hub
(kwta_demo.models.upload)."""

from __future__ import annotations

import argparse

from ..models.upload import (
    _api,
    add_to_collection,
    publish,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", help="checkpoint names or folders to publish")
    parser.add_argument("--repo-id", default=None,
                        help="the repo of a single checkpoint (default: KWTA_HUB_REPO with its name)")
    parser.add_argument("--collection", default=None,
                        help="title of a Hub collection to group the repos in")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN / login)")


def main(args: argparse.Namespace) -> int:
    if args.repo_id and len(args.names) > 1:
        raise ValueError("--repo-id names one repo: give one checkpoint, or use KWTA_HUB_REPO")
    api = _api(None, args.token)
    done = [publish(name, args.repo_id, token=args.token, private=args.private, api=api)
            for name in args.names]
    for p in done:
        print(f"{p.name}: {p.url}")
    if args.collection:
        namespace = done[0].repo_id.split("/")[0]
        print(f"collection: {add_to_collection(done, args.collection, namespace=namespace, api=api)}")
    print("\nKWTA_HUB_REVISION=" + ",".join(f"{p.name}={p.commit}" for p in done))
    print("preload_from_hub:\n" + "\n".join(p.preload_line for p in done))
    return 0
