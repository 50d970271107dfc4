"""Publish checkpoints to the Hugging Face Hub, one model per repo: `python -m kwta_demo publish`.

Each checkpoint goes to the root of its own model repo (``KWTA_HUB_REPO`` with the model's
name for ``{name}``, e.g. ``kwta-demo/cifar10-resnet18-kwta-0.1``): weights, config, model
card and a ``SHA256SUMS`` of the weights, in one commit that also deletes whatever an
earlier upload left there, so ``load_model(name)`` finds and checks it. ``--collection``
groups the repos in a Hub collection. After the upload the command prints, per model,
the pinned revision for ``KWTA_HUB_REVISION`` and the Space's ``preload_from_hub`` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ..settings import get_settings
from .checkpoints import (
    HUB_FILES,
    MANIFEST,
    CheckpointError,
    find_checkpoint,
    hub_reachable,
    load_model,
    manifest_text,
    verify_manifest,
)

__all__ = ["Published", "check_publishable", "publish", "add_to_collection"]


@dataclass(frozen=True)
class Published:
    """Where one checkpoint went."""

    name: str
    repo_id: str
    commit: str
    url: str

    @property
    def preload_line(self) -> str:
        """The Space README's ``preload_from_hub`` entry, pinned to this commit."""
        return f"- {self.repo_id} model.safetensors,config.json,README.md,{MANIFEST} {self.commit}"


def check_publishable(folder: Path) -> None:
    """Refuse a folder that would publish something broken or undocumented."""
    verify_manifest(folder)
    load_model(folder, device="cpu")  # strict load: weights fit the config
    card = folder / "README.md"
    if not card.is_file():
        raise CheckpointError(f"{folder}: no README.md model card; a published model needs one")
    if "model-index" not in card.read_text():
        raise CheckpointError(f"{card}: the model card has no model-index (measured accuracy)")


def _api(api: Any, token: str | None) -> Any:
    from huggingface_hub import HfApi, constants

    if api is not None:
        return api
    reason = hub_reachable(constants.ENDPOINT, get_settings().hub_timeout)
    if reason is not None:
        raise ConnectionError(f"cannot publish: the Hub at {constants.ENDPOINT} is unreachable ({reason})")
    return HfApi(token=token)


def publish(
    folder: str | Path,
    repo_id: str | None = None,
    *,
    token: str | None = None,
    private: bool = False,
    api: Any = None,
) -> Published:
    """Upload one checkpoint folder to the root of its repo (``repo_id``, by default the
    model's repo from ``KWTA_HUB_REPO``) in one commit.

    ``api`` defaults to ``huggingface_hub.HfApi()``; tests pass a stand-in.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    folder = find_checkpoint(folder)
    check_publishable(folder)
    repo_id = repo_id or get_settings().repo_for(folder.name)
    api = _api(api, token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.name != MANIFEST and any(fnmatch(p.name, pat) for pat in HUB_FILES))
    operations: list[Any] = [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p))
                             for p in files]
    operations.append(CommitOperationAdd(path_in_repo=MANIFEST,
                                         path_or_fileobj=manifest_text(folder).encode()))
    uploaded = {op.path_in_repo for op in operations}
    # an earlier upload's files (old shards, an index) must not outlive it
    operations += [CommitOperationDelete(path_in_repo=f) for f in api.list_repo_files(repo_id)
                   if f not in uploaded and f != ".gitattributes"]
    info = api.create_commit(repo_id, operations, commit_message=f"Upload {folder.name}")
    return Published(folder.name, repo_id, str(info.oid), str(info.commit_url))


def add_to_collection(published: list[Published], title: str, *, namespace: str | None = None,
                      api: Any = None, token: str | None = None) -> str:
    """Group the published repos in the Hub collection ``title`` (created if needed); its URL."""
    api = _api(api, token)
    collection = api.create_collection(
        title, namespace=namespace, exists_ok=True,
        description="CIFAR-10 ResNet18 and AlexNet with ReLU, k-WTA 0.2 and k-WTA 0.1 "
                    "(Xiao, Zhong and Zheng, ICLR 2020; arXiv 1905.10510), from kwta-demo")
    for p in published:
        api.add_collection_item(collection.slug, item_id=p.repo_id, item_type="model",
                                exists_ok=True)
    return str(collection.url)
