"""CIFAR-10 loading, augmentation, batching and sampling, on tiny generated data."""

from __future__ import annotations

import os
import pickle
import socket
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from kwta_demo.data import cifar10 as data
from kwta_demo.data.cifar10 import (
    CifarSplit,
    DataNotFoundError,
    augment,
    balanced_sample,
    batches,
    load_cifar10,
    resolve_source,
    seeded_subset,
)
from kwta_demo.models.architectures import CIFAR10_CLASSES

PER_CLASS = 3
SHARED_TAR = Path(os.environ.get("KWTA_CIFAR10", "data/cifar10-jpeg.tar.gz"))


def _expected(split: str) -> CifarSplit:
    """The pixels every source below holds, in canonical class order."""
    rng = np.random.default_rng(0 if split == "train" else 1)
    n = PER_CLASS * len(CIFAR10_CLASSES)
    images = torch.from_numpy(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8))
    labels = torch.arange(len(CIFAR10_CLASSES)).repeat_interleave(PER_CLASS)
    return CifarSplit(images, labels)


def _save_png(image: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


def _write_folder(root: Path) -> None:
    for split in data.SPLITS:
        images, labels = _expected(split)
        for i, (image, label) in enumerate(zip(images, labels)):
            _save_png(image, root / split / CIFAR10_CLASSES[label] / f"{i:04d}.png")


def _write_batches(folder: Path) -> None:
    folder.mkdir(parents=True)
    for split, names in data._BATCH_FILES.items():
        images, labels = _expected(split)
        for name, idx in zip(names, torch.arange(len(labels)).chunk(len(names))):
            entry = {
                "batch_label": name,
                "labels": labels[idx].tolist(),
                "data": images[idx].reshape(len(idx), -1).numpy(),
                "filenames": [f"{i}.png" for i in idx.tolist()],
            }
            (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": list(CIFAR10_CLASSES)}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cifar")
    _write_folder(root / "folder")
    with tarfile.open(root / "prefixed.tar.gz", "w:gz") as tar:
        tar.add(root / "folder", arcname="cifar10-jpeg")
    with tarfile.open(root / "flat.tgz", "w:gz") as tar:  # members in reverse order
        for path in sorted((root / "folder").rglob("*.png"), reverse=True):
            tar.add(path, arcname=path.relative_to(root / "folder").as_posix())
    _write_batches(root / "torchvision-root" / "cifar-10-batches-py")
    return {
        "folder": root / "folder",
        "tar": root / "prefixed.tar.gz",
        "tar-flat": root / "flat.tgz",
        "batches": root / "torchvision-root" / "cifar-10-batches-py",
        "batches-parent": root / "torchvision-root",
    }


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the real data, the user's KWTA_CIFAR10 or another test's cache."""
    monkeypatch.delenv("KWTA_CIFAR10", raising=False)
    monkeypatch.setattr(data, "PROJECT_ROOT", tmp_path / "repo")
    data.clear_cache()


# -- loading ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["folder", "tar", "tar-flat", "batches", "batches-parent"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_every_source_gives_the_same_tensors(sources: dict[str, Path], kind: str, split: str) -> None:
    images, labels = load_cifar10(split, sources[kind])
    expected = _expected(split)
    assert images.dtype == torch.uint8 and images.shape == (30, 3, 32, 32)
    assert labels.dtype == torch.int64
    assert torch.equal(images, expected.images)
    assert torch.equal(labels, expected.labels)


def test_decoded_once_per_source_and_split(sources: dict[str, Path]) -> None:
    first = load_cifar10("test", sources["folder"])
    assert load_cifar10("test", str(sources["folder"]) + "/") is first  # same resolved source
    assert load_cifar10("train", sources["folder"]) is not first
    data.clear_cache()
    assert load_cifar10("test", sources["folder"]) is not first


@pytest.mark.parametrize("packed", [False, True])
def test_wrong_size_names_the_file_and_other_split_is_not_decoded(tmp_path: Path, packed: bool) -> None:
    root = tmp_path / "imgs"
    _save_png(_expected("test").images[0], root / "test" / "cat" / "0000.png")
    (root / "train" / "dog").mkdir(parents=True)
    Image.new("RGB", (31, 32)).save(root / "train" / "dog" / "bad.png")
    source = root
    if packed:
        source = tmp_path / "imgs.tar.gz"
        with tarfile.open(source, "w:gz") as tar:
            tar.add(root, arcname="imgs")
    test = load_cifar10("test", source)  # the broken train image is never decoded
    assert test.labels.tolist() == [CIFAR10_CLASSES.index("cat")]
    with pytest.raises(ValueError, match=r"bad\.png.*31x32"):
        load_cifar10("train", source)


def test_undecodable_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "test" / "cat").mkdir(parents=True)
    (tmp_path / "test" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg.*cannot decode"):
        load_cifar10("test", tmp_path)


def test_other_image_modes_become_rgb(tmp_path: Path) -> None:
    rgb = Image.fromarray(_expected("test").images[0].permute(1, 2, 0).numpy())
    modes = {"airplane": "L", "bird": "RGBA", "truck": "P"}
    for name, mode in modes.items():
        (tmp_path / "test" / name).mkdir(parents=True)
        rgb.convert(mode).save(tmp_path / "test" / name / "0.png")
    images, labels = load_cifar10("test", tmp_path)
    assert images.shape == (3, 3, 32, 32)
    for image, label in zip(images, labels):
        want = np.array(rgb.convert(modes[CIFAR10_CLASSES[label]]).convert("RGB"))
        assert torch.equal(image, torch.from_numpy(want).permute(2, 0, 1))


def test_unknown_class_folder_is_an_error(tmp_path: Path) -> None:
    _save_png(_expected("test").images[0], tmp_path / "test" / "unicorn" / "0.png")
    with pytest.raises(ValueError, match="unicorn"):
        load_cifar10("test", tmp_path)


def test_bad_split() -> None:
    with pytest.raises(ValueError, match="split"):
        load_cifar10("val", "/nowhere")


def test_nothing_found_names_every_place_and_how_to_point(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_cifar10("test")
    message = str(info.value)
    for place in data._search_paths():
        assert str(place) in message
    assert "KWTA_CIFAR10" in message and "--data" in message
    assert isinstance(info.value, FileNotFoundError)


def test_explicit_missing_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="no-such-dir.*does not exist"):
        load_cifar10("test", tmp_path / "no-such-dir")
    with pytest.raises(DataNotFoundError, match="not a CIFAR-10 source"):
        load_cifar10("test", tmp_path)  # exists, but holds nothing we can read


def test_env_var_is_honoured_and_the_argument_wins(
    sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KWTA_CIFAR10", str(sources["tar"]))
    assert resolve_source() == ("tar", sources["tar"].resolve())
    assert torch.equal(load_cifar10("test").images, _expected("test").images)
    assert resolve_source(sources["folder"])[0] == "folder"
    monkeypatch.setenv("KWTA_CIFAR10", str(tmp_path / "missing"))
    with pytest.raises(DataNotFoundError, match="KWTA_CIFAR10"):
        load_cifar10("test")


def test_search_order(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    beside = tmp_path / "shared" / "cifar10" / "cifar10-jpeg.tar.gz"  # outside the repository
    beside.parent.mkdir(parents=True)
    beside.write_bytes(b"")
    with pytest.raises(DataNotFoundError):
        resolve_source()  # only places inside the repository are searched
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "cifar10-jpeg.tar.gz").write_bytes(b"")
    assert resolve_source() == ("tar", repo / "data" / "cifar10-jpeg.tar.gz")
    (repo / "data" / "cifar10-jpeg" / "test").mkdir(parents=True)
    assert resolve_source() == ("folder", repo / "data" / "cifar10-jpeg")
    (repo / "data" / "cifar-10-batches-py").mkdir()
    (repo / "data" / "cifar-10-batches-py" / "test_batch").write_bytes(b"")
    assert resolve_source() == ("batches", repo / "data" / "cifar-10-batches-py")


def test_torchvision_source_fails_fast_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import CIFAR10

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    def no_download(self: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(CIFAR10, "download", no_download)
    start = time.perf_counter()
    with pytest.raises(DataNotFoundError, match=r"cannot be reached.*KWTA_CIFAR10"):
        load_cifar10("test", f"torchvision:{tmp_path}")
    assert time.perf_counter() - start < 5


def test_batch_files_cannot_run_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo pwned",))

    _write_batches(tmp_path / "b")
    (tmp_path / "b" / "test_batch").write_bytes(pickle.dumps({"data": Evil(), "labels": []}))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        load_cifar10("test", tmp_path / "b")


# -- augmentation -------------------------------------------------------------------------

def _candidates(image: torch.Tensor) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every crop/flip augment may produce from one image."""
    padded = F.pad(image, (4, 4, 4, 4))
    out = []
    for dy in range(9):
        for dx in range(9):
            crop = padded[:, dy:dy + 32, dx:dx + 32]
            out += [(dy, dx, False, crop), (dy, dx, True, crop.flip(-1))]
    return out


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_augment_keeps_shape_dtype_device(dtype: torch.dtype) -> None:
    images = _expected("test").images[:8].to(dtype)
    out = augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == dtype and out.device == images.device


def test_augment_is_seeded() -> None:
    images = _expected("test").images
    a = augment(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, augment(images, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, augment(images, torch.Generator().manual_seed(4)))


def test_augment_crops_with_zero_padding_and_flips() -> None:
    # distinct, non-zero pixel values, so a match identifies the crop and flip exactly
    image = (torch.arange(3 * 32 * 32) % 251 + 1).to(torch.uint8).reshape(3, 32, 32)
    out = augment(image.expand(200, -1, -1, -1), torch.Generator().manual_seed(0))
    seen = set()
    candidates = _candidates(image)
    for result in out:
        matches = [(dy, dx, flip) for dy, dx, flip, c in candidates if torch.equal(result, c)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert {flip for _, _, flip in seen} == {False, True}
    assert any((dy, dx) != (4, 4) for dy, dx, _ in seen)  # pixels really shift
    assert {dy for dy, _, _ in seen} >= {0, 8} and {dx for _, dx, _ in seen} >= {0, 8}


# -- batching -----------------------------------------------------------------------------

def _indexed_split(n: int) -> CifarSplit:
    """Labels 0..n-1, so a label names its sample."""
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return CifarSplit(images, torch.arange(n))


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_cover_every_sample_once(shuffle: bool) -> None:
    split = _indexed_split(23)
    seen = []
    for x, y in batches(split, 5, shuffle=shuffle, generator=torch.Generator().manual_seed(0)):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and len(x) <= 5
        assert torch.equal(x, split.images[y].float() / 255)
        seen += y.tolist()
    assert sorted(seen) == list(range(23))
    assert (seen != list(range(23))) == shuffle


def test_batches_shuffle_is_seeded_and_drop_last() -> None:
    split = _indexed_split(23)

    def order(seed: int) -> list[int]:
        gen = torch.Generator().manual_seed(seed)
        return [i for _, y in batches(split, 5, shuffle=True, generator=gen, drop_last=True) for i in y.tolist()]

    assert order(1) == order(1) != order(2)
    assert len(order(1)) == 20


def test_batches_augment_in_range() -> None:
    split = _indexed_split(16)
    gen = torch.Generator().manual_seed(0)
    x, y = next(batches(split, 16, augment=True, generator=gen))
    assert x.min() >= 0 and x.max() <= 1
    assert not torch.equal(x, split.images[y].float() / 255)
    assert (x == 0).any()  # some zero padding shows


def test_batches_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(_indexed_split(4), 0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batches_on_cuda() -> None:
    split = _indexed_split(40)
    gen = torch.Generator(device="cuda").manual_seed(0)
    seen = []
    for x, y in batches(split, 16, shuffle=True, augment=True, device="cuda", generator=gen):
        assert x.device.type == "cuda" and y.device.type == "cuda" and x.dtype == torch.float32
        seen += y.tolist()
    assert sorted(seen) == list(range(40))
    out = augment(split.images.cuda(), gen)
    assert out.device.type == "cuda" and out.dtype == torch.uint8


# -- sampling -----------------------------------------------------------------------------

def test_seeded_subset() -> None:
    split = _indexed_split(50)
    a = seeded_subset(split, 10, seed=0)
    assert len(a.labels) == 10 and len(set(a.labels.tolist())) == 10
    assert torch.equal(a.images, split.images[a.labels])
    assert torch.equal(a.labels, seeded_subset(split, 10, seed=0).labels)
    assert not torch.equal(a.labels, seeded_subset(split, 10, seed=1).labels)
    assert a.labels.tolist() != list(range(10))  # not "the first N"
    with pytest.raises(ValueError, match="only 50"):
        seeded_subset(split, 51, seed=0)


def test_balanced_sample(sources: dict[str, Path]) -> None:
    split = load_cifar10("train", sources["folder"])
    sample, idx = balanced_sample(split, per_class=2, seed=0)
    assert sample.labels.bincount(minlength=10).tolist() == [2] * 10
    assert torch.equal(sample.images, split.images[idx]) and torch.equal(sample.labels, split.labels[idx])
    assert torch.equal(idx, balanced_sample(split, 2, seed=0)[1])
    assert any(not torch.equal(idx, balanced_sample(split, 2, seed=s)[1]) for s in range(1, 4))
    with pytest.raises(ValueError, match="airplane"):
        balanced_sample(split, per_class=PER_CLASS + 1, seed=0)


# -- the real copy ------------------------------------------------------------------------

@pytest.mark.skipif(os.environ.get("KWTA_SLOW_TESTS") != "1", reason="set KWTA_SLOW_TESTS=1 (decodes the real test split, ~4 s)")
@pytest.mark.skipif(not SHARED_TAR.is_file(), reason=f"{SHARED_TAR} is absent")
def test_shared_jpeg_test_split() -> None:
    images, labels = load_cifar10("test", SHARED_TAR)
    assert images.shape == (10_000, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.bincount().tolist() == [1_000] * 10
    assert data._CACHE.keys() == {("tar", str(SHARED_TAR.resolve()), "test")}  # train was not decoded
