"""Checkpoints: save -> load round trips, strictness, damage, manifest, Hub fallback."""

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hub_constants
from safetensors.torch import save_file

from kwta_demo import (
    CheckpointError,
    CheckpointNotFoundError,
    build_model,
    load_model,
    save_checkpoint,
)
from kwta_demo.models import checkpoints
from kwta_demo.models.checkpoints import (
    find_checkpoint,
    manifest_text,
    verify_manifest,
    write_manifest,
)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real checkpoint folder, a closed local 'Hub' endpoint and an empty Hub cache."""
    monkeypatch.setenv("KWTA_CHECKPOINTS", str(tmp_path / "empty"))
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


def _trained_ish(arch="alexnet", activation="kwta", gamma=0.2, seed=0):
    torch.manual_seed(seed)
    model = build_model(arch, activation, gamma)
    # non-trivial BN statistics, so buffers matter in the round trip
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, 32, 32))
    return model.eval()


def test_round_trip_identical_outputs(tmp_path):
    model = _trained_ish()
    folder = save_checkpoint(model, tmp_path / "alexnet-kwta-0.2")
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors"}
    assert json.loads((folder / "config.json").read_text())["gamma"] == 0.2
    loaded = load_model(folder, device="cpu")
    assert not loaded.training and loaded.config == model.config
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))


def test_half_precision_is_upcast(tmp_path):
    model = _trained_ish()
    folder = save_checkpoint(model, tmp_path / "m", half=True)
    loaded = load_model(folder, device="cpu")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        if a.is_floating_point():
            assert torch.equal(b, a.half().float()), k


def test_weights_are_one_file_whatever_their_size(tmp_path):
    model = _trained_ish("resnet18", "relu", None)  # 44.7 MB in float32
    folder = save_checkpoint(model, tmp_path / "r")
    assert sorted(p.name for p in folder.glob("*.safetensors*")) == ["model.safetensors"]
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(load_model(folder, device="cpu")(x), model(x))


def test_sharded_folders_still_load(tmp_path):
    from huggingface_hub import save_torch_state_dict

    model = _trained_ish("resnet18", "relu", None)
    folder = save_checkpoint(model, tmp_path / "r")
    (folder / "model.safetensors").unlink()
    save_torch_state_dict(model.state_dict(), folder, max_shard_size="16MB")
    assert len(list(folder.glob("model-*.safetensors"))) >= 3
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(load_model(folder, device="cpu")(x), model(x))


def test_save_replaces_atomically(tmp_path):
    dest = tmp_path / "m"
    save_checkpoint(_trained_ish(seed=0), dest)
    second = _trained_ish(seed=1)
    save_checkpoint(second, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp or old folders left
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(load_model(dest, device="cpu")(x), second(x))


def test_interrupted_save_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    dest = tmp_path / "m"
    first = _trained_ish(seed=0)
    save_checkpoint(first, dest)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_trained_ish(seed=1), dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(load_model(dest, device="cpu")(x), first(x))


def test_mismatched_weights_name_what_does_not_fit(tmp_path):
    folder = save_checkpoint(_trained_ish(), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "arch": "resnet18"}))
    with pytest.raises(CheckpointError, match=r"do not fit.*missing \d+ tensors: backbone\.") as e:
        load_model(folder, device="cpu")
    assert "unexpected" in str(e.value)


def test_shape_mismatch_is_named(tmp_path):
    model = _trained_ish()
    folder = save_checkpoint(model, tmp_path / "m", half=True)  # 9.2 MB: one file
    assert (folder / "model.safetensors").is_file()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["backbone.classifier.6.weight"] = torch.zeros(5, 512)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"backbone\.classifier\.6\.weight: checkpoint \(5, 512\)"):
        load_model(folder, device="cpu")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_file_is_a_clear_error(tmp_path, damage):
    folder = save_checkpoint(_trained_ish(), tmp_path / "m", half=True)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors"):
        load_model(folder, device="cpu")


def test_pickles_are_never_loaded(tmp_path):
    folder = save_checkpoint(_trained_ish(), tmp_path / "m", half=True)
    (folder / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle files are never loaded"):
        load_model(folder, device="cpu")


def test_manifest_detects_a_replaced_file(tmp_path):
    root = tmp_path / "ckpts"
    save_checkpoint(_trained_ish(seed=0), root / "alexnet-kwta-0.2", half=True)
    save_checkpoint(_trained_ish(seed=1), root / "other", half=True)
    write_manifest(root)
    assert verify_manifest(root / "alexnet-kwta-0.2")
    shutil.copy(root / "other" / "model.safetensors", root / "alexnet-kwta-0.2" / "model.safetensors")
    with pytest.raises(CheckpointError, match="alexnet-kwta-0.2/model.safetensors: checksum"):
        load_model(root / "alexnet-kwta-0.2", device="cpu")
    (root / "other" / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not listed"):
        verify_manifest(root / "other")


def test_local_folder_is_searched_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("KWTA_CHECKPOINTS", str(tmp_path))
    save_checkpoint(_trained_ish(), tmp_path / "alexnet-kwta-0.2")
    assert load_model("alexnet-kwta-0.2", device="cpu").config.gamma == 0.2


def test_missing_checkpoint_fails_fast_and_says_where(tmp_path):
    start = time.monotonic()
    with pytest.raises(CheckpointNotFoundError) as e:
        load_model("resnet18-relu")
    assert time.monotonic() - start < 1.0
    message = str(e.value)
    assert str(tmp_path / "empty" / "resnet18-relu") in message
    assert "kwta-demo/cifar10-resnet18-relu@main" in message and "127.0.0.1:9" in message


def test_silent_hub_times_out_quickly(monkeypatch):
    """A Hub that never answers (e.g. DNS hanging) costs the timeout, not ~23 s of retries."""
    monkeypatch.setenv("KWTA_HUB_TIMEOUT", "0.3")
    released = threading.Event()

    def hang(*args, **kwargs):
        released.wait(30)
        raise OSError("released by the test")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    try:
        with pytest.raises(CheckpointNotFoundError, match="no answer within 0.3 s"):
            find_checkpoint("resnet18-relu")
        assert time.monotonic() - start < 1.0
    finally:
        released.set()


def test_bad_names_are_rejected_without_lookup(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="not a checkpoint name"):
        load_model("../../etc/passwd")
    (tmp_path / "plain").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_model(tmp_path / "plain")


def _fake_hub_cache(cache: Path, repo: str, model, revision="main") -> None:
    """The layout huggingface_hub itself writes: blobs aside, a snapshot per commit, refs;
    the model at the repo's root with its SHA256SUMS, as ``publish`` uploads it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    snapshot = save_checkpoint(model, repo_dir / "snapshots" / commit)
    (snapshot / "SHA256SUMS").write_text(manifest_text(snapshot))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / revision).write_text(commit)


def test_hub_cache_is_used_offline(tmp_path, monkeypatch):
    model = _trained_ish()
    _fake_hub_cache(tmp_path / "hub-cache", "kwta-demo/cifar10-alexnet-kwta-0.2", model)
    loaded = load_model("alexnet-kwta-0.2", device="cpu")
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    # HF_HUB_OFFLINE=1 takes the same path without probing the network at all
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket, "create_connection", None)
    assert load_model("alexnet-kwta-0.2", device="cpu").config.name == "alexnet-kwta-0.2"


def test_hub_repo_and_revision_are_settings(tmp_path, monkeypatch):
    _fake_hub_cache(tmp_path / "hub-cache", "someone/else-alexnet-kwta-0.2", _trained_ish(), "v1")
    with pytest.raises(CheckpointNotFoundError):
        find_checkpoint("alexnet-kwta-0.2")
    monkeypatch.setenv("KWTA_HUB_REPO", "someone/else-{name}")
    monkeypatch.setenv("KWTA_HUB_REVISION", "v1")
    assert (find_checkpoint("alexnet-kwta-0.2") / "config.json").is_file()
    monkeypatch.setenv("KWTA_HUB_REVISION", "alexnet-relu=v2,alexnet-kwta-0.2=v1")  # per model
    assert (find_checkpoint("alexnet-kwta-0.2") / "config.json").is_file()
    from kwta_demo.settings import get_settings

    assert get_settings().revision_for("resnet18-relu") == "main"
    for bad_repo in ("someone/else", "no-slash-{name}"):
        monkeypatch.setenv("KWTA_HUB_REPO", bad_repo)
        with pytest.raises(ValueError, match="KWTA_HUB_REPO"):
            get_settings()


def test_cuda_without_gpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    folder = save_checkpoint(_trained_ish(), tmp_path / "m")
    with pytest.raises(RuntimeError, match="no CUDA GPU is available"):
        load_model(folder, device="cuda")


def test_the_probe_goes_where_huggingface_hub_would_go(monkeypatch):
    """Behind a proxy the proxy must answer (a direct probe would call the Hub
    unreachable); NO_PROXY exempts a host; a proxy that answers counts as reachable."""
    from kwta_demo.models.checkpoints import _probe_address, hub_reachable

    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert _probe_address("https://huggingface.co") == ("huggingface.co", 443, "https://huggingface.co")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert _probe_address("https://huggingface.co")[:2] == ("proxy.example", 3128)
    monkeypatch.setenv("NO_PROXY", "huggingface.co")
    assert _probe_address("https://huggingface.co")[:2] == ("huggingface.co", 443)
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("ALL_PROXY", "socks5h://127.0.0.1:1080")
    assert _probe_address("https://huggingface.co")[:2] == ("127.0.0.1", 1080)
    # a real listening "proxy" on loopback: the probe reaches it, though the Hub is far away
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_reachable("https://unreachable.invalid", 1.0) is None
        server.close()
        assert "proxy" in hub_reachable("https://unreachable.invalid", 1.0)
    finally:
        server.close()


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """A Hub-compatible server on 127.0.0.1 holding two checkpoints and their manifest at a
    pinned commit; huggingface_hub pointed at it."""
    from hub_server import Hub, serve

    repo = tmp_path / "repo"
    models = {"alexnet-kwta-0.2": _trained_ish(seed=3), "alexnet-relu": _trained_ish("alexnet", "relu", None)}
    hub = Hub()
    commit = "c0ffee" + "0" * 34
    for name, model in models.items():  # one repo per model, as publish makes them
        folder = save_checkpoint(model, repo / name, half=True)
        (folder / "SHA256SUMS").write_text(manifest_text(folder))
        hub.add_folder(f"org/kwta-{name}", commit, folder)
    server = serve(hub)
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    # what HF_ENDPOINT set before the import would have made (both are read at import)
    monkeypatch.setattr(hub_constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("KWTA_HUB_REPO", "org/kwta-{name}")
    monkeypatch.setenv("KWTA_HUB_REVISION", commit)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    yield hub, commit, models, repo
    server.shutdown()


def test_a_pinned_revision_downloads_then_serves_offline_from_the_cache(local_hub, monkeypatch):
    hub, commit, models, _ = local_hub
    loaded = load_model("alexnet-kwta-0.2", device="cpu")  # not local: through the Hub
    for k, v in models["alexnet-kwta-0.2"].state_dict().items():
        if v.is_floating_point():
            assert torch.equal(loaded.state_dict()[k], v.half().float()), k
    assert ("GET", f"/org/kwta-alexnet-kwta-0.2/resolve/{commit}/model.safetensors") in hub.requests
    assert not any("alexnet-relu" in path for _, path in hub.requests)  # only what was asked
    seen = len(hub.requests)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket, "create_connection", None)  # no network at all
    assert load_model("alexnet-kwta-0.2", device="cpu").config.gamma == 0.2
    assert len(hub.requests) == seen


def test_a_tampered_file_from_the_hub_is_refused(local_hub):
    hub, commit, _, _ = local_hub
    files = hub.repos["org/kwta-alexnet-relu"][commit]
    data = bytearray(files["model.safetensors"])
    data[-1] ^= 0xFF  # one flipped bit in the last tensor; the manifest still lists the original
    files["model.safetensors"] = bytes(data)
    with pytest.raises(CheckpointError, match="checksum|SHA256SUMS"):
        load_model("alexnet-relu", device="cpu")


def test_a_missing_repo_fails_fast_and_names_it(local_hub, monkeypatch):
    monkeypatch.setenv("KWTA_HUB_REPO", "org/nothing-here-{name}")
    start = time.monotonic()
    with pytest.raises(CheckpointNotFoundError) as info:
        find_checkpoint("alexnet-relu")
    assert time.monotonic() - start < 5
    assert "org/nothing-here-alexnet-relu" in str(info.value) and "KWTA_HUB_REPO" in str(info.value)
