"""Model cards: what a Hub user reads beside the weights, rendered from config and metrics."""

from __future__ import annotations


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
