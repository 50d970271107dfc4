"""Publish checkpoint folders to a Hugging Face Hub repo: `python -m kwta_demo publish`.

Each checkpoint goes to ``<repo>/<name>/`` with its weights, config and model card,
so that ``load_model(name)`` finds it with ``KWTA_HUB_REPO`` set to that repo.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .checkpoints import (
    CheckpointError,
    hub_reachable,
    find_checkpoint,
    load_model,
    verify_manifest,
)
from .settings import get_settings

__all__ = ["check_publishable", "publish", "add_arguments", "main"]


def check_publishable(folder: Path) -> None:
    """Refuse a folder that would publish something broken or undocumented."""
    verify_manifest(folder)
    load_model(folder, device="cpu")  # strict load: weights fit the config
    card = folder / "README.md"
    if not card.is_file():
        raise CheckpointError(f"{folder}: no README.md model card; a published model needs one")
    if "model-index" not in card.read_text():
        raise CheckpointError(f"{card}: the model card has no model-index (measured accuracy)")


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    api: Any = None,
) -> str:
    """Upload one checkpoint folder to ``repo_id`` under its folder name; return the commit URL.

    ``api`` defaults to ``huggingface_hub.HfApi()``; tests pass a stand-in.
    """
    from huggingface_hub import HfApi, constants

    folder = find_checkpoint(folder)
    check_publishable(folder)
    if api is None:
        reason = hub_reachable(constants.ENDPOINT, get_settings().hub_timeout)
        if reason is not None:
            raise ConnectionError(f"cannot publish: the Hub at {constants.ENDPOINT} is unreachable ({reason})")
        api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        path_in_repo=folder.name,
        repo_type="model",
        commit_message=f"Upload {folder.name}",
        allow_patterns=["*.safetensors", "*.json", "README.md"],
        # everything else under the model's folder goes in the same commit: an earlier
        # upload's files (old shards, an index) must not outlive it
        delete_patterns=["*"],
    )
    return str(getattr(info, "commit_url", info))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", help="checkpoint names or folders to publish")
    parser.add_argument("--repo-id", default=None, help="Hub repo (default: KWTA_HUB_REPO)")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN / login)")


def main(args: argparse.Namespace) -> int:
    repo_id = args.repo_id or get_settings().hub_repo
    for name in args.names:
        url = publish(name, repo_id, token=args.token, private=args.private)
        print(f"{name}: {url}")
    return 0
