"""``python -m kwta_demo train``: ReLU, then incremental k-WTA fine-tuning; ``at-`` stages
train adversarially (kwta_demo.training)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ..data.cifar10 import (
    load_cifar10,
    seeded_subset,
)
from ..models.architectures import (
    ARCHS,
)
from ..models.checkpoints import (
    write_manifest,
)
from ..models.kwta import IMPLS, set_kwta_impl
from ..provenance import device_name
from ..reporting.cards import write_card
from ..settings import get_settings, resolve_device
from ..training.adversarial import (
    DEFAULT_EPS,
    DEFAULT_METHOD,
    HOLDOUT_IMAGES,
    METHODS,
)
from ..training.config import AMP_MODES, CONFIG_DEFAULTS, SCHEDULES, STAGES, parse_stage
from ..training.schedule import (
    default_batch_size,
    first_init,
    set_threads,
    train_schedule,
)

log = logging.getLogger(__name__)


def parse_eps(text: str) -> float:
    """``"8/255"`` or ``"0.031"`` as a number (argparse type)."""
    num, sep, den = text.partition("/")
    try:
        return float(num) / float(den) if sep else float(num)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not an eps: {text!r} (write 8/255 or 0.031)") from None


def _split_stages(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",")]


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"expected numbers separated by commas, got {text!r}") from None


def _ints(text: str | None) -> list[int] | None:
    values = _floats(text)
    if values is not None and any(v != int(v) for v in values):
        raise ValueError(f"expected whole numbers separated by commas, got {text!r}")
    return None if values is None else [int(v) for v in values]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m kwta_demo train``."""
    parser.add_argument("--arch", default="all", choices=[*ARCHS, "all"],
                        help="architecture to train (default: all)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="comma list; each k-WTA stage starts from the one before; "
                             "kwta-G:scratch trains from scratch; at-relu, at-kwta-G train "
                             "adversarially (default: %(default)s)")
    parser.add_argument("--epochs", default=None,
                        help="epochs, one value or one per stage (default: 40/30 from scratch "
                             "for alexnet/resnet18, 10 per fine-tuning stage)")
    parser.add_argument("--lr", default=None,
                        help="peak learning rate, one or one per stage (default: 0.1 per 128 "
                             "images of batch from scratch, 0.01 per 128 for fine-tuning)")
    parser.add_argument("--schedule", default=None,
                        help=f"{'|'.join(SCHEDULES)}, one or one per stage "
                             "(default: onecycle from scratch, cosine for fine-tuning)")
    parser.add_argument("--warmup", default=None,
                        help="warm-up epochs, one or one per stage (default: a fifth of the "
                             "epochs from scratch, at most 1 for fine-tuning)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per step (default: 512 on CUDA, 128 on the CPU, "
                             "measured in docs/training.md)")
    parser.add_argument("--sizes", default=None,
                        help="progressive resizing (resnet18), one per stage: SIZExEPOCHS+..., "
                             "e.g. 16x10+24x8+32x14; 32 = every epoch at 32 px (default)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: one per core)")
    parser.add_argument("--save-every", type=float, default=5.0,
                        help="minutes between training-state saves inside an epoch "
                             "(0: after every step; default: %(default)s)")
    d = CONFIG_DEFAULTS
    parser.add_argument("--momentum", type=float, default=d["momentum"])
    parser.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    parser.add_argument("--label-smoothing", type=float, default=d["label_smoothing"])
    parser.add_argument("--seed", type=int, default=d["seed"])
    parser.add_argument("--clip", type=float, default=d["clip_grad_norm"],
                        help="gradient L2-norm clipping")
    parser.add_argument("--amp", choices=AMP_MODES, default=d["amp"],
                        help="auto: bf16 autocast on CUDA and on CPUs with native bf16, "
                             "else float32; off: float32")
    parser.add_argument("--adversarial", choices=tuple(METHODS), default=DEFAULT_METHOD,
                        help="the single-step method of the at- stages (default: %(default)s)")
    parser.add_argument("--adv-eps", type=parse_eps, default=DEFAULT_EPS,
                        help="L-inf radius of adversarial training, e.g. 8/255 or 0.031 "
                             "(default: 8/255)")
    parser.add_argument("--holdout", type=int, default=HOLDOUT_IMAGES,
                        help="training images held out of the at- stages for the PGD-10 check "
                             "after each epoch that picks the epoch kept (default: %(default)s)")
    parser.add_argument("--data", default=None, help="CIFAR-10 source (see kwta_demo/data/cifar10.py)")
    parser.add_argument("--out", default=None,
                        help="checkpoint folder root (default: KWTA_CHECKPOINTS or checkpoints/)")
    parser.add_argument("--state-dir", default="runs", help="resumable training states")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--half", action="store_true", help="store the weights as float16")
    parser.add_argument("--manifest", action="store_true",
                        help="write the SHA256SUMS manifest of the checkpoint root at the end")
    parser.add_argument("--limit-train", type=int, default=None,
                        help="train on N seeded random training images (smoke runs)")
    parser.add_argument("--limit-test", type=int, default=None,
                        help="evaluate on N seeded random test images (smoke runs)")
    parser.add_argument("--eval-every", type=int, default=d["eval_every"],
                        help="evaluate every N epochs (0: only the final, saved model)")
    parser.add_argument("--fresh", action="store_true",
                        help="discard saved training states instead of resuming them")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--kwta-impl", choices=IMPLS, default=None,
                        help="how k-WTA finds its threshold (same results; default: auto)")


def main(args: argparse.Namespace) -> int:
    """Run ``python -m kwta_demo train``; returns the exit status."""
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    for stage in stages:
        parse_stage(stage)
    epochs, lr, warmup = _ints(args.epochs), _floats(args.lr), _floats(args.warmup)
    schedule = args.schedule.split(",") if args.schedule else None
    device = resolve_device(args.device)
    set_threads(args.threads)
    if args.save_every < 0:
        raise ValueError(f"--save-every must be >= 0 minutes, got {args.save_every}")
    batch_size = args.batch_size or default_batch_size(device)
    sizes = _split_stages(args.sizes)
    if args.kwta_impl:
        set_kwta_impl(args.kwta_impl)
    out_root = Path(args.out) if args.out else get_settings().checkpoint_dir
    archs = ARCHS if args.arch == "all" else (args.arch,)
    for arch in archs:  # fail before the data is loaded, not after
        first_init(arch, stages, out_root)
    t0 = time.perf_counter()
    train = load_cifar10("train", args.data)
    test = load_cifar10("test", args.data)
    log.info("CIFAR-10 loaded in %.1f s", time.perf_counter() - t0)
    if args.limit_train:
        train = seeded_subset(train, args.limit_train, args.seed)
    if args.limit_test:
        test = seeded_subset(test, args.limit_test, args.seed)
    log.info("training %s, stages %s, on %s: %d training and %d test images",
             ", ".join(archs), ", ".join(stages), device_name(device), len(train.labels),
             len(test.labels))
    rows = []
    for arch in archs:
        results = train_schedule(
            arch, stages, train, test, device, out_root=out_root, state_dir=args.state_dir,
            epochs=epochs, lr=lr, schedule=schedule, warmup_epochs=warmup,
            batch_size=batch_size, image_sizes=sizes, save_every=60 * args.save_every,
            half=args.half, progress=not args.no_progress,
            fresh=args.fresh, data_hint=args.data, limit_train=args.limit_train,
            seed=args.seed, momentum=args.momentum, weight_decay=args.weight_decay,
            label_smoothing=args.label_smoothing, clip_grad_norm=args.clip, amp=args.amp,
            eval_every=args.eval_every, adversarial=args.adversarial, adv_eps=args.adv_eps,
            holdout=args.holdout, on_model=lambda r: write_card(r["checkpoint"]),
        )
        for r in results:
            m = r["metrics"]
            rows.append((r["name"], r["config"]["epochs"], m["clean_accuracy"], m["test_images"],
                         m["recipe"]["wall_seconds"], r["checkpoint"]))
    if args.manifest:
        write_manifest(out_root)
    print("| model | epochs | clean accuracy | test images | train wall s | checkpoint |")
    print("|---|---|---|---|---|---|")
    for name, ep, acc, n, wall, where in rows:
        print(f"| {name} | {ep} | {100 * acc:.2f}% | {n} | {wall:.0f} | {where} |")
    return 0
