"""The published figures agree with the files they come from.

The generated parts of docs/reproduction.md and docs/training.md are rewritten by their
scripts from `results/` and the checkpoints' `metrics.json`; the README quotes the
checkpoints' accuracies. A row or checkpoint that changed without its docs fails here:
run `python scripts/reproduction_report.py` and `python scripts/training_report.py`.
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

from kwta_demo.report_tables import reproduction_markdown  # noqa: E402

CHECKPOINTS = ROOT / "checkpoints"
SHIPPED = sorted(p.parent.name for p in CHECKPOINTS.glob("*/metrics.json"))


def _between(text: str, begin: str, end: str) -> str:
    assert begin in text and end in text, "the generated block's markers are missing"
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def test_the_reproduction_tables_are_those_of_the_results_files():
    doc = (ROOT / "docs" / "reproduction.md").read_text()
    block = _between(doc, reproduction_report.BEGIN, reproduction_report.END)
    assert block == reproduction_markdown(ROOT / "results", CHECKPOINTS).strip()


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
