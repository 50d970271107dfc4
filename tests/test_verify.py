"""Checks of shipped checkpoints (``verify``): manifest, strict load, accuracy, sparsity."""

from __future__ import annotations

import json

import pytest
from test_train import synthetic

from kwta_demo.__main__ import main as cli
from kwta_demo.evaluation.verify import verify_checkpoint
from kwta_demo.models.checkpoints import write_manifest
from kwta_demo.testing import write_image_folder, write_random_checkpoints

TEST = synthetic(20, 1)


@pytest.fixture
def checkpoints(tmp_path):
    root = tmp_path / "ckpt"
    write_random_checkpoints(root, ["alexnet-relu", "alexnet-kwta-0.1"])
    write_manifest(root)
    return root


def test_a_sound_checkpoint_passes_every_check(checkpoints):
    found = verify_checkpoint(checkpoints / "alexnet-kwta-0.1", TEST, device="cpu",
                              sparsity_images=10)
    assert found["ok"], found["problems"]
    assert found["manifest"].endswith("SHA256SUMS") and found["test_images"] == 20
    assert 0 <= found["clean_accuracy"] <= 1
    # every k-WTA layer keeps its gamma share of units
    assert found["sparsity"] and all(abs(v - 0.1) <= 0.01 for v in found["sparsity"].values())


def test_tampered_weights_and_false_claims_are_reported(checkpoints):
    weights = checkpoints / "alexnet-relu" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the last tensor
    weights.write_bytes(bytes(data))
    found = verify_checkpoint(checkpoints / "alexnet-relu", TEST, device="cpu")
    assert not found["ok"] and "sha256" in found["problems"][0].lower()

    folder = checkpoints / "alexnet-kwta-0.1"
    (folder / "metrics.json").write_text(json.dumps({"clean_accuracy": 0.99, "test_images": 20}))
    found = verify_checkpoint(folder, TEST, device="cpu", sparsity_images=10)
    assert not found["ok"] and "metrics.json says 0.9900" in found["problems"][0]


def test_a_misnamed_folder_is_reported(checkpoints):
    (checkpoints / "SHA256SUMS").unlink()
    (checkpoints / "alexnet-relu").rename(checkpoints / "alexnet-kwta-0.2")
    found = verify_checkpoint(checkpoints / "alexnet-kwta-0.2", TEST, device="cpu")
    assert not found["ok"]
    assert found["problems"] == ["folder 'alexnet-kwta-0.2' holds 'alexnet-relu'"]


def test_the_command_records_its_findings_in_metrics_and_card(checkpoints, tmp_path, capsys):
    data = write_image_folder(tmp_path / "data", per_class=2)
    folder = checkpoints / "alexnet-kwta-0.1"
    (folder / "metrics.json").write_text(json.dumps({"recipe": {"epochs": 1}}))
    code = cli(["verify", str(folder), "--data", str(data), "--device", "cpu", "--record",
                "--results", str(tmp_path / "no-results.json")])
    assert code == 0
    assert "| alexnet-kwta-0.1 | ok |" in capsys.readouterr().out
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["verification"]["test_images"] == 20
    assert metrics["verification"]["command"] == "python -m kwta_demo verify alexnet-kwta-0.1"
    card = (folder / "README.md").read_text()
    assert "python -m kwta_demo verify alexnet-kwta-0.1" in card
    # the manifest is rewritten, and still holds the same weights
    assert verify_checkpoint(folder, TEST, device="cpu", sparsity_images=10)["ok"]
