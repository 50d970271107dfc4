"""The published figures: each one read from its source, quoted verbatim, and queryable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kwta_demo.models.checkpoints import MODEL_NAMES
from kwta_demo.reporting import published as P

REPORT_TEXT = Path(__file__).resolve().parents[2] / "shared" / "report" / "000_2b4982408e2d6947.txt"


def _plain(text: str) -> str:
    return " ".join(re.sub(r"</?b>", "", text).split())


@pytest.mark.skipif(not REPORT_TEXT.is_file(), reason="the report's text is not beside the checkout")
def test_every_quote_from_the_report_is_in_its_text():
    text = _plain(REPORT_TEXT.read_text())
    quoted = [f.source for f in P.figures() if f.source.repo is None]
    quoted += [c.source for c in P.code_facts() if c.source.repo is None]
    assert len(quoted) >= 30
    for source in quoted:
        assert _plain(source.quote) in text, source.quote
        assert source.where.startswith("§3."), source.where


def test_tables_1_and_2_are_the_reports():
    """The report's §3.3 tables, typed here from its text: A_std / VGA / PGD / DeepFool."""
    expected = {
        "resnet18-relu": (92.9, 0.0, 0.0, 0.0), "resnet18-kwta-0.1": (85.7, 7.2, 50.3, 48.8),
        "resnet18-kwta-0.2": (91.5, 6.5, 16.6, 47.2), "alexnet-relu": (87.7, 0.1, 8.8, 0.0),
        "alexnet-kwta-0.1": (88.4, 18.1, 27.8, 3.1), "alexnet-kwta-0.2": (88.4, 0.9, 11.6, 0.0),
    }
    for model, values in expected.items():
        table = 1 if model.startswith("resnet18") else 2
        got = P.find_figures(publication="report", table=table, model=model)
        by = {f.attack: f for f in got}
        assert (by[None].value, by["vga"].value, by["pgd"].value, by["deepfool"].value) == values
        assert by["pgd"].n == by["deepfool"].n == 320 and by["vga"].n == 2880
        assert by[None].quantity == "clean_acc" and by["pgd"].quantity == "robust_acc"
        assert f"Table {table}" in by["pgd"].source.where


def test_table_3_is_the_reports():
    t3 = {f.key: f.value for f in P.find_figures(publication="report", table=3)}
    assert t3 == {"report.table3.epoch_seconds.resnet18-relu": 381.0,
                  "report.table3.test_seconds.resnet18-relu": 10.0,
                  "report.table3.epoch_seconds.resnet18-kwta-0.2": 735.0,
                  "report.table3.test_seconds.resnet18-kwta-0.2": 42.0}


def test_figures_are_well_formed():
    figs = P.figures()
    assert len({f.key for f in figs}) == len(figs)
    for f in figs:
        assert f.model is None or f.model in MODEL_NAMES, f.key
        assert f.source.where and f.source.quote and f.setting, f.key
        if f.source.repo is not None:
            assert f.source.commit and len(f.source.commit) == 40, f.key
            assert f.source.url.startswith(f"https://github.com/{f.source.repo}/blob/")
        if f.unit == "%":
            assert 0 <= f.value <= 100 and f.fraction == pytest.approx(f.value / 100)
    rows = P.figure_rows(publication="robustbench")
    assert {r["value"] for r in rows} == {52.4, 79.28, 18.5, 7.15, 0.16}
    assert all(r["source"].startswith("RobustBench/robustbench@096243de") for r in rows)


def test_the_data_speaks_of_sources_only():
    text = P.DATA.read_text().lower()
    for word in ("issue", "search index", "file id", "session"):
        assert word not in text, word


def test_the_pgd_finding_and_its_arithmetic():
    fact = P.code_fact("pgd-relative-step")
    assert "relative step size of 0.003" in fact.source.quote
    history = P.code_fact("pgd-notebook-history")
    assert "rel_stepsize=0.003" in history.source.quote
    assert "abs_stepsize=0.003" in history.before.quote
    assert history.source.commit.startswith("76f97de") and history.before.commit.startswith("39447a0")
    report = P.pgd_reach("report")
    assert report.eps == 0.031 and report.steps == 40
    assert report.step == pytest.approx(0.003 * 0.031)
    assert report.reach == pytest.approx(0.00372) and report.ratio == pytest.approx(0.12)
    corrected = P.pgd_reach("corrected")
    assert corrected.reach == pytest.approx(0.12) and corrected.ratio > 3.8
    assert P.pgd_reach("paper").ratio == pytest.approx(20 * 0.007 / 0.031)
    with pytest.raises(ValueError, match="no PGD preset"):
        P.pgd_reach("nope")
    with pytest.raises(KeyError, match="known"):
        P.code_fact("nope")
