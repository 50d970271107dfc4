"""The Reproduction tab (kwta_demo.report_tables): the report's figures from
kwta_demo.published with their citations, ours only from results files, and the PGD
and VGA wording of the attack presets."""

import json

import pytest

from kwta_demo import published as P
from kwta_demo.attacks import ATTACKS, PRESET_NOTES
from kwta_demo.checkpoints import MODEL_NAMES
from kwta_demo.report_tables import (
    format_published,
    published_cell,
    report_figure,
    reproduction_markdown,
    table3_figures,
)


@pytest.fixture
def empty(tmp_path):
    """The tab's text with no results of ours at all."""
    return reproduction_markdown(tmp_path / "results", tmp_path / "ckpt")


def _section(text, start, end=None):
    part = text.split(start, 1)[1]
    return part.split(end, 1)[0] if end else part


def _row(model, attack, preset, robust, eps=0.031, n=1000):
    return {"model": model, "attack": attack, "preset": preset, "eps": eps, "n": n, "seed": 0,
            "device": "cuda", "clean_acc": 0.9, "robust_acc": robust}


def _write(tmp_path, rows):
    results = tmp_path / "results"
    results.mkdir()
    (results / "reproduction.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    return reproduction_markdown(results, tmp_path / "ckpt")


def test_format_published_keeps_the_printed_digits():
    assert format_published(87.7) == "87.7%"
    assert format_published(0.9375) == "0.9375%"
    assert format_published(0.0) == "0.0%"
    assert format_published(4.513888888888889) == "4.5139%"
    assert published_cell("resnet18-relu", "clean_acc", None, "A") == "90.8%"
    assert published_cell("resnet18-relu", "cw_robust", "cw", "B") == "-"  # none: no number
    assert report_figure("resnet18-relu", "robust_acc", "cw") is None


def test_table1_shows_the_reports_clean_accuracy_with_its_source(empty):
    table1 = _section(empty, "### Table 1", "### Table 2")
    assert "| resnet18-relu | 92.9% | not measured yet | no checkpoint metrics yet |" in table1
    assert "| alexnet-kwta-0.1 | 88.4% |" in table1
    for model in MODEL_NAMES:
        (fig_b,) = P.find_figures(model=model, quantity="clean_acc", snapshot="B")
        (fig_a,) = P.find_figures(model=model, quantity="clean_acc", snapshot="A")
        assert f"| {model} | {format_published(fig_b.value)} | not measured yet |" in table1
        assert fig_b.source.cite() in table1 and fig_b.source.url in table1
        # snapshot A's different figures, in a note with their own citation
        assert f"{model} {format_published(fig_a.value)}" in table1
        assert fig_a.source.cite() in table1


def test_no_number_of_ours_without_results(empty):
    assert "does not exist" in empty
    table1 = _section(empty, "### Table 1", "### Table 2")
    for model in MODEL_NAMES:
        (line,) = [x for x in table1.splitlines() if x.startswith(f"| {model} |")]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2:] == ["not measured yet", "no checkpoint metrics yet"]
    ours2 = _section(empty, "### Table 2", "The report's robust accuracies")
    assert "not measured yet" in ours2 and "%" not in ours2
    table3 = _section(empty, "### Table 3", "### Notes")
    assert "Our timings are not measured yet" in table3 and "| bench" not in table3


def test_table2_puts_the_reports_figures_beside_the_matching_runs(tmp_path):
    text = _write(tmp_path, [
        _row("alexnet-kwta-0.1", "pgd", "corrected", 0.1234),
        _row("alexnet-kwta-0.1", "deepfool", "paper", 0.2),
        _row("alexnet-kwta-0.1", "vga", "paper", 0.3),
        _row("alexnet-kwta-0.1", "pgd", "report", 0.4),
        _row("alexnet-kwta-0.1", "cw", "paper", 0.05),
        _row("alexnet-kwta-0.1", "pgd", "corrected", 0.5, eps=4 / 255),
        _row("resnet18-kwta-0.2", "deepfool", "paper", 0.6),
    ])
    lines = {tuple(c.strip() for c in x.strip("|").split("|")[:4]): x
             for x in _section(text, "### Table 2", "The report's robust").splitlines()
             if x.startswith("| ")}

    def report_cell(model, attack, preset, eps="0.031 (7.9/255)"):
        return lines[(model, attack, preset, eps)].strip("|").split("|")[-1].strip()

    m = "alexnet-kwta-0.1"
    assert "12.34%" in lines[(m, "pgd", "corrected", "0.031 (7.9/255)")]  # ours, unchanged
    assert report_cell(m, "pgd", "corrected") == "0.9375% (n=320 first test images, 224x224)"
    assert report_cell(m, "deepfool", "paper") == "3.125% (n=320 first test images, 224x224)"
    assert report_cell(m, "vga", "paper") == \
        "18.125% true label kept (n=2880 pairs, no eps-ball, 224x224)"
    assert report_cell(m, "pgd", "report").startswith("not run by the report")
    assert report_cell(m, "cw", "paper") == "not run by the report"
    assert report_cell(m, "pgd", "corrected", "0.01569 (4.0/255)").startswith(
        "not run by the report at this eps")
    assert report_cell("resnet18-kwta-0.2", "deepfool", "paper").endswith("#OLD")
    # the report's own grid and its caveats, cited
    grid = _section(text, "The report's robust accuracies", "### Table 3")
    (fig,) = P.find_figures(model=m, quantity="robust_acc", attack="pgd", snapshot="B")
    assert fig.source.cite() in grid and "first 320 test images" in grid and "224x224" in grid
    assert "no eps-ball" in grid and "#OLD:" in grid


def test_table3_is_second_hand_and_claims_no_inference_ratio(empty):
    table3 = _section(empty, "### Table 3", "### Notes")
    t3 = table3_figures()
    assert {f.status for f in t3.values()} == {"second-hand"}
    assert "second-hand" in table3 and "381 s" in table3 and "735 s" in table3
    assert "about 4x" not in empty and "No inference-time figure" in table3


def test_pgd_note_says_what_the_notebook_ran(empty):
    note = _section(empty, "**PGD step size.**", "**The adaptive attack.**")
    assert "abs_stepsize=0.003" in note and "`corrected`" in note
    assert "not attributed to the report" in note
    ran, variant = P.pgd_reach("corrected"), P.pgd_reach("report")
    assert f"{ran.ratio:.2f} x eps" in note and f"{variant.reach:.2g}" in note
    for preset in ATTACKS["pgd"].presets:
        assert f"`{preset}`" in note


def test_attack_wording_matches_the_notebook():
    notes, pgd = PRESET_NOTES["pgd"], ATTACKS["pgd"]
    assert "what the report's notebook ran" in notes["corrected"]
    assert "abs_stepsize=0.003" in notes["report"] and "rel_stepsize=0.003" in notes["report"]
    assert "AS THE REPORT RAN IT" not in notes["report"]
    assert "abs_stepsize=0.003" in pgd.description
    # the names and values the app and results files rely on
    assert pgd.presets["corrected"]["step_size"] == P.NOTEBOOK_PGD["abs_stepsize"]
    assert pgd.presets["report"]["rel_step_size"] == P.UNATTRIBUTED_PGD["rel_stepsize"]
    vga = ATTACKS["vga"].description
    assert "raw target logit" in vga and "224x224" in vga and "no eps-ball" in vga
