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


def test_cards_carry_robust_accuracy_with_its_settings():
    from kwta_demo.models.architectures import ModelConfig
    from kwta_demo.reporting.cards import DATASET, model_card, robust_rows_for

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


def test_cards_carry_the_worst_case_over_every_attack_on_the_same_images():
    from kwta_demo.models.architectures import ModelConfig
    from kwta_demo.reporting.cards import model_card, worst_case_for

    def row(attack, preset, per_image, sha="abc", model="alexnet-kwta-0.1"):
        return {"model": f"checkpoints/{model}", "weights_sha256": sha, "attack": attack,
                "preset": preset, "eps": 0.031, "n": len(per_image), "seed": 0,
                "robust_acc": sum(per_image) / len(per_image), "robust_per_image": per_image}

    # each attack alone leaves 2 of 4 standing, together only image 0
    result = {"rows": [row("pgd", "corrected", [True, True, False, False]),
                       row("deepfool", "paper", [True, False, True, False]),
                       row("bpda", "paper", [False] * 4, sha="other", model="alexnet-relu")]}
    w = worst_case_for(result, "abc")
    assert (w["n"], w["robust_acc"], w["attacks"]) == (4, 0.25, ["PGD (corrected)", "DeepFool"])
    assert worst_case_for(result, "other") is None  # one attack is no ensemble
    card = model_card(ModelConfig("alexnet", "kwta", 0.1),
                      {"clean_accuracy": 0.8, "test_images": 10000, "worst_case": w,
                       "robust": [{"attack": "pgd", "preset": "corrected", "eps": 0.031, "n": 4,
                                   "seed": 0, "robust_acc": 0.5, "ci95": None}]}, {})
    assert ("| **every attack at once**, per image (2: PGD (corrected), DeepFool) | 0.031 | 4 | "
            "**25.00%** [") in card


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


def test_cards_name_the_model_they_were_fine_tuned_from(monkeypatch):
    import yaml

    from kwta_demo.models.architectures import ModelConfig
    from kwta_demo.reporting.cards import model_card

    monkeypatch.setenv("KWTA_HUB_REPO", "me/cifar10-{name}")
    metrics = {"clean_accuracy": 0.8, "test_images": 100}
    card = model_card(ModelConfig("alexnet", "kwta", 0.1), metrics,
                      {"init_from": "/somewhere/checkpoints/alexnet-kwta-0.2"})
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["base_model"] == "me/cifar10-alexnet-kwta-0.2"
    assert front["base_model_relation"] == "finetune"
    scratch = yaml.safe_load(model_card(ModelConfig("alexnet"), metrics, {}).split("---\n")[1])
    assert "base_model" not in scratch


def test_a_relu_card_does_not_call_its_layers_k_wta():
    from kwta_demo.models.architectures import ModelConfig
    from kwta_demo.reporting.cards import model_card

    verification = {"date": "d", "command": "c", "device": "cpu", "manifest": "SHA256SUMS",
                    "clean_accuracy": 0.9, "test_images": 10, "sparsity": {"a": 0.2, "b": 0.5},
                    "sparsity_images": 10}
    metrics = {"clean_accuracy": 0.9, "test_images": 10, "verification": verification}
    relu = model_card(ModelConfig("alexnet"), metrics, {})
    kwta = model_card(ModelConfig("alexnet", "kwta", 0.2), metrics, {})
    assert "every ReLU layer (no k-WTA here) 0.2000 to 0.5000" in relu and "k-WTA layer 0.2" not in relu
    assert "every k-WTA layer 0.2000 to 0.5000" in kwta
