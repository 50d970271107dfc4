"""Published figures of the k-WTA reproduction report and paper, each with where it was read.

Only numbers read in a named file at a named commit are here; nothing is recalled from
memory. ``status`` says how a figure is known: ``"read"`` (quoted from the file named in
``source``) or ``"second-hand"`` (quoted by this project, not found in any readable
source). ``MISSING`` lists what was looked for and not found, ``CODE_FACTS`` what the
report's code did (read from its notebook), which matters to compare numbers at all.

Sources, as stored by the search index (read on 2026-11-29):

- the report's repository ``baranusluel/kWTA-activation`` (Baran Usluel and Ilya Golod,
  CS4803/7643 Spring 2020): ``kWTA_Activation.ipynb`` at two commits, called snapshot A
  (``c9296c6``) and snapshot B (``140fda35``); B records longer training and marks its
  ResNet attack figures ``#OLD``, so it looks later, but the index does not date them.
  ``CS7643_Final_Report.pdf`` is stored as binary only: its Tables 1-3 could not be read.
- the paper's repository ``a554b554/kWTA-Activation`` at ``852b6e1``: code and attack
  configurations, no measured numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = [
    "Source", "Figure", "Missing", "CodeFact", "PgdReach",
    "FIGURES", "MISSING", "CODE_FACTS", "NOTEBOOK_PGD", "UNATTRIBUTED_PGD", "REPORT_EPS",
    "figure_rows", "find_figures", "pgd_reach",
]

REPORT_REPO = "baranusluel/kWTA-activation"
NOTEBOOK = "kWTA_Activation.ipynb"
NB_A = "c9296c6cc25358ae65a8719520106dfd12370451"
NB_B = "140fda35fbafbbcc2cff9477689735ef2fa61757"
REPORT_README = "de3a7c1b34e6e76a330ef57c6e0ac90579324e69"
REPORT_PDF = "252c372aef0079d39ef43dbd0b8a40848cdeda37"
PAPER_REPO = "a554b554/kWTA-Activation"
PAPER_COMMIT = "852b6e12345d4a3eb41803a020a08675f684fe0d"

REPORT_EPS = 0.031
"""The L-inf radius of every report attack (``epsilons = [0.031]``, notebook cell 31)."""

NOTEBOOK_PGD = {"steps": 40, "abs_stepsize": 0.003, "random_start": True, "eps": REPORT_EPS}
"""PGD as both readable notebook snapshots ran it (cell 31): foolbox ``LinfPGD`` with an
*absolute* step; foolbox then ignores ``rel_stepsize``. Our ``corrected`` preset."""

UNATTRIBUTED_PGD = {"steps": 40, "rel_stepsize": 0.003, "random_start": True, "eps": REPORT_EPS}
"""PGD with a *relative* step, as in a script the search index holds without naming its
repository (file id 34068000588). Our ``report`` preset."""


@dataclass(frozen=True)
class Source:
    """Where a figure or fact was read: repository, file, commit, place in it, and the text
    read there (verbatim; line breaks collapsed, '...' where lines are left out)."""

    repo: str
    path: str
    commit: str | None
    where: str
    quote: str

    def cite(self) -> str:
        """``repo@commit:path, where`` (the commit shortened to 8 hex digits)."""
        at = f"@{self.commit[:8]}" if self.commit else ""
        return f"{self.repo}{at}:{self.path}, {self.where}"

    @property
    def url(self) -> str | None:
        """A GitHub link to the file at its commit, when both are known."""
        if not self.commit or "/" not in self.repo:
            return None
        return f"https://github.com/{self.repo}/blob/{self.commit}/{self.path}"


@dataclass(frozen=True)
class Figure:
    """One published number. ``value`` is in ``unit`` as printed; ``n`` counts what it
    averages over (images, or (image, target) pairs for VGA)."""

    key: str
    publication: str  # "report" or "paper"
    table: int  # 1 clean accuracy, 2 robust accuracy, 3 cost
    model: str | None  # our checkpoint name (kwta_demo.checkpoints.MODEL_NAMES)
    quantity: str
    attack: str | None  # our attack name this figure compares with
    setting: str
    value: float
    unit: str
    n: int | None
    source: Source
    status: str = "read"
    note: str = ""

    @property
    def fraction(self) -> float | None:
        """The value as a fraction in [0, 1] for percentages (our rows' unit), else None."""
        return self.value / 100.0 if self.unit == "%" else None


@dataclass(frozen=True)
class Missing:
    """Something looked for and not found, and where it was looked for."""

    what: str
    looked_at: str
    note: str = ""


@dataclass(frozen=True)
class CodeFact:
    """What the published code did, read from it, and why it matters for a comparison."""

    key: str
    finding: str
    consequence: str
    source: Source


# -- the report's notebook ------------------------------------------------------------

_MODELS = {  # the notebook's names -> ours
    ("alexnet", "relu"): "alexnet-relu", ("alexnet", "kwta_0_2"): "alexnet-kwta-0.2",
    ("alexnet", "kwta_0_1"): "alexnet-kwta-0.1", ("resnet", "relu"): "resnet18-relu",
    ("resnet", "kwta_0_2"): "resnet18-kwta-0.2", ("resnet", "kwta_0_1"): "resnet18-kwta-0.1",
}

_CLEAN = "accuracy on the 10,000 CIFAR-10 test images (test(), cell 24), inputs resized to 224x224"
_PGD = ("foolbox LinfPGD(steps=40, random_start=True, abs_stepsize=0.003), epsilons=[0.031], "
        "bounds (0, 1), 224x224 inputs; robust = 1 - success")
_DEEPFOOL = ("foolbox LinfDeepFoolAttack(steps=20, candidates=10), epsilons=[0.031], bounds (0, 1), "
             "224x224 inputs; robust = 1 - success")
_VGA = ("make_fooling_image (cell 28): ascent on the target logit, step 10*g/||g||_2 with g "
        "never zeroed (it accumulates), at most 20 steps, no eps-ball and no [0, 1] clipping; "
        "each image x its 9 wrong targets")
_FOOLBOX_N = 320  # 20 batches of 16 (testloader shuffle=False: the first 320 test images)


def _cell19(commit: str, text: str) -> Source:
    return Source(REPORT_REPO, NOTEBOOK, commit,
                  "cell 19 (Colab id u9b6SPMrq2g8), comment in the code", text)


def _nb(commit: str, arch: str, kind: str, quantity: str, attack: str | None, setting: str,
        value: float, n: int | None, quote: str, note: str = "", table: int = 2,
        unit: str = "%") -> Figure:
    snap = "A" if commit == NB_A else "B"
    model = _MODELS[(arch, kind)]
    key = f"report.nb{snap}.{quantity}.{attack or 'clean'}.{model}"
    return Figure(key, "report", table, model, quantity, attack, setting, value, unit, n,
                  _cell19(commit, quote), "read", note)


def _clean(commit: str, arch: str, kind: str, value: float, quote: str) -> Figure:
    return _nb(commit, arch, kind, "clean_acc", None, _CLEAN, value, 10_000, quote, table=1)


_OLD = ("marked '#OLD' under '# TODO: Update ResNet robustness accuracies!': measured on "
        "earlier ResNet weights (these equal snapshot A's ResNet figures)")
_A_VGA = ("snapshot A's cell 19 also says '# TODO: Vanilla attacks should be run again, was "
          "using trainloader instead of testloader.': these pairs are training images")
_KEPT = "vga_true_label_kept"  # share of (image, target) pairs still classified as the label
_REACHED = "vga_target_reached"  # share of pairs whose target was reached ("Attacks Succeeded")


def _snapshot_b() -> list[Figure]:
    b = NB_B
    out = [
        _clean(b, "alexnet", "relu", 87.7, "## AlexNet ReLU ... # Test accuracy: 87.7%"),
        _clean(b, "alexnet", "kwta_0_2", 88.4, "## AlexNet kWTA 0.2 ... # Test accuracy: 88.4%"),
        _clean(b, "alexnet", "kwta_0_1", 88.4, "## AlexNet kWTA 0.1 ... # Test accuracy: 88.4%"),
        _clean(b, "resnet", "relu", 92.9, "## ResNet ReLU ... # Test accuracy: 92.9%"),
        _clean(b, "resnet", "kwta_0_2", 91.5, "## ResNet kWTA 0.2 ... # Test accuracy: 91.5%"),
        _clean(b, "resnet", "kwta_0_1", 85.7, "## ResNet kWTA 0.1 ... # Test accuracy: 85.7%"),
    ]
    alex = {  # kind: (vga kept count, vga %, pgd %, deepfool %)
        "relu": (2, 0.06944444444444445, 0.0, 0.0),
        "kwta_0_2": (26, 0.9027777777777778, 0.0, 0.0),
        "kwta_0_1": (522, 18.125, 0.9375, 3.125),
    }
    for kind, (kept, vga, pgd, df) in alex.items():
        head = _head("alexnet", kind)
        out += [
            _nb(b, "alexnet", kind, _KEPT, "vga", _VGA, vga, 2880,
                f"{head} ... # Vanilla attack on 20 batches: #   Robustness Accuracy:  "
                f"{kept} / 2880 = {vga!r} %"),
            _nb(b, "alexnet", kind, "robust_acc", "pgd", _PGD, pgd, _FOOLBOX_N,
                f"{head} ... # Foolbox attacks on 20 batches: #   PGD, Robustness Accuracy: "
                f"{pgd:g} %"),
            _nb(b, "alexnet", kind, "robust_acc", "deepfool", _DEEPFOOL, df, _FOOLBOX_N,
                f"{head} ... #   Deepfool, Robustness Accuracy: {df:g} %",
                "cell 32's output repeats it: 'Robustness Accuracy:  3.125 %'"
                if kind == "kwta_0_1" else ""),
        ]
    resnet = {
        "relu": (0, 0.0, 0.0, 0.0),
        "kwta_0_2": (65, 4.513888888888889, 0.0, 43.75),
        "kwta_0_1": (65, 4.513888888888889, 0.3125, 43.75),
    }
    for kind, (kept, vga, pgd, df) in resnet.items():
        head = _head("resnet", kind)
        out += [
            _nb(b, "resnet", kind, _KEPT, "vga", _VGA, vga, 1440,
                f"{head} ... # Vanilla attack on 10 batches: #   Robustness Accuracy:  "
                f"{kept} / 1440 = {vga!r} % #OLD", _OLD),
            _nb(b, "resnet", kind, "robust_acc", "pgd", _PGD, pgd, _FOOLBOX_N,
                f"{head} ... # Foolbox attacks on 20 batches: #   PGD, Robustness Accuracy: "
                f"{pgd:g} % #OLD", _OLD),
            _nb(b, "resnet", kind, "robust_acc", "deepfool", _DEEPFOOL, df, _FOOLBOX_N,
                f"{head} ... #   Deepfool, Robustness Accuracy: {df:g} % #OLD", _OLD),
        ]
    return out


def _head(arch: str, kind: str) -> str:
    """The notebook's heading comment for a model, e.g. '## ResNet kWTA 0.2'."""
    name = "AlexNet" if arch == "alexnet" else "ResNet"
    return f"## {name} " + ("ReLU" if kind == "relu" else "kWTA " + kind[-3:].replace("_", "."))


def _snapshot_a() -> list[Figure]:
    a = NB_A
    clean = {("alexnet", "relu"): 84.5, ("alexnet", "kwta_0_2"): 85.1,
             ("alexnet", "kwta_0_1"): 87.0, ("resnet", "relu"): 90.8,
             ("resnet", "kwta_0_2"): 86.3, ("resnet", "kwta_0_1"): 76.4}
    out = []
    for (arch, kind), acc in clean.items():
        epochs = "2 epochs" if (arch, kind) == ("alexnet", "relu") else "1 epoch"
        fig = _clean(a, arch, kind, acc,
                     f"{_head(arch, kind)} ... # Trained for {epochs}, test accuracy: {acc}%")
        if (arch, kind) == ("resnet", "kwta_0_1"):
            fig = replace(fig, note="cell 25's output: 'Accuracy of the network on the 10000 "
                                    "test images: 76.4 %'")
        out.append(fig)
    # (reached count, reached %, kept count, kept %, pgd %, deepfool %)
    attacks = {
        ("alexnet", "relu"): (1426, 99.02777777777777, 4, 0.2777777777777778, 0.0, 0.0),
        ("alexnet", "kwta_0_2"): (1417, 98.40277777777777, 13, 0.9027777777777778, 0.0, 0.0),
        ("alexnet", "kwta_0_1"): (696, 48.333333333333336, 231, 16.041666666666668, 0.0, 2.8125),
        ("resnet", "relu"): (1440, 100.0, 0, 0.0, 0.0, 0.0),
        ("resnet", "kwta_0_2"): (721, 50.06944444444444, 65, 4.513888888888889, 0.0, 43.75),
        ("resnet", "kwta_0_1"): (380, 26.38888888888889, 65, 4.513888888888889, 0.3125, 43.75),
    }
    for (arch, kind), (hit, hit_pct, kept, kept_pct, pgd, df) in attacks.items():
        head = _head(arch, kind)
        df_note = ("cell 32's output repeats it: 'Robustness Accuracy:  0.0 %'"
                   if (arch, kind) == ("alexnet", "relu") else "")
        out += [
            _nb(a, arch, kind, _REACHED, "vga", _VGA, hit_pct, 1440,
                f"{head} ... # Vanilla attack on 10 minibatches: #   Attacks Succeeded: "
                f"{hit} / 1440 = {hit_pct!r} %", _A_VGA),
            _nb(a, arch, kind, _KEPT, "vga", _VGA, kept_pct, 1440,
                f"{head} ... #   Robustness Accuracy:  {kept} / 1440 = {kept_pct!r} %", _A_VGA),
            _nb(a, arch, kind, "robust_acc", "pgd", _PGD, pgd, _FOOLBOX_N,
                f"{head} ... # Foolbox attacks on 20 minibatches: #   PGD, Robustness "
                f"Accuracy: {pgd:g} %"),
            _nb(a, arch, kind, "robust_acc", "deepfool", _DEEPFOOL, df, _FOOLBOX_N,
                f"{head} ... #   Deepfool, Robustness Accuracy: {df:g} %", df_note),
        ]
    return out


_ISSUE = Source("kwta-demo (this project)", "issue 4; docs/training.md", None,
                "the issue's text, quoting the report's Table 3",
                "381 s vs 735 s per epoch on Colab")
_TABLE3 = [
    Figure("report.table3.epoch_seconds.relu", "report", 3, None, "epoch_seconds", None,
           "one training epoch with ReLU, on Colab (architecture not stated in the quote)",
           381.0, "s", None, _ISSUE, "second-hand",
           "not found in any readable source: the report PDF is stored as binary only"),
    Figure("report.table3.epoch_seconds.kwta", "report", 3, None, "epoch_seconds", None,
           "one training epoch with k-WTA, on Colab (architecture and gamma not stated)",
           735.0, "s", None, _ISSUE, "second-hand",
           "not found in any readable source: the report PDF is stored as binary only"),
]

FIGURES: tuple[Figure, ...] = tuple(_snapshot_b() + _snapshot_a() + _TABLE3)
"""Every published figure found. The paper's own numbers are not among them (see MISSING)."""


MISSING: tuple[Missing, ...] = (
    Missing("the report's Tables 1-3 as published",
            f"{REPORT_REPO}@{REPORT_PDF[:8]}:CS7643_Final_Report.pdf",
            "the search index stores the PDF as binary, with no text: its table numbers, "
            "captions and settings could not be read; the notebook's own records are used "
            "instead"),
    Missing("the report's training time per epoch (Table 3: 381 s vs 735 s) and inference time",
            f"{REPORT_REPO}: README.md@{REPORT_README[:8]}, {NOTEBOOK}@{NB_A[:8]} and "
            f"@{NB_B[:8]}",
            "the README says only 'a significant overhead ... in training and prediction "
            "time'; the notebook only '# TODO: kWTA seems to be slower than ReLU, training "
            "taking longer. Benchmark this.' 381/735 are kept as second-hand figures; no "
            "inference-time figure (e.g. an 'about 4x' ratio) was found anywhere"),
    Missing("the report's notebook versions other than snapshots A and B",
            f"{REPORT_REPO}:{NOTEBOOK}",
            "the index counts 7 stored versions but serves only commits c9296c6 and 140fda35"),
    Missing("report results for C&W, MIM, gradient estimation or BPDA",
            f"{REPORT_REPO}:{NOTEBOOK}@{NB_A[:8]}/@{NB_B[:8]}, cells 1 and 31",
            "cell 1 (the plan) lists Carlini-Wagner and Momentum Iterative Method; attack() "
            "(cell 31) implements only 'vanilla', 'pgd' and 'deepfool'"),
    Missing("the paper's CIFAR-10 ResNet18 figures (clean and robust accuracy)",
            f"{PAPER_REPO}@{PAPER_COMMIT[:8]}: README.md, train-cifar.ipynb, config/eval/*.json",
            "the README has no numbers, train-cifar.ipynb has no cell outputs, the configs "
            "hold attack settings only; the paper's tables were not read (not in these "
            "repositories)"),
)


def _nb_src(commit: str, where: str, quote: str) -> Source:
    return Source(REPORT_REPO, NOTEBOOK, commit, where, quote)


_UNNAMED = "(repository not named by the search index)"

CODE_FACTS: tuple[CodeFact, ...] = (
    CodeFact(
        "pgd-absolute-step",
        "The notebook's PGD uses an absolute step of 0.003 for 40 steps at eps 0.031 (both "
        "snapshots). In foolbox 3.3.4 (gradient_descent_base.py) abs_stepsize, when given, "
        "replaces rel_stepsize * epsilon.",
        "What the notebook ran is our `pgd:corrected` preset (40 x 0.003 = 0.12, 3.9 x eps of "
        "travel), not `pgd:report`; its PGD figures (0% for most models) fit an attack that "
        "can cross the eps-ball.",
        _nb_src(NB_B, "cell 31 (id IFZdHrR_NOVQ), attack()",
                "attack_fn = foolbox.attacks.LinfPGD(steps=40, random_start=True, "
                "abs_stepsize=0.003)")),
    CodeFact(
        "pgd-relative-step-variant",
        "A script with the same comment ('Using parameters specified in paper's appendix "
        "D.1'), ResNet18/AlexNet on CIFAR-10/SVHN, runs LinfPGD with rel_stepsize=0.003. The "
        "search index holds it without naming its repository, so it cannot be attributed "
        "to the report.",
        "This is our `pgd:report` preset: each step is 0.003 x 0.031 = 9.3e-5, 40 steps "
        "reach at most 0.0037 = 0.12 x eps from the random start.",
        Source(_UNNAMED, "(unknown)", None, "search index file id 34068000588",
               "attack_fn = foolbox.attacks.LinfPGD(steps=40, random_start=True, "
               "rel_stepsize=0.003)")),
    CodeFact(
        "activation-swap",
        "The notebook swaps modules correctly: k-WTA 0.2 = deepcopy of the ReLU model with "
        "every nn.ReLU replaced; k-WTA 0.1 = deepcopy of the k-WTA 0.2 model with every kWTA "
        "replaced. torchvision's ResNet18 has 9 nn.ReLU modules (each BasicBlock's one module "
        "serves both of its activations) and AlexNet 7 (5 in features, 2 in classifier): all "
        "become k-WTA.",
        "The notebook's k-WTA models really are k-WTA (including AlexNet's two "
        "fully-connected activations).",
        _nb_src(NB_B, "cell 12 (id 2wa_E4Brw8-n) and cell 19",
                "activation_to_kwta(models['kwta_0_2']['resnet'], nn.ReLU, sr=0.2) ... "
                "activation_to_kwta(models['kwta_0_1']['resnet'], kWTA, sr=0.1)")),
    CodeFact(
        "activation-swap-wrong-modules",
        "Scripts derived from the notebook (repository not named by the index) build "
        "k-WTA 0.1 as a deepcopy of the ReLU model and then replace its kWTA modules, of "
        "which a ReLU model has none: nothing is swapped. Another (file ids 34068000588, "
        "34251563901) calls setActivationkWTA(model, kWTA, sr=kWTAsr) on a fresh torchvision "
        "model: also a no-op.",
        "Models trained by those scripts as 'k-WTA 0.1' (or any 'k-WTA' of the second) are "
        "ReLU networks. Not attributable to the report.",
        Source(_UNNAMED, "(unknown)", None, "search index file ids 34410316959, 34138215924",
               'models["kwta-0.1"]["resnet"] = copy.deepcopy(models["relu"]["resnet"])\n'
               'activation_to_kwta(models["kwta-0.1"]["resnet"], kWTA, sr=0.1)')),
    CodeFact(
        "classifier-1000-outputs",
        "`.fc.out_features = 10` (and `.classifier[-1].out_features = 10`) only changes an "
        "attribute: nn.Linear keeps its (1000, 512) weight and returns 1000 logits (checked "
        "here with torch). Loading the saved weights printed '<All keys matched "
        "successfully>'.",
        "The report's models are 1000-way ImageNet heads fine-tuned on labels 0-9: "
        "predictions and attack success are argmax over 1000 logits.",
        _nb_src(NB_B, "cell 19 (id u9b6SPMrq2g8) and its output",
                "models['relu']['resnet'].fc.out_features = 10")),
    CodeFact(
        "inputs-224",
        "Every image is resized from 32x32 to 224x224 (T.Resize(224)) and 'normalised' with "
        "mean 0, std 1 (a no-op); the attacks perturb the 224x224 image.",
        "eps = 0.031 then bounds 150,528 pixel values instead of 3,072: a different (larger) "
        "threat model than ours on 32x32 inputs.",
        _nb_src(NB_B, "cell 14 (id qpSa_SC_G499)",
                "INPUT_SIZE = 224 ... T.Resize(INPUT_SIZE), T.ToTensor(), "
                "T.Normalize((MEAN,MEAN,MEAN), (VAR,VAR,VAR))")),
    CodeFact(
        "attack-subset",
        "Attacks run on the first num_batches batches of 16 of the test loader (shuffle=False): "
        "20 batches = the first 320 test images for PGD and DeepFool; robust accuracy is the "
        "mean over batches of 1 - success.",
        "The report's robust figures average 320 images (steps of 0.3125 points); ours use "
        "n >= 1000 seeded images.",
        _nb_src(NB_B, "cells 14 and 31",
                "testloader = DataLoader(testset, batch_size=16, shuffle=False, num_workers=2) "
                "... robust_accuracy = 1 - success.double().mean(axis=-1)")),
    CodeFact(
        "vanilla-gradient-ascent",
        "VGA: for every image and each of its 9 wrong targets, make_fooling_image ascends the "
        "target's logit with steps 10 * g / ||g||_2 for at most 20 iterations, stopping once "
        "the target is predicted; the gradient is never zeroed, so each step follows the sum "
        "of all gradients so far; there is no eps-ball and no clipping to [0, 1]. 'Robustness "
        "Accuracy' counts pairs still classified as the true label, 'Attacks Succeeded' pairs "
        "that reached the target.",
        "An L2 step of 10 on 3x224x224 inputs is an RMS change of 0.026 per pixel per step, "
        "unbounded in total: not comparable to an eps-bounded attack. Our `vga` robust_acc is "
        "1 - (targets reached), i.e. 100% - 'Attacks Succeeded'.",
        _nb_src(NB_B, "cells 28 (id AwRItsV94CmE) and 31",
                "learning_rate = 10 # fixed learning rate ... dX = learning_rate * image_grad "
                "/ image_grad.norm() ... make_fooling_image(..., max_iter=20, debug=debug)")),
    CodeFact(
        "report-training",
        "Fine-tuning from ImageNet-pretrained torchvision weights: SGD (lr 0.01, later 0.001), "
        "momentum 0.9, gradient-norm clipping at 0.5, batch 16, a few epochs per model "
        "(snapshot B: AlexNet ReLU 2 + 2 epochs; ResNet k-WTA 0.1 4 + 2 epochs).",
        "Our recipe (docs/training.md) trains 32x32 CIFAR networks from scratch; accuracies "
        "are comparable only loosely.",
        _nb_src(NB_B, "cells 19 and 21 (id flduWRn9lJAu)",
                "optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9) ... "
                "nn.utils.clip_grad_norm_(model.parameters(), 0.5)")),
    CodeFact(
        "paper-pgd-config",
        "The paper's code evaluates PGD at eps 0.031 with step 0.007 for 20 iterations on "
        "5,000 test images (its per-epoch check in train-cifar.ipynb: 20 iterations of 0.003 "
        "on 1,000).",
        "Our `pgd:paper` preset is 20 steps of 0.007 with a random start (travel 0.14 = "
        "4.5 x eps).",
        Source(PAPER_REPO, "config/eval/attacks_cifar_pgd.json", PAPER_COMMIT, "the 'PGD' entry",
               '"name":"PGD", "n_test":5000, "epsilon":0.031, "alpha":0.007, "num_iter":20')),
    CodeFact(
        "paper-other-attacks-config",
        "The paper's CIFAR attack list: DeepFool (steps 20, subsample 10), C&W with "
        "d='linf', 5 binary-search steps of 10 iterations, learning rate 0.01, initial "
        "constant 0.01, and momentum (MIM), each on 1,000 test images at eps 0.031.",
        "Our `cw:paper` preset (L2, 9 binary-search steps x 10,000 iterations, initial "
        "constant 0.001) is not this configuration.",
        Source(PAPER_REPO, "config/eval/attacks_cifar.json", PAPER_COMMIT, "the 'lists' array",
               '"name":"CW", "n_test":1000, "epsilon":0.031, "d":"linf", '
               '"binary_search_steps":5, "max_iterations":10, "confidence":0, '
               '"learning_rate":0.01, "initial_const":0.01')),
    CodeFact(
        "paper-training",
        "The paper's CIFAR ResNet18s train 80 epochs from scratch: SGD lr 0.1 (0.01 from epoch "
        "50), momentum 0.9, batch 256, inputs not normalised (mean 0, var 1); k-WTA via "
        "SparseResNet18(sparsities=[g]*4, sparse_func='vol') for g = 0.1 and 0.2.",
        "k-WTA from scratch, not fine-tuned from ReLU weights as in the report.",
        Source(PAPER_REPO, "train-cifar.ipynb", PAPER_COMMIT, "cells 'kWTA-0.1/0.2 Resnet18'",
               "model = resnet.SparseResNet18(sparsities=[0.1,0.1,0.1,0.1], "
               "sparse_func='vol').to(device) ... for ep in range(80):")),
    CodeFact(
        "report-cost-claim",
        "The report's README states the overhead without numbers.",
        "Our timings (kwta_demo.bench, docs/training.md) stand beside a qualitative claim and "
        "the second-hand 381 s / 735 s.",
        Source(REPORT_REPO, "README.md", REPORT_README, "Abstract",
               "we have discovered a significant overhead with using k-WTA compared to ReLU "
               "in training and prediction time not mentioned in the original work")),
)


# -- access ----------------------------------------------------------------------------

def find_figures(
    *, publication: str | None = None, table: int | None = None, model: str | None = None,
    attack: str | None = None, quantity: str | None = None, snapshot: str | None = None,
) -> list[Figure]:
    """Figures matching every given filter (``snapshot``: "A" or "B" for the notebook)."""
    out = []
    for f in FIGURES:
        if publication is not None and f.publication != publication:
            continue
        if table is not None and f.table != table:
            continue
        if model is not None and f.model != model:
            continue
        if attack is not None and f.attack != attack:
            continue
        if quantity is not None and f.quantity != quantity:
            continue
        if snapshot is not None and not f.key.startswith(f"report.nb{snapshot}."):
            continue
        out.append(f)
    return out


def figure_rows(**filters: Any) -> list[dict[str, Any]]:
    """The figures (``find_figures`` filters) as flat dicts: value, unit, fraction, n, status,
    source (a citation string), url, quote, note, ..."""
    rows = []
    for f in find_figures(**filters):
        row = {k: v for k, v in asdict(f).items() if k != "source"}
        row.update(fraction=f.fraction, source=f.source.cite(), url=f.source.url,
                   quote=f.source.quote)
        rows.append(row)
    return rows


@dataclass(frozen=True)
class PgdReach:
    """How far a PGD preset can move from its starting point: steps x step, vs eps."""

    preset: str
    steps: int
    step: float
    eps: float

    @property
    def reach(self) -> float:
        """The most L-inf distance all steps together can cover (before projection)."""
        return self.steps * self.step

    @property
    def ratio(self) -> float:
        """reach / eps: below 1 the attack cannot cross the eps-ball from its start."""
        return self.reach / self.eps


def pgd_reach(preset: str, eps: float | None = None) -> PgdReach:
    """The reach of our PGD ``preset`` (read from kwta_demo.attacks) at ``eps`` (default:
    the preset's published eps, else the report's 0.031)."""
    from .attacks import ATTACKS
    from .attacks.gradient import step_size_of

    spec = ATTACKS["pgd"]
    if preset not in spec.presets:
        raise ValueError(f"no PGD preset {preset!r}; choose one of {', '.join(spec.presets)}")
    params = spec.presets[preset]
    eps = float(eps if eps is not None else spec.preset_eps.get(preset, REPORT_EPS))
    return PgdReach(preset, int(params["steps"]), step_size_of(dict(params), eps), eps)
