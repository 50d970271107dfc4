"""Write the gallery sample that ships in the package: 10 test images per class.

The app shows it when no CIFAR-10 source is configured (a fresh clone, a hosted Space
without the dataset), and the full test split when one is. The images are those of
``data.balanced_sample(test, 10, seed)``, written losslessly as PNG in the image-folder
layout ``kwta_demo/data/gallery_sample/test/<class>/<test index>.png`` that ``kwta_demo.data.cifar10``
reads, with ``index.json`` (their test-split indices, in folder order) and a README
saying where they came from.

    python scripts/make_gallery_sample.py --data data/cifar10-jpeg.tar.gz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys

from PIL import Image

from kwta_demo.data.cifar10 import balanced_sample, load_cifar10, resolve_source
from kwta_demo.models.architectures import CIFAR10_CLASSES
from kwta_demo.settings import PROJECT_ROOT

OUT = PROJECT_ROOT / "kwta_demo" / "data" / "gallery_sample"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="CIFAR-10 source (see README)")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    kind, path = resolve_source(args.data)
    test = load_cifar10("test", args.data)
    sample, indices = balanced_sample(test, args.per_class, args.seed)
    shutil.rmtree(OUT, ignore_errors=True)
    order = []
    for image, label, index in zip(sample.images, sample.labels, indices):
        folder = OUT / "test" / CIFAR10_CLASSES[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{int(index):05d}.png",
                                                           optimize=True)
        order.append((int(label), f"{int(index):05d}.png", int(index)))
    order.sort()  # the order kwta_demo.data.cifar10 reads the folder in
    (OUT / "index.json").write_text(json.dumps([i for _, _, i in order]) + "\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "n/a (a folder)"
    (OUT / "README.md").write_text(
        f"# The app's gallery sample\n\n{len(order)} CIFAR-10 test images, {args.per_class} per "
        f"class, chosen by `kwta_demo.data.cifar10.balanced_sample(test, {args.per_class}, seed={args.seed})` "
        f"from `{path.name}` ({kind}; SHA-256 {digest}), the JPEG (quality 75) copy of "
        "CIFAR-10 the models were trained and evaluated on, and written losslessly as PNG. "
        "Each file is named by its index in that test split (classes in label order, files "
        "in name order); `index.json` lists the indices in the order the folder is read.\n\n"
        "CIFAR-10: Alex Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*, "
        "2009.\n\nMade by `python scripts/make_gallery_sample.py`.\n")
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(order)} images to {OUT} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
