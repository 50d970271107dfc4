"""The launched app, driven through gradio_client: endpoint names, lossless PNG images,
the attack -> activations chain in one session, the sweep, and server-side validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kwta_demo.app import viz
from kwta_demo.app.explorer import Explorer
from kwta_demo.app.model_cache import ModelCache
from kwta_demo.testing import free_port, write_image_folder, write_random_checkpoints

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from kwta_demo.app.ui import UNKNOWN  # noqa: E402

# Gradio's own queue code trips pandas deprecation warnings; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                        "ignore:.*deprecated.*")

ENDPOINTS = {"/prepare_image", "/attack", "/activations", "/sweep", "/attack_controls",
             "/model_status", "/reproduction", "/reproduction_chart", "/audit", "/audit_sweep",
             "/transfer", "/transfer_sweep", "/landscape", "/atlas"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from kwta_demo.app.ui import LAUNCH_KWARGS, create_demo

    root = tmp_path_factory.mktemp("app")
    write_random_checkpoints(root / "ckpt", ["alexnet-relu", "alexnet-kwta-0.1"])
    write_image_folder(root / "data", per_class=1)
    mp = pytest.MonkeyPatch()
    mp.setenv("KWTA_CHECKPOINTS", str(root / "ckpt"))
    mp.setenv("KWTA_CIFAR10", str(root / "data"))
    mp.setenv("KWTA_HUB_TIMEOUT", "0.2")
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    explorer = Explorer(ModelCache("cpu"), gallery_per_class=1)
    demo = create_demo(explorer)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **LAUNCH_KWARGS)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False,
                    download_files=str(root / "downloads"))
    yield client, explorer, root
    demo.close()
    mp.undo()


def _attack_args(image_path, **overrides):
    args = dict(image=handle_file(str(image_path)), true_class="cat", arch="alexnet",
                variants=["relu", "kwta-0.1"], attack="pgd", preset="interactive", eps_255=8,
                steps=0, step_size_255=0, target_class="none", seed=5)
    args.update(overrides)
    return args


def test_endpoints_have_stable_names(app):
    client, _, _ = app
    assert set(client.view_api(return_format="dict", print_info=False)["named_endpoints"]) == ENDPOINTS


def test_prepare_image_shows_the_32x32_input(app, tmp_path):
    client, _, _ = app
    path = tmp_path / "wide.png"
    Image.new("RGBA", (300, 200), (0, 128, 255, 255)).save(path)
    image, note = client.predict(handle_file(str(path)), api_name="/prepare_image")
    with Image.open(image) as shown:
        assert shown.format == "PNG" and shown.size == (32, 32)
        assert np.asarray(shown.convert("RGB"))[0, 0].tolist() == [0, 128, 255]
    assert "300x200 RGBA" in note and "center-cropped to 200x200" in note


def test_attack_returns_lossless_png_adversarials(app):
    client, explorer, root = app
    image_path = root / "data" / "test" / "cat" / "0000.png"
    out = client.predict(**_attack_args(image_path), api_name="/attack")
    # 3 slots x (adversarial, perturbation, bars, caption) + trace, summary, numbers, receipt
    assert len(out) == 16
    relu_adv, relu_pert, relu_bars, relu_caption = out[:4]
    assert out[4:8] == (None, None, None, "_not selected_")  # gamma 0.2 not selected
    numbers = out[14]
    assert [m["model"] for m in numbers["models"]] == ["alexnet-relu", "alexnet-kwta-0.1"]
    assert numbers["eps_255"] == 8 and numbers["true_class"] == "cat"
    assert relu_bars["type"] == "plotly" and out[12]["type"] == "plotly"
    assert "L∞" in relu_caption

    # The same attack in-process gives the same tensor; the PNG that crossed HTTP holds
    # exactly its 8-bit rounding (a WebP would not).
    direct = explorer.attack(str(image_path), arch="alexnet", variants=["relu"], attack="pgd",
                             eps_255=8, true_class="cat", seed=5)
    expected = viz.image_array(direct.models[0].adv_8bit)
    with Image.open(relu_adv) as shown:
        assert shown.format == "PNG" and shown.size == (32, 32)
        got = np.asarray(shown.convert("RGB"))
    assert np.array_equal(got, expected)
    clean = np.asarray(Image.open(image_path).convert("RGB")).astype(int)
    assert np.abs(got.astype(int) - clean).max() <= 8  # inside the ball after rounding too
    receipt_json, receipt_tensors = sorted(out[15], key=lambda f: f.endswith(".safetensors"))
    receipt = json.loads(Path(receipt_json).read_text())
    assert receipt["format"].startswith("kwta-demo attack receipt") and receipt["seed"] == 5
    assert [m["model"] for m in receipt["models"]] == ["alexnet-relu", "alexnet-kwta-0.1"]
    from safetensors.torch import load_file

    assert torch.equal(load_file(receipt_tensors)["adversarial_8bit/alexnet-relu"],
                       direct.models[0].adv_8bit)
    with Image.open(relu_pert) as pert:
        assert pert.format == "PNG"


def test_presets_follow_the_attack(app):
    client, _, root = app
    presets, eps, steps, step_size, target, note = client.predict("vga", "paper",
                                                                  api_name="/attack_controls")
    assert [c[0] for c in presets["choices"]] == ["interactive", "paper", "report"]
    assert presets["value"] == "paper"
    assert step_size["visible"] and target["interactive"] and "VGA" in note
    # The session's preset choices now are VGA's; a PGD-only preset must still be accepted.
    out = client.predict(**_attack_args(root / "data" / "test" / "cat" / "0000.png",
                                        variants=["relu"], preset="corrected", eps_255=7.9),
                         api_name="/attack")
    assert out[14]["preset"] == "corrected"


def test_activations_follow_the_sessions_last_attack(app):
    client, _, root = app
    client.predict(**_attack_args(root / "data" / "test" / "dog" / "0000.png", attack="fgsm"),
                   api_name="/attack")
    stats, heatmaps, grid = client.predict("features.6", api_name="/activations")
    assert "features.6 (192x16x16)" in stats
    assert "alexnet-relu" in stats and "alexnet-kwta-0.1" in stats
    assert heatmaps["type"] == "plotly" and grid["type"] == "plotly"


def test_sweep_runs_live(app):
    client, _, _ = app
    plot, table, note = client.predict("alexnet", ["relu"], "fgsm", "interactive", "0, 4", 3, 0,
                                       api_name="/sweep")
    assert plot["type"] == "plotly"
    assert [row[:2] for row in table["data"]] == [["alexnet-relu", 0], ["alexnet-relu", 4]]
    assert "3 images" in note


@pytest.mark.parametrize("overrides, message", [
    (dict(eps_255=100), r"epsilon must lie in \(0, 64\]"),
    (dict(variants=[]), "no model selected"),
    (dict(attack="vga"), "pick a target class"),
    (dict(steps=5000), "steps must be a whole number in 1..200"),
    (dict(true_class="cat", target_class="cat"), "target class is the true class"),
])
def test_bad_requests_get_clear_errors(app, overrides, message):
    client, _, root = app
    with pytest.raises(Exception, match=message):
        client.predict(**_attack_args(root / "data" / "test" / "cat" / "0000.png", **overrides),
                       api_name="/attack")


def test_non_image_upload_is_refused(app, tmp_path):
    client, _, _ = app
    path = tmp_path / "notes.png"
    path.write_bytes(b"this is not a picture")
    with pytest.raises(Exception, match="not an image file PIL can read"):
        client.predict(**_attack_args(path), api_name="/attack")


def test_status_and_reproduction_endpoints(app):
    client, _, _ = app
    status = client.predict(api_name="/model_status")
    assert "`resnet18-relu`: missing locally" in status
    assert "Table 3" in client.predict(api_name="/reproduction")


def test_app_starts_without_data_and_uploads_work(app, tmp_path):
    from kwta_demo.app.ui import LAUNCH_KWARGS, create_demo

    _, _, root = app
    explorer = Explorer(ModelCache("cpu"), data_source=str(tmp_path / "no-cifar-here"))
    demo = create_demo(explorer)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **LAUNCH_KWARGS)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False,
                        download_files=str(tmp_path / "downloads"))
        upload = tmp_path / "photo.jpg"
        Image.new("RGB", (64, 48), (10, 200, 90)).save(upload)
        out = client.predict(**_attack_args(upload, attack="fgsm", variants=["relu"]), api_name="/attack")
        assert out[14]["models"][0]["model"] == "alexnet-relu"
        assert "64x48 RGB" in out[14]["input"]
        message = explorer.gallery().message
        assert "No CIFAR-10 test images" in message and "Uploads still work" in message
    finally:
        demo.close()


def test_the_last_attack_is_audited_in_its_session(app):
    client, _, root = app
    # true class unknown: each model's own clean prediction is attacked, so there is
    # something to audit even on random weights
    client.predict(**_attack_args(root / "data" / "test" / "cat" / "0000.png", attack="fgsm",
                                  true_class=UNKNOWN), api_name="/attack")
    verdict, table = client.predict(api_name="/audit")
    assert "Gradient-masking audit" in verdict and "alexnet-relu" in verdict
    assert table["headers"] == ["model", "check", "flags a problem", "evidence"]
    assert any("Square" in row[3] for row in table["data"])


def test_the_transfer_matrix_of_the_last_attack(app):
    client, _, root = app
    client.predict(**_attack_args(root / "data" / "test" / "dog" / "0000.png", attack="fgsm",
                                  true_class=UNKNOWN), api_name="/attack")
    plot, note = client.predict(api_name="/transfer")
    assert plot["type"] == "plotly" and "BPDA" in note


def test_a_receipt_replayed_through_the_api_gives_the_same_tensors(app, tmp_path):
    """The receipt's own input image and settings, sent back to /attack: bit-identical."""
    from safetensors.torch import load_file

    client, _, root = app
    first = client.predict(**_attack_args(root / "data" / "test" / "bird" / "0000.png", seed=9),
                           api_name="/attack")
    receipt_json, tensors_file = sorted(first[15], key=lambda f: f.endswith(".safetensors"))
    receipt = json.loads(Path(receipt_json).read_text())
    image = tmp_path / "replay.png"
    Image.fromarray(np.asarray(receipt["image"]["rgb_32x32"], dtype=np.uint8)).save(image)
    again = client.predict(
        image=handle_file(str(image)), true_class=receipt["true_class"], arch=receipt["arch"],
        variants=[m["model"].split("-", 1)[1] for m in receipt["models"]],
        attack=receipt["attack"], preset=receipt["preset"], eps_255=receipt["eps"] * 255,
        steps=receipt["overrides"].get("steps", 0), step_size_255=0, target_class="none",
        seed=receipt["seed"], api_name="/attack")
    _, tensors_again = sorted(again[15], key=lambda f: f.endswith(".safetensors"))
    a, b = load_file(tensors_file), load_file(tensors_again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_flags_override_the_environment_without_writing_it(monkeypatch, tmp_path):
    import os

    import app

    monkeypatch.setenv("KWTA_CHECKPOINTS", str(tmp_path / "from-env"))
    monkeypatch.setenv("KWTA_HUB_REPO", "someone/models-{name}")
    monkeypatch.delenv("KWTA_CIFAR10", raising=False)
    before = dict(os.environ)
    args = app.parse_args(["--checkpoints", str(tmp_path / "from-flag"), "--data", "d.tar.gz"])
    settings = app.settings_from(args)
    assert settings.checkpoint_dir == tmp_path / "from-flag" and settings.cifar10 == "d.tar.gz"
    assert settings.hub_repo == "someone/models-{name}"  # no flag given: the environment's
    assert dict(os.environ) == before


def test_the_page_starts_on_an_architecture_whose_models_are_here():
    from kwta_demo.app.model_cache import ModelStatus
    from kwta_demo.app.ui import default_arch

    def statuses(present):
        return [ModelStatus(f"{a}-{v}", "local" if f"{a}-{v}" in present else "remote", "")
                for a in ("resnet18", "alexnet") for v in ("relu", "kwta-0.2", "kwta-0.1")]

    alexnets = {"alexnet-relu", "alexnet-kwta-0.2", "alexnet-kwta-0.1"}
    assert default_arch(statuses(alexnets)) == "alexnet"
    assert default_arch(statuses(alexnets | {"resnet18-relu", "resnet18-kwta-0.2",
                                             "resnet18-kwta-0.1"})) == "resnet18"
    assert default_arch(statuses({"alexnet-relu"})) == "resnet18"  # none complete: the first
