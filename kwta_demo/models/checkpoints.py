"""Checkpoints: ``<name>/model.safetensors``, ``config.json`` and ``README.md``.

Loading looks in the local checkpoint folder first, then in a Hugging Face Hub repo,
reads safetensors only (never pickle), checks the folder's files against the checksum
manifest ``SHA256SUMS`` when one covers them, and loads strictly. Saving is atomic: a
killed run never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..settings import Settings, get_settings, resolve_device
from .architectures import Classifier, ModelConfig, build_model, family

__all__ = [
    "MODEL_NAMES",
    "CheckpointError",
    "CheckpointNotFoundError",
    "save_checkpoint",
    "load_model",
    "load_state_dict_strict",
    "find_checkpoint",
    "hub_reachable",
    "atomic_write_text",
    "atomic_save_safetensors",
    "hash_file",
    "write_manifest",
    "manifest_text",
    "verify_manifest",
    "weights_sha256",
]

MODEL_NAMES: tuple[str, ...] = family("resnet18") + family("alexnet")
"""The six shipped models: ResNet18 and AlexNet, each with ReLU, k-WTA 0.2 and 0.1."""
MANIFEST = "SHA256SUMS"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used (damaged, mismatched, not safetensors)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint of that name or path could be found; the message says where we looked."""


# ---------------------------------------------------------------- writing


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                            metadata: dict[str, str]) -> None:
    """safetensors ``save_file`` through a temporary file, fsync and rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Put the finished folder ``tmp`` at ``dest``, replacing any old one, never half-way."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def save_checkpoint(
    model: Classifier,
    folder: str | os.PathLike,
    *,
    half: bool = False,
    card: str | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` to ``folder`` (weights, config.json, README.md) atomically.

    ``half`` stores float tensors as float16 (the loader upcasts). The weights go to one
    ``model.safetensors`` (22 MB for a float16 ResNet18; the loader still reads sharded
    folders). ``extra_files`` maps file names to text written alongside.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu()
        for k, v in model.state_dict().items()
    }
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, tmp / WEIGHTS,
                  metadata={"format": "pt"})
        config = {"format_version": 1, **model.config.to_dict()}
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if card is not None:
            (tmp / "README.md").write_text(card)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        _replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# ---------------------------------------------------------------- manifest


def hash_file(path: str | os.PathLike, h: Any = None) -> Any:
    """``h`` (a new SHA-256 by default) updated with the bytes of ``path``, read in chunks."""
    h = hashlib.sha256() if h is None else h
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def _sha256(path: Path) -> str:
    return hash_file(path).hexdigest()


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".safetensors"))


def weights_sha256(folder: str | os.PathLike) -> str:
    """The SHA-256 of a checkpoint's ``model.safetensors`` (of its sorted shard hashes when
    sharded): what names the exact weights a result was measured on."""
    files = _weight_files(Path(folder))
    if len(files) == 1:
        return _sha256(files[0])
    return hashlib.sha256("".join(f"{_sha256(f)} {f.name}\n" for f in files).encode()).hexdigest()


def write_manifest(root: str | os.PathLike) -> Path:
    """Write ``root/SHA256SUMS`` over every weights file of every checkpoint under ``root``."""
    root = Path(root)
    lines = []
    for folder in sorted(p for p in root.iterdir() if (p / "config.json").is_file()):
        for path in _weight_files(folder):
            lines.append(f"{_sha256(path)}  {folder.name}/{path.name}")
    atomic_write_text(root / MANIFEST, "\n".join(lines) + "\n")
    return root / MANIFEST


def manifest_text(folder: str | os.PathLike) -> str:
    """The ``SHA256SUMS`` of one checkpoint folder's weights, names relative to the folder
    (what a model's own Hub repo carries)."""
    return "".join(f"{_sha256(p)}  {p.name}\n" for p in _weight_files(Path(folder)))


def verify_manifest(folder: str | os.PathLike) -> bool:
    """Check ``folder``'s weights against its own ``SHA256SUMS`` (a model's Hub repo) or
    its parent's (a checkpoint root), whichever covers it.

    Returns True when verified, False when no manifest covers the folder; raises
    ``CheckpointError`` naming the file on any mismatch, a missing file, or a weights
    file that the manifest does not list.
    """
    folder = Path(folder)
    own = folder / MANIFEST
    manifest = own if own.is_file() else folder.parent / MANIFEST
    if not manifest.is_file():
        return False
    expected: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        if line.strip():
            digest, _, rel = line.strip().partition("  ")
            if manifest is own:
                expected[rel] = digest
            elif rel.split("/", 1)[0] == folder.name:
                expected[rel.split("/", 1)[1]] = digest
    if not expected:
        return False
    present = {p.name for p in _weight_files(folder)}
    for name in sorted(present - set(expected)):
        raise CheckpointError(f"{folder / name}: weights file not listed in {manifest}")
    for name, digest in sorted(expected.items()):
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: listed in {manifest} but missing")
        if _sha256(path) != digest:
            raise CheckpointError(
                f"{path}: checksum does not match {manifest} (damaged or replaced file)"
            )
    return True


# ---------------------------------------------------------------- loading


def _iter_weight_files(folder: Path) -> Iterator[Path]:
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: not a valid shard index ({e})") from None
        for name in sorted(set(weight_map.values())):
            if "/" in name or "\\" in name or name.startswith("."):
                raise CheckpointError(f"{index}: shard name {name!r} leaves the folder")
            yield folder / name
    elif (folder / WEIGHTS).is_file():
        yield folder / WEIGHTS
    else:
        pickles = [p.name for p in folder.glob("*") if p.suffix in {".bin", ".pt", ".pth", ".ckpt"}]
        hint = f" (found {', '.join(pickles)}: pickle files are never loaded)" if pickles else ""
        raise CheckpointError(f"{folder}: no {WEIGHTS} or {WEIGHTS_INDEX}{hint}")


def load_state_dict_strict(model: nn.Module, folder: str | os.PathLike) -> None:
    """Load the safetensors weights in ``folder`` into ``model``, strictly.

    Missing, unexpected or mis-shaped tensors raise ``CheckpointError`` naming them;
    float16 weights are upcast to the model's dtype.
    """
    folder = Path(folder)
    state: dict[str, torch.Tensor] = {}
    for path in _iter_weight_files(folder):
        if not path.is_file():
            raise CheckpointError(f"{path}: shard listed in the index but missing")
        try:
            state.update(load_file(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors: {', '.join(missing[:8])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensors: {', '.join(unexpected[:8])}")
    if shapes:
        problems.append("shape mismatch: " + "; ".join(shapes[:8]))
    if problems:
        raise CheckpointError(f"{folder}: weights do not fit the model ({' | '.join(problems)})")
    model.load_state_dict(state, strict=True)  # copies into the model's own dtype


def _read_config(folder: Path) -> ModelConfig:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.json")
    try:
        return ModelConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid config ({e})") from None


def _probe_address(endpoint: str) -> tuple[str, int, str]:
    """(host, port, what) a connection to ``endpoint`` opens first: the proxy that
    ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` name for it (as requests and
    huggingface_hub use them), unless ``NO_PROXY`` exempts the host; else the endpoint."""
    from urllib.request import getproxies, proxy_bypass

    url = urlparse(endpoint)
    proxies = getproxies()  # the *_PROXY variables, upper or lower case
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if proxy and not proxy_bypass(url.hostname or ""):
        p = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or "", p.port or (443 if p.scheme == "https" else 80), f"proxy {proxy}"
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80), endpoint


def hub_reachable(endpoint: str, timeout: float) -> str | None:
    """None when a TCP connection towards the Hub opens within ``timeout``, else the reason.

    Behind a proxy (``HTTPS_PROXY`` and friends, ``NO_PROXY`` honoured) the proxy is what
    must answer, as it is for huggingface_hub. Runs in a daemon thread because name
    resolution ignores socket timeouts; this is what makes an offline machine fail in
    about ``timeout`` seconds instead of ~23 s of huggingface_hub retries.
    """
    host, port, what = _probe_address(endpoint)
    result: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as e:
            result.append(f"{what}: {type(e).__name__}: {e}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else f"{what}: no answer within {timeout:g} s"


HUB_FILES = ["*.safetensors", "*.json", "README.md", MANIFEST]
"""What a model's Hub repo holds (and all that is downloaded from it)."""


def _from_hub(name: str, settings: Settings) -> tuple[Path | None, str]:
    """Find ``name`` in its Hub repo (or the local Hub cache); return (folder or None, where)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, revision = settings.repo_for(name), settings.revision_for(name)
    where = f"Hub repo {repo}@{revision} at {constants.ENDPOINT}"
    offline = bool(constants.HF_HUB_OFFLINE)
    reason = "HF_HUB_OFFLINE is set" if offline else hub_reachable(
        constants.ENDPOINT, settings.hub_timeout
    )
    try:
        snapshot = snapshot_download(
            repo,
            revision=revision,
            allow_patterns=HUB_FILES,  # SHA256SUMS checks what arrived
            endpoint=constants.ENDPOINT,  # the one probed above, for every request
            local_files_only=reason is not None,
        )
    except LocalEntryNotFoundError:
        return None, f"{where} (unreachable: {reason}; not in the local Hub cache {constants.HF_HUB_CACHE})"
    except (HfHubHTTPError, OSError, ValueError) as e:
        return None, f"{where} ({type(e).__name__}: {e})"
    folder = Path(snapshot)
    if not (folder / "config.json").is_file():
        note = f"offline, cached snapshot {snapshot}" if reason else "online"
        return None, f"{where} ({note}: no config.json)"
    if not (folder / MANIFEST).is_file():
        raise CheckpointError(f"{where}: no {MANIFEST} beside the weights, so they cannot be "
                              "checked; republish with `python -m kwta_demo publish`")
    return folder, where


def find_checkpoint(name_or_path: str | os.PathLike, settings: Settings | None = None) -> Path:
    """The folder holding a checkpoint: a path, else ``<checkpoint_dir>/<name>``, else the Hub
    (``settings``: the environment's by default)."""
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: a folder, but not a checkpoint (no config.json)")
        return path
    name = str(name_or_path)
    if not _NAME_RE.match(name):
        raise CheckpointNotFoundError(
            f"no checkpoint folder at {path.resolve()} and {name!r} is not a checkpoint name "
            f"(names look like {MODEL_NAMES[1]})"
        )
    settings = settings or get_settings()
    local = settings.checkpoint_dir / name
    if (local / "config.json").is_file():
        return local
    folder, where = _from_hub(name, settings)
    if folder is None:
        raise CheckpointNotFoundError(
            f"checkpoint {name!r} not found. Looked in: the local folder {local} (no config.json); "
            f"{where}. Set KWTA_CHECKPOINTS or KWTA_HUB_REPO, or pass a checkpoint folder path."
        )
    return folder


def load_model(
    name_or_path: str | os.PathLike, device: str | torch.device | None = None,
    settings: Settings | None = None,
) -> Classifier:
    """Load a checkpoint by name (local folder first, then the Hub) or path, in eval mode.

    Float32 on ``device`` (default: CUDA when present, else CPU) whatever the stored dtype.
    """
    folder = find_checkpoint(name_or_path, settings)
    verify_manifest(folder)
    model = build_model(_read_config(folder))
    load_state_dict_strict(model, folder)
    return model.to(resolve_device(device)).eval()


def checkpoint_info(folder: str | os.PathLike) -> dict[str, Any]:
    """The config and, where present, the metrics stored beside a checkpoint."""
    folder = Path(folder)
    info: dict[str, Any] = {"config": _read_config(folder).to_dict()}
    metrics = folder / "metrics.json"
    if metrics.is_file():
        info["metrics"] = json.loads(metrics.read_text())
    return info
