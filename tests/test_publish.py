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
    assert up["delete_patterns"] == ["*"]  # stale files of an earlier upload go (in its folder)


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


def test_cards_carry_robust_accuracy_with_its_settings():
    from kwta_demo.cards import DATASET, model_card, robust_rows_for
    from kwta_demo.models import ModelConfig

    result = {"rows": [
        {"weights_sha256": "abc", "attack": "none", "preset": "", "n": 10000, "seed": 0, "robust_acc": 0.8},
        {"weights_sha256": "abc", "attack": "pgd", "preset": "corrected", "eps": 0.031, "n": 320,
         "seed": 0, "robust_acc": 0.01, "robust_ci95": [0.003, 0.027], "params": {"steps": 40}},
        {"weights_sha256": "abc", "attack": "pgd", "preset": "corrected", "eps": 0.031, "n": 1000,
         "seed": 0, "robust_acc": 0.012, "params": {"steps": 40}},
        {"weights_sha256": "other", "attack": "pgd", "preset": "report", "n": 320, "seed": 0,
         "robust_acc": 0.5},
    ]}
    robust = robust_rows_for(result, "abc")
    assert [(r["attack"], r["n"]) for r in robust] == [("pgd", 1000)]  # these weights, most images
    card = model_card(ModelConfig("alexnet", "kwta", 0.1),
                      {"clean_accuracy": 0.8178, "test_images": 10000, "robust": robust},
                      {"init_from": "alexnet-kwta-0.2"})
    header = card.split("---")[1]
    assert f"type: {DATASET}" in header and "library_name" not in header
    assert "robust accuracy, pgd:corrected" in header and "eps: 0.031" in header and "steps: 40" in header
    assert "arxiv:1905.10510" in header and "arxiv:2002.08347" in header
    assert "| `pgd:corrected` | 0.031 | 1000 (seed 0) | 1.20% |" in card
