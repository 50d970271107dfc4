"""Publishing to the Hub, against a stand-in for the upload API (no network here)."""

import time

import pytest
import torch
from huggingface_hub import constants as hub_constants

from kwta_demo import CheckpointError, build_model, save_checkpoint
from kwta_demo.__main__ import main as cli
from kwta_demo.models.upload import publish

CARD = "---\nmodel-index:\n- name: alexnet-relu\n  results: []\n---\n# alexnet-relu\n"


class RecordingApi:
    """Records what the real HfApi would have been asked to do; ``existing`` are the files
    already in the repo."""

    def __init__(self, existing=()):
        self.calls = []
        self.existing = list(existing)

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def list_repo_files(self, repo_id):
        return self.existing

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append(("create_commit", repo_id, list(operations), kwargs))

        class Info:
            oid = "abc" + "0" * 37
            commit_url = f"https://hub.example/{repo_id}/commit/abc"

        return Info()

    def create_collection(self, title, **kwargs):
        self.calls.append(("create_collection", title, kwargs))

        class Collection:
            slug = "me/kwta-cifar10-0123"
            url = "https://hub.example/collections/me/kwta-cifar10-0123"

        return Collection()

    def add_collection_item(self, slug, **kwargs):
        self.calls.append(("add_collection_item", slug, kwargs))


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(build_model("alexnet"), tmp_path / "alexnet-relu", half=True, card=CARD)


def test_publish_puts_one_model_at_the_root_of_its_own_repo(checkpoint, monkeypatch):
    from kwta_demo.models.checkpoints import _sha256

    monkeypatch.setenv("KWTA_HUB_REPO", "me/cifar10-{name}")
    api = RecordingApi(existing=[".gitattributes", "model-00001-of-00002.safetensors", "README.md"])
    out = publish(checkpoint, api=api)
    assert out.repo_id == "me/cifar10-alexnet-relu" and out.url.endswith("/commit/abc")
    (create, repo, kwargs), (commit, repo2, ops, info) = api.calls
    assert create == "create_repo" and repo == repo2 == "me/cifar10-alexnet-relu" and kwargs["exist_ok"]
    added = {op.path_in_repo: op for op in ops if type(op).__name__ == "CommitOperationAdd"}
    deleted = [op.path_in_repo for op in ops if type(op).__name__ == "CommitOperationDelete"]
    assert set(added) == {"model.safetensors", "config.json", "README.md", "SHA256SUMS"}
    assert deleted == ["model-00001-of-00002.safetensors"]  # an earlier upload's shard goes
    manifest = added["SHA256SUMS"].path_or_fileobj.decode()
    assert manifest == f"{_sha256(checkpoint / 'model.safetensors')}  model.safetensors\n"
    assert out.preload_line == ("- me/cifar10-alexnet-relu model.safetensors,config.json,"
                                f"README.md,SHA256SUMS {out.commit}")


def test_the_published_repos_are_grouped_in_a_collection(checkpoint):
    from kwta_demo.models.upload import add_to_collection

    api = RecordingApi()
    done = [publish(checkpoint, "me/a", api=api)]
    url = add_to_collection(done, "k-WTA CIFAR-10", namespace="me", api=api)
    assert url.endswith("/collections/me/kwta-cifar10-0123")
    (_, title, kwargs), (_, slug, item) = api.calls[-2:]
    assert title == "k-WTA CIFAR-10" and kwargs["namespace"] == "me" and kwargs["exists_ok"]
    assert item == {"item_id": "me/a", "item_type": "model", "exists_ok": True}


def test_a_card_without_model_index_is_refused(checkpoint):
    (checkpoint / "README.md").write_text("# no metadata\n")
    with pytest.raises(CheckpointError, match="model-index"):
        publish(checkpoint, "me/kwta", api=RecordingApi())
    (checkpoint / "README.md").unlink()
    with pytest.raises(CheckpointError, match="no README.md"):
        publish(checkpoint, "me/kwta", api=RecordingApi())


def test_damaged_weights_are_refused_before_upload(checkpoint):
    (checkpoint / "model.safetensors").write_bytes(b"broken")
    api = RecordingApi()
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        publish(checkpoint, "me/kwta", api=api)
    assert api.calls == []


def test_offline_publish_fails_fast_and_clearly(checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    assert cli(["publish", str(checkpoint), "--repo-id", "me/kwta"]) == 2
    assert time.monotonic() - start < 5  # includes importing every command module
    assert "cannot publish: the Hub at http://127.0.0.1:9 is unreachable" in capsys.readouterr().err


def test_the_space_front_matter_names_the_six_repos_and_the_tested_gradio():
    from pathlib import Path

    import gradio
    import yaml

    from kwta_demo.models.checkpoints import MODEL_NAMES
    from kwta_demo.settings import DEFAULT_HUB_REPO

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["models"] == [DEFAULT_HUB_REPO.replace("{name}", n) for n in MODEL_NAMES]
    assert front["sdk"] == "gradio" and front["sdk_version"] == gradio.__version__
    assert front["app_file"] == "app.py" and front["datasets"] == ["uoft-cs/cifar10"]
