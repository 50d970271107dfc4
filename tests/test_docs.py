"""The published figures agree with the files they come from.

The generated parts of docs/reproduction.md and docs/training.md are rewritten by their
scripts from `results/` and the checkpoints' `metrics.json`; the README quotes the
checkpoints' accuracies, and its summary of the attacks' rows is generated too. A row or
checkpoint that changed without its docs fails here: run `python
scripts/reproduction_report.py` and `python scripts/training_report.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import reproduction_report  # noqa: E402
import training_report  # noqa: E402

from kwta_demo.reporting.tables import reproduction_markdown, status_markdown  # noqa: E402

CHECKPOINTS = ROOT / "checkpoints"
SHIPPED = sorted(p.parent.name for p in CHECKPOINTS.glob("*/metrics.json"))


def _between(text: str, begin: str, end: str) -> str:
    assert begin in text and end in text, "the generated block's markers are missing"
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def test_the_reproduction_tables_are_those_of_the_results_files():
    doc = (ROOT / "docs" / "reproduction.md").read_text()
    block = _between(doc, reproduction_report.BEGIN, reproduction_report.END)
    assert block == reproduction_markdown(ROOT / "results", CHECKPOINTS).strip()


def test_the_readmes_robustness_summary_is_that_of_the_results_files():
    block = _between((ROOT / "README.md").read_text(), reproduction_report.STATUS_BEGIN,
                     reproduction_report.STATUS_END)
    assert block == status_markdown(ROOT / "results").strip()


def test_the_training_tables_have_every_shipped_checkpoints_rows():
    # Only the shipped checkpoints' rows: the findings run lives in runs/, which a clone lacks.
    block = _between((ROOT / "docs" / "training.md").read_text(),
                     training_report.BEGIN, training_report.END)
    rows = [line for line in training_report.tables(training_report.read(CHECKPOINTS)).splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in SHIPPED]
    assert len(rows) == 2 * len(SHIPPED)  # the models table and the time table
    for line in rows:
        assert line in block


@pytest.mark.parametrize("name", SHIPPED)
def test_the_readme_quotes_each_checkpoints_accuracy(name):
    accuracy = json.loads((CHECKPOINTS / name / "metrics.json").read_text())["clean_accuracy"]
    assert f"{100 * accuracy:.2f}%" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("results, begin, end", [
    ("bench-train-cpu.json", "## Speed on a 2-core CPU (measured)", "### The same benchmark"),
    ("bench-train-cpu-xeon.json", "### The same benchmark", "## Commands"),
    ("bench-train-cpu-xeon-kwta.json", "### The same benchmark", "## Commands")])
def test_the_training_speed_tables_quote_their_benchmark_files(results, begin, end):
    # the speed tables are copied by hand from benchmarks/train_speed.py's output: every
    # variant's images per second must stand in its section as the file has it
    section = _between((ROOT / "docs" / "training.md").read_text(), begin, end)
    assert f"results/{results}" in section
    for row in json.loads((ROOT / "results" / results).read_text())["rows"]:
        assert f"{row['images_per_s']:.1f}" in section, row["label"]


def test_the_deepfool_audit_screenshot_image_is_the_first_the_rule_picks(tmp_path):
    """The README says how the screenshot's image was chosen; the script must pick by it."""
    sys.path.insert(0, str(ROOT / "docs" / "screenshots"))
    from take_screenshots import masking_example

    def row(model, robust, attack="deepfool", preset="paper"):
        return {"model": f"checkpoints/{model}", "attack": attack, "preset": preset,
                "n": 4, "robust_per_image": robust}

    rows = [row("resnet18-relu", [False, True, False, False]),
            row("resnet18-kwta-0.2", [True, True, False, True]),
            row("resnet18-kwta-0.1", [False, True, True, True]),
            row("resnet18-kwta-0.1", [True, True, True, True], attack="pgd")]
    results = tmp_path / "reproduction.json"
    results.write_text(json.dumps({"meta": {"robust_test_indices": [7, 3, 9, 5]},
                                   "rows": rows}))
    # image 0: k-WTA 0.1 fooled; 1: ReLU robust; 2: k-WTA 0.2 fooled; 3: the one
    assert masking_example("resnet18", results) == 5
    assert masking_example("alexnet", results) is None  # no AlexNet rows
    rows[1]["robust_per_image"][3] = False
    results.write_text(json.dumps({"meta": {"robust_test_indices": [7, 3, 9, 5]},
                                   "rows": rows}))
    assert masking_example("resnet18", results) is None
    assert masking_example("resnet18", tmp_path / "missing.json") is None


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        *sorted(CHECKPOINTS.glob("*/README.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_local_link_and_image_of_the_docs_exists(doc):
    """A link or image of the README, the docs or a model card that points into the
    repository names a file that is there (a renamed screenshot, a moved doc)."""
    import re

    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor of the same page
        path = target.split("#", 1)[0]
        if path and not (doc.parent / path).exists():
            missing.append(target)
    assert not missing, f"{doc.relative_to(ROOT)} links to missing files: {missing}"
