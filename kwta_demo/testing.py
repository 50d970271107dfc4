"""Stand-in checkpoints and images for tests, benchmarks and screenshots.

``write_random_checkpoints`` saves randomly initialised models under the canonical names
(they load like trained ones, but their predictions mean nothing: say so wherever they
are shown). ``write_image_folder`` writes a small CIFAR-10-shaped image folder of
synthetic pictures (no dataset images), which ``kwta_demo.data.cifar10`` reads like the real one.
``serve_app`` runs ``python app.py`` on a free loopback port until the block ends (tests,
the load benchmark and the screenshot script all drive the real server this way).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .models.architectures import CIFAR10_CLASSES, ModelConfig, build_model
from .models.checkpoints import MODEL_NAMES, save_checkpoint

__all__ = [
    "write_random_checkpoints",
    "write_image_folder",
    "free_port",
    "AppProcess",
    "serve_app",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def write_random_checkpoints(
    folder: str | os.PathLike, names: Sequence[str] = MODEL_NAMES, *, seed: int = 0,
    half: bool = True,
) -> list[Path]:
    """Save randomly initialised models as ``folder/<name>``; models of one architecture
    share their weights, as fine-tuned k-WTA models share their ReLU parent's."""
    folder = Path(folder)
    paths = []
    for name in names:
        config = ModelConfig.from_name(name)
        torch.manual_seed(seed + sum(map(ord, config.arch)))
        model = build_model(config)
        card = f"# {name}\n\nRandomly initialised stand-in (seed {seed}): not trained.\n"
        paths.append(save_checkpoint(model, folder / name, half=half, card=card))
    return paths


def _synthetic(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 32x32 picture: a class-coloured blob on a noisy gradient (no real data)."""
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    hue = np.array([(label * 37) % 256, (label * 91 + 60) % 256, (label * 53 + 120) % 256]) / 255.0
    cy, cx = rng.uniform(0.3, 0.7, size=2)
    blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05))[..., None]
    background = np.stack([xx, yy, 1 - xx], axis=-1) * 0.4
    img = background * (1 - blob) + hue * blob + rng.normal(0, 0.04, size=(32, 32, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write_image_folder(
    root: str | os.PathLike, per_class: int = 2, *, splits: Sequence[str] = ("test",), seed: int = 0
) -> Path:
    """Write ``root/<split>/<class>/<i>.png`` with ``per_class`` synthetic images per class."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split in splits:
        for label, cls in enumerate(CIFAR10_CLASSES):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(_synthetic(label, rng)).save(d / f"{i:04d}.png")
    return root


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AppProcess:
    """A running ``python app.py``: its URL, process and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@contextmanager
def serve_app(
    args: Sequence[str], folder: Path, *, env: dict[str, str] | None = None, timeout: float = 120
) -> Iterator[AppProcess]:
    """Run ``python app.py ARGS`` on 127.0.0.1 and a free port; yield once it answers HTTP.

    The log goes to ``folder/server.log``; a server that exits or stays silent for
    ``timeout`` seconds raises RuntimeError with the log's tail. Stopped on exit.
    """
    port = free_port()
    environment = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "KWTA_HUB_TIMEOUT": "0.2",
                   **(env or {})}
    environment.pop("GRADIO_SERVER_PORT", None)
    argv = [sys.executable, str(PROJECT_ROOT / "app.py"), "--host", "127.0.0.1",
            "--port", str(port), *args]
    log = folder / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=environment, stdout=out,
                                   stderr=subprocess.STDOUT)
    app = AppProcess(f"http://127.0.0.1:{port}/", process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with {process.returncode}:\n{app.tail()}")
            try:
                with urllib.request.urlopen(app.url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"app.py did not answer within {timeout:g} s:\n{app.tail()}")
            time.sleep(0.3)
        yield app
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
