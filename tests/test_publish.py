"""Publishing to the Hub, against a stand-in for the upload API (no network here)."""

import time

import pytest
import torch
from huggingface_hub import constants as hub_constants

from kwta_demo import CheckpointError, build_model, save_checkpoint
from kwta_demo.__main__ import main as cli
from kwta_demo.publish import publish

CARD = "---\nmodel-index:\n- name: alexnet-relu\n  results: []\n---\n# alexnet-relu\n"


class RecordingApi:
    """Records what the real HfApi would have been asked to do."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))

        class Info:
            commit_url = f"https://hub.example/{kwargs['repo_id']}/commit/abc"

        return Info()


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(build_model("alexnet"), tmp_path / "alexnet-relu", half=True, card=CARD)


def test_publish_uploads_the_folder_under_its_name(checkpoint):
    api = RecordingApi()
    url = publish(checkpoint, "me/kwta", api=api)
    assert url == "https://hub.example/me/kwta/commit/abc"
    (create, repo, kwargs), (upload, up) = api.calls
    assert create == "create_repo" and repo == "me/kwta" and kwargs["exist_ok"]
    assert up["folder_path"] == str(checkpoint) and up["path_in_repo"] == "alexnet-relu"
    assert "*.safetensors" in up["allow_patterns"]


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
