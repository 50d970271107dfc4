"""CIFAR-10 as uint8 tensors, from the canonical batches, an image folder or a tar of one.

Sources (``load_cifar10(source=...)``, else ``KWTA_CIFAR10``, else the first that exists of
``<repo>/data/cifar-10-batches-py``, ``<repo>/data/cifar10-jpeg`` and
``<repo>/data/cifar10-jpeg.tar.gz``):

- a ``cifar-10-batches-py`` folder (or a folder holding one): the canonical batch files.
  Their published format is a Python pickle; we read them ourselves with an unpickler that
  admits numpy arrays and nothing else, so a tampered file cannot run code, and without
  md5 checks, so a small or re-packed copy (and the tests' fake) works too;
- an image folder ``[train|test]/<class>/<image>`` with the canonical class names;
- a ``.tar.gz`` / ``.tgz`` / ``.tar`` of such a folder (a leading folder in the member
  paths is fine), read in one streaming pass without unpacking;
- ``"torchvision:<root>"``: torchvision's ``CIFAR10`` in ``<root>``, which checks the md5s
  of the real files and downloads them when missing. This is the only source that touches
  the network, and it fails within seconds, with a clear error, when it cannot.

Labels follow ``CIFAR10_CLASSES``. A decoded split is cached for the life of the process
(keyed by source and split), so the app and the evaluator share one copy: treat the
returned tensors as read-only. Images are uint8 (N, 3, 32, 32); ``batches`` turns them
into floats in [0, 1] on the target device, where ``augment`` also runs.
"""

from __future__ import annotations

import io
import pickle
import socket
import tarfile
import threading
from pathlib import Path, PurePosixPath
from typing import Iterator, NamedTuple
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..models.checkpoints import hash_file
from ..models.architectures import CIFAR10_CLASSES
from ..settings import PROJECT_ROOT, get_settings

__all__ = [
    "CifarSplit",
    "DataNotFoundError",
    "SPLITS",
    "GALLERY_SAMPLE",
    "DATA_NAME",
    "DATA_CAVEAT",
    "TORCHVISION_PREFIX",
    "load_cifar10",
    "resolve_source",
    "clear_cache",
    "augment",
    "batches",
    "shuffled_order",
    "seeded_subset",
    "held_out",
    "balanced_sample",
    "evaluation_sample",
]

SPLITS: tuple[str, ...] = ("train", "test")
DATA_NAME = "CIFAR-10, JPEG q75 copy"
"""How results name the JPEG copy of CIFAR-10 (``cifar10-jpeg.tar.gz``) the shipped figures
were measured on."""
DATA_CAVEAT = (
    "Trained and evaluated on CIFAR-10 re-encoded as JPEG (all 60,000 images at quality 75 "
    "with chroma subsampling, `cifar10-jpeg.tar.gz`), not on the canonical pickled batches. "
    "The test images are therefore not bit-identical to the canonical CIFAR-10 test batch; "
    "expect clean accuracy a point or two below figures published for the canonical data."
)
GALLERY_SAMPLE = Path(__file__).resolve().parent / "gallery_sample"
"""100 test images (10 per class) shipped for a fresh clone; scripts/make_gallery_sample.py."""
TORCHVISION_PREFIX = "torchvision:"
IMAGE_SIZE = 32
PAD = 4
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_BATCH_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_HOW_TO_POINT = (
    "Point at CIFAR-10 with KWTA_CIFAR10=<path> or --data <path>: a cifar-10-batches-py "
    "folder, an image folder with train/<class>/ and test/<class>/, a .tar.gz of such a "
    f"folder, or '{TORCHVISION_PREFIX}<root>' to let torchvision download it into <root>."
)


class CifarSplit(NamedTuple):
    images: Tensor  # uint8 (N, 3, 32, 32)
    labels: Tensor  # int64 (N,)


class DataNotFoundError(FileNotFoundError):
    """No CIFAR-10 where we looked; the message names the places and how to point at data."""


# -- source resolution --------------------------------------------------------------------

def _search_paths() -> list[Path]:
    return [
        PROJECT_ROOT / "data" / "cifar-10-batches-py",
        PROJECT_ROOT / "data" / "cifar10-jpeg",
        PROJECT_ROOT / "data" / "cifar10-jpeg.tar.gz",
    ]


def _classify(path: Path) -> tuple[str, Path] | None:
    """(kind, path) for a usable source at ``path``, else None."""
    if path.is_file() and path.name.endswith(_TAR_SUFFIXES):
        return "tar", path
    if path.is_dir():
        if any((path / name).is_file() for name in ("data_batch_1", "test_batch")):
            return "batches", path
        if (path / "cifar-10-batches-py").is_dir():
            return "batches", path / "cifar-10-batches-py"
        if any((path / split).is_dir() for split in SPLITS):
            return "folder", path
    return None


def resolve_source(source: str | Path | None = None) -> tuple[str, Path]:
    """Find the data: ``(kind, path)`` with kind one of batches, folder, tar, torchvision."""
    origin = "source argument"
    if source is None and (env := get_settings().cifar10):
        source, origin = env, "KWTA_CIFAR10"
    if source is None:
        places = _search_paths()
        for place in places:
            found = _classify(place)
            if found is not None:
                return found
        listed = "\n".join(f"  {p}" for p in places)
        raise DataNotFoundError(f"CIFAR-10 not found. Looked at:\n{listed}\n{_HOW_TO_POINT}")
    text = str(source)
    if text.startswith(TORCHVISION_PREFIX):
        root = text[len(TORCHVISION_PREFIX):] or "."
        return "torchvision", Path(root).expanduser().resolve()
    path = Path(text).expanduser().resolve()
    found = _classify(path)
    if found is None:
        what = "does not exist" if not path.exists() else "is not a CIFAR-10 source"
        raise DataNotFoundError(f"{path} ({origin}) {what}. {_HOW_TO_POINT}")
    return found


def describe_source(source: str | Path | None = None) -> str:
    """Which data a result was measured on, by content: the source's name and kind, and for
    a single file (a tar) the first 16 hex digits of its SHA-256."""
    kind, path = resolve_source(source)
    if path.is_file():
        return f"{path.name} ({kind}, sha256 {hash_file(path).hexdigest()[:16]})"
    return f"{path.name} ({kind})"


# -- decoding -----------------------------------------------------------------------------

def _decode_image(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            size = img.size
            # grey, palette or RGBA copies of the images still work
            pixels = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except OSError as err:  # not an image, or a truncated one
        raise ValueError(f"{name}: cannot decode the image ({err})") from None
    if size != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{name}: image is {size[0]}x{size[1]}, CIFAR-10 needs 32x32")
    return pixels


def _to_split(images: list[np.ndarray], labels: list[int], where: str) -> CifarSplit:
    if not images:
        raise DataNotFoundError(f"no images in {where}. {_HOW_TO_POINT}")
    hwc = torch.from_numpy(np.stack(images))
    return CifarSplit(hwc.permute(0, 3, 1, 2).contiguous(), torch.tensor(labels, dtype=torch.int64))


def _class_index(name: str, where: str) -> int:
    try:
        return CIFAR10_CLASSES.index(name)
    except ValueError:
        raise ValueError(f"{where}: unknown class folder {name!r}; expected {CIFAR10_CLASSES}") from None


def _read_folder(root: Path, split: str) -> CifarSplit:
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataNotFoundError(f"{split_dir} does not exist. {_HOW_TO_POINT}")
    entries = sorted(
        (_class_index(d.name, str(d)), f.name, f)
        for d in split_dir.iterdir() if d.is_dir()
        for f in d.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES
    )
    return _to_split([_decode_image(f.read_bytes(), str(f)) for _, _, f in entries],
                     [label for label, _, _ in entries], str(split_dir))


def _read_tar(archive: Path, split: str) -> CifarSplit:
    entries = []
    with tarfile.open(archive, "r:*") as tar:
        while (member := tar.next()) is not None:  # one pass, also on a gzip stream
            parts = PurePosixPath(member.name).parts
            if (not member.isfile() or len(parts) < 3 or parts[-3] != split
                    or PurePosixPath(parts[-1]).suffix.lower() not in _IMAGE_SUFFIXES):
                continue
            where = f"{archive}:{member.name}"
            data = tar.extractfile(member).read()
            entries.append((_class_index(parts[-2], where), parts[-1], _decode_image(data, where)))
    entries.sort(key=lambda e: e[:2])  # same order as the unpacked folder
    return _to_split([e[2] for e in entries], [e[0] for e in entries], f"{archive} ({split}/)")


class _BatchUnpickler(pickle.Unpickler):
    """Admits the numpy array the batch files hold, and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch file")
        if name == "_reconstruct":  # numpy's own reconstructor, found without a private import
            return np.empty(0).__reduce__()[0]
        return super().find_class(module, name)


def _read_batches(folder: Path, split: str) -> CifarSplit:
    data, labels = [], []
    for name in _BATCH_FILES[split]:
        path = folder / name
        if not path.is_file():
            raise DataNotFoundError(f"{path} is missing from the CIFAR-10 batches. {_HOW_TO_POINT}")
        with open(path, "rb") as f:
            entry = _BatchUnpickler(f, encoding="latin1").load()
        data.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE))
        labels.extend(entry["labels"])
    return CifarSplit(torch.from_numpy(np.concatenate(data)), torch.tensor(labels, dtype=torch.int64))


def _read_torchvision(root: Path, split: str) -> CifarSplit:
    from torchvision.datasets import CIFAR10

    train = split == "train"
    try:
        ds = CIFAR10(root, train=train, download=False)
    except RuntimeError:  # not there or failed its md5s: download, if the network lets us
        host = urlparse(CIFAR10.url).hostname
        try:
            socket.create_connection((host, 443), timeout=5).close()
            ds = CIFAR10(root, train=train, download=True)
        except OSError as err:  # URLError is an OSError too
            raise DataNotFoundError(
                f"CIFAR-10 is not in {root} and {CIFAR10.url} cannot be reached ({err}). "
                + _HOW_TO_POINT) from err
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return CifarSplit(images, torch.tensor(ds.targets, dtype=torch.int64))


_READERS = {"batches": _read_batches, "folder": _read_folder, "tar": _read_tar,
            "torchvision": _read_torchvision}
_CACHE: dict[tuple[str, str, str], CifarSplit] = {}
_CACHE_LOCK = threading.Lock()


def load_cifar10(split: str = "test", source: str | Path | None = None) -> CifarSplit:
    """One CIFAR-10 split as uint8 images and int64 labels, decoded once per process."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    kind, path = resolve_source(source)
    key = (kind, str(path), split)
    with _CACHE_LOCK:  # held while decoding, so two callers never decode the same split
        if key not in _CACHE:
            _CACHE[key] = _READERS[kind](path, split)
        return _CACHE[key]


def clear_cache() -> None:
    """Forget every decoded split (for tests, or after the files changed)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# -- augmentation and batching ------------------------------------------------------------

def augment(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random 32-crop of the 4-pixel zero-padded images plus a random horizontal flip.

    ``images`` is (B, C, H, W) of any dtype on any device; the output keeps all three.
    Vectorised over the batch (one gather, no per-image loop). The random draws come
    from ``generator``, on the generator's own device.
    """
    b, _, h, w = images.shape
    rng_device = generator.device if generator is not None else images.device
    offsets = torch.randint(0, 2 * PAD + 1, (b, 2), generator=generator, device=rng_device)
    flip = torch.randint(0, 2, (b,), generator=generator, device=rng_device).bool()
    offsets, flip = offsets.to(images.device), flip.to(images.device)
    padded = F.pad(images, (PAD, PAD, PAD, PAD))
    rows = offsets[:, :1] + torch.arange(h, device=images.device)  # (B, H)
    cols = torch.arange(w, device=images.device).expand(b, w)
    cols = offsets[:, 1:] + torch.where(flip[:, None], cols.flip(1), cols)  # a flip reads columns backwards
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


_augment = augment  # `batches` shadows the name with its flag


def shuffled_order(n: int, generator: torch.Generator | None = None) -> Tensor:
    """A random permutation of ``n`` image indices, drawn from ``generator``."""
    rng_device = generator.device if generator is not None else "cpu"
    return torch.randperm(n, generator=generator, device=rng_device)


def batches(
    split: CifarSplit,
    batch_size: int,
    *,
    shuffle: bool = False,
    augment: bool = False,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    order: Tensor | None = None,
    first_batch: int = 0,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Float images in [0, 1] and labels on ``device``, optionally shuffled and augmented.

    ``order`` (a permutation of the split, e.g. from ``shuffled_order``) replaces the
    shuffle; with ``first_batch`` it lets an interrupted epoch go on where it stopped:
    the augmentation draws continue from ``generator``'s state, one batch at a time.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = torch.device(device)
    n = len(split.labels)
    if order is not None:
        if order.shape != (n,):
            raise ValueError(f"order must hold one index per image ({n}), got shape {tuple(order.shape)}")
    elif shuffle:
        order = shuffled_order(n, generator)
    else:
        order = torch.arange(n)
    order = order.to(split.images.device)
    # pinned host memory lets the copy overlap with work already queued on the GPU
    pin = device.type == "cuda" and split.images.device.type == "cpu"
    stop = n - n % batch_size if drop_last else n
    for start in range(first_batch * batch_size, stop, batch_size):
        idx = order[start:start + batch_size]
        x, y = split.images[idx], split.labels[idx]
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
        if augment:
            x = _augment(x, generator)
        yield x.float().div_(255), y


# -- sampling -----------------------------------------------------------------------------

def _check_n(n: int, available: int, what: str) -> None:
    if not 0 <= n <= available:
        raise ValueError(f"asked for {n} images{what}, but there are only {available}")


def seeded_subset(split: CifarSplit, n: int, seed: int) -> CifarSplit:
    """``n`` images drawn at random (seeded) without replacement, in random order."""
    _check_n(n, len(split.labels), "")
    idx = torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(seed))[:n]
    idx = idx.to(split.labels.device)
    return CifarSplit(split.images[idx], split.labels[idx])


def held_out(split: CifarSplit, n: int, seed: int) -> tuple[CifarSplit, CifarSplit]:
    """``split`` cut in two: the rest, and ``n`` images drawn at random (seeded) and held
    out of it; each part keeps the split's order, so no image is in both."""
    _check_n(n, len(split.labels), " to hold out")
    chosen = torch.zeros(len(split.labels), dtype=torch.bool)
    chosen[torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(seed))[:n]] = True
    chosen = chosen.to(split.labels.device)
    return (CifarSplit(split.images[~chosen], split.labels[~chosen]),
            CifarSplit(split.images[chosen], split.labels[chosen]))


def evaluation_sample(split: CifarSplit, n: int, seed: int) -> tuple[CifarSplit, Tensor]:
    """``n`` seeded test images, class-balanced: classes take turns (airplane, automobile,
    ..., truck, airplane, ...), each class's images in a seeded random order. The first
    ``m`` of a larger sample are the ``m``-image sample of the same seed, so 320 images
    are the first 320 of 1,000. Returns the images and their indices in ``split``."""
    _check_n(n, len(split.labels), "")
    per_class = -(-n // len(CIFAR10_CLASSES))
    counts = torch.bincount(split.labels.cpu(), minlength=len(CIFAR10_CLASSES))
    per_class = min(per_class, int(counts.min()))
    _, idx = balanced_sample(split, per_class, seed)
    order = idx.view(len(CIFAR10_CLASSES), per_class).t().reshape(-1)[:n]  # round robin
    if len(order) < n:
        raise ValueError(f"asked for {n} class-balanced images, but the smallest class has "
                         f"only {int(counts.min())}")
    on = order.to(split.labels.device)
    return CifarSplit(split.images[on], split.labels[on]), order


def balanced_sample(split: CifarSplit, per_class: int, seed: int) -> tuple[CifarSplit, Tensor]:
    """``per_class`` seeded random images of every class, grouped by class, and their indices."""
    gen = torch.Generator().manual_seed(seed)
    labels = split.labels.cpu()
    chosen = []
    for label, name in enumerate(CIFAR10_CLASSES):
        pool = torch.nonzero(labels == label).flatten()
        _check_n(per_class, len(pool), f" of class {name!r}")
        chosen.append(pool[torch.randperm(len(pool), generator=gen)[:per_class]])
    idx = torch.cat(chosen)
    on = idx.to(split.labels.device)
    return CifarSplit(split.images[on], split.labels[on]), idx
