"""The reproduction tables: the report's figures beside ours, nothing filled in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kwta_demo.reporting.analysis import best_rows
from kwta_demo.reporting.cells import ADAPTIVE_NOTE, NOT_MEASURED, format_cell
from kwta_demo.reporting.tables import reproduction_markdown

ROOT = Path(__file__).resolve().parents[1]


def _table(text: str, number: int) -> list[str]:
    block = text.split(f"### Table {number}")[1].split("###")[0]
    return [line for line in block.splitlines() if line.startswith("| ") and "---" not in line]


def test_without_results_every_cell_of_ours_says_so(tmp_path):
    text = reproduction_markdown(tmp_path / "results", tmp_path / "ckpt")
    assert "do not exist yet" in text
    for number in (1, 2):
        for line in _table(text, number)[1:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            ours = cells[2::2]
            assert ours == [NOT_MEASURED] * 3, line
    assert "| PGD as the report ran it" in text
    resnet = "\n".join(_table(text, 1))
    assert "50.3% (n=320)" in resnet and "7.2% (pairs=2880)" in resnet and "48.8% (n=320)" in resnet
    assert "| ResNet18 ReLU | 381 s | 10 s |" in text and "735 s | 42 s" in text
    assert "cannot move more than 0.12 eps" in text and "76f97def" in text
    assert "7.15%" in text and "unreliable" in text


def _row(model, attack, preset, acc, n=320, ci=(0.1, 0.2), **extra):
    return {"model": model, "attack": attack, "preset": preset, "eps": 0.031, "n": n, "seed": 0,
            "robust_acc": acc, "robust_ci95": list(ci), **extra}


def test_our_rows_fill_their_cells_with_n_and_intervals(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    rows = [
        _row("resnet18-kwta-0.1", "none", "", 0.871, n=10000, ci=(0.864, 0.877)),
        _row("resnet18-kwta-0.1", "pgd", "report", 0.512, ci=(0.457, 0.566)),
        _row("resnet18-kwta-0.1", "pgd", "corrected", 0.0, ci=(0.0, 0.0119)),
        _row("resnet18-kwta-0.1", "pgd", "corrected", 0.001, n=1000, ci=(0.0002, 0.0056)),
        _row("resnet18-kwta-0.1", "vga", "report", 0.05, ci=(0.04, 0.06), n_pairs=2880),
    ]
    (results / "reproduction.json").write_text(json.dumps({"meta": {"device": "cpu", "seed": 0},
                                                           "rows": rows}))
    ckpt = tmp_path / "ckpt" / "alexnet-relu"
    ckpt.mkdir(parents=True)
    (ckpt / "metrics.json").write_text(json.dumps({
        "clean_accuracy": 0.8366, "test_images": 10000, "eval_seconds": 21.4,
        "history": [{"epoch": 1, "train_seconds": 80.0}, {"epoch": 2, "train_seconds": 90.0}]}))
    (tmp_path / "ckpt" / "resnet18-relu").mkdir()
    (tmp_path / "ckpt" / "resnet18-relu" / "metrics.json").write_text(json.dumps({
        "clean_accuracy": 0.9, "test_images": 10000, "eval_seconds": 30.2,
        "history": [{"epoch": 1, "train_seconds": 70.0, "image_size": 16},
                    {"epoch": 2, "train_seconds": 250.0, "image_size": 32},
                    {"epoch": 3, "train_seconds": 900.0, "image_size": 32},  # CPU shared
                    {"epoch": 4, "train_seconds": 240.0, "image_size": 32},
                    {"epoch": 5, "train_seconds": 260.0, "image_size": 32}]}))
    text = reproduction_markdown(results, tmp_path / "ckpt")
    resnet = "\n".join(_table(text, 1))
    assert "87.1% [86.4–87.7], n=10000" in resnet
    assert "51.2% [45.7–56.6], n=320" in resnet
    assert "0.1% [0.0–0.6], n=1000" in resnet  # the row with the most images
    assert "5.0% [4.0–6.0], pairs=2880" in resnet
    alexnet = "\n".join(_table(text, 2))
    assert "83.7% [" in alexnet and "n=10000" in alexnet  # from the checkpoint's metrics.json
    # the lower quartile of the 32 px epochs: a shared-CPU epoch does not move it
    assert "| ResNet18 ReLU | 381 s | 10 s | 250 s | 30 s |" in text
    assert ("| resnet18-kwta-0.1 | 50.3% (n=320) | 51.2% [45.7–56.6], n=320 | "
            "0.1% [0.0–0.6], n=1000 |") in text  # the step finding, every model
    assert f"| alexnet-relu | 8.8% (n=320) | {NOT_MEASURED} | {NOT_MEASURED} |" in text
    assert "`finished`" not in text  # no row is stamped: nothing to point at
    rows[0]["finished"] = "2026-12-01 20:40:00 UTC"
    (results / "reproduction.json").write_text(json.dumps(
        {"meta": {"device": "cpu", "seed": 0, "date": "2026-12-01 20:22:21 UTC"}, "rows": rows}))
    text = reproduction_markdown(results, tmp_path / "ckpt")
    assert ("seed 0; the latest run started 2026-12-01 20:22:21 UTC; the file keeps rows of "
            "earlier runs, and 1 of its 5 rows says when it was finished") in text
    rows[1]["finished"] = "2026-12-01 20:41:00 UTC"
    (results / "reproduction.json").write_text(json.dumps(
        {"meta": {"device": "cpu", "seed": 0, "date": "2026-12-01 20:22:21 UTC"}, "rows": rows}))
    assert "2 of its 5 rows say when it was finished" in reproduction_markdown(
        results, tmp_path / "ckpt")
    (results / "reproduction.json").write_text("{broken")
    assert "Unreadable results files" in reproduction_markdown(results, tmp_path / "ckpt")


def test_cells_and_best_rows():
    assert format_cell(None) == NOT_MEASURED
    assert format_cell({"robust_acc": float("nan"), "n": 3}) == NOT_MEASURED
    assert format_cell({"robust_acc": 0.25, "n": 8}) == "25.0%, n=8"
    best = best_rows([_row("checkpoints/m", "pgd", "paper", 0.2, n=320),
                      _row("m", "pgd", "paper", 0.3, n=1000)])
    assert best[("m", "pgd", "paper")]["n"] == 1000


def test_the_docs_script_rewrites_between_its_markers(tmp_path, script):
    rr = script("reproduction_report")
    doc = tmp_path / "doc.md"
    doc.write_text(f"# head\n{rr.BEGIN}\nold\n{rr.END}\ntail\n")
    rr.update_doc(doc, "new tables")
    assert doc.read_text() == f"# head\n{rr.BEGIN}\n\nnew tables\n\n{rr.END}\ntail\n"
    doc.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        rr.update_doc(doc, "x")


def test_the_results_files_offered_are_those_that_exist(tmp_path):
    from kwta_demo.reporting.tables import results_files

    assert results_files(tmp_path) == []
    (tmp_path / "audit.json").write_text("{}")
    (tmp_path / "other.json").write_text("{}")
    assert results_files(tmp_path) == [tmp_path / "audit.json"]
    (tmp_path / "reproduction.json").write_text("{}")
    assert [p.name for p in results_files(tmp_path)] == ["reproduction.json", "audit.json"]


def test_claims_chart_sets_claims_beside_measurements(tmp_path):
    from kwta_demo.app import viz
    from kwta_demo.reporting.claims import claims

    bare = claims(tmp_path)
    assert [(c.label, c.value) for c in bare][:4] == [
        ("the paper, as reported", 52.4), ("RobustBench, AutoAttack", 18.5),
        ("RobustBench, APGD-CE + Square", 7.15), ("Tramèr et al. 2020, adaptive attack", 0.16)]
    assert [c.value for c in bare if c.label == "the report, PGD"] == [50.3, 27.8]
    assert not any(c.label.startswith("ours") for c in bare)  # nothing of ours invented
    (tmp_path / "reproduction.json").write_text(json.dumps({"meta": {}, "rows": [
        _row("resnet18-kwta-0.1", "bpda", "paper", 0.004, ci=(0.001, 0.017), device="cpu")]}))
    full = claims(tmp_path)
    ours = [c for c in full if c.label.startswith("ours")]
    assert len(ours) == 1 and ours[0].value == pytest.approx(0.4) and ours[0].group == "ResNet18 k-WTA-0.1"
    assert ours[0].ci95 == pytest.approx((0.1, 1.7)) and "n=320" in ours[0].conditions
    assert ours[0].relu is None  # no ReLU row: no twin marker
    fig = viz.claims_chart(full)
    bar, labels = fig.data  # no twin trace without a twin
    assert len(bar.x) == len(full) and "RobustBench" in bar.customdata[1][0]
    # each figure is written past its error bar
    at = full.index(ours[0])
    assert labels.text[at] == "0.4%" and labels.x[at] == pytest.approx(1.7 + 1.0)


def test_claims_chart_marks_the_relu_twin_where_measured_alike(tmp_path):
    from kwta_demo.app import viz
    from kwta_demo.reporting.claims import claims

    rows = [_row("resnet18-kwta-0.1", "pgd", "report", 0.747), _row("resnet18-relu", "pgd", "report", 0.647),
            _row("resnet18-kwta-0.1", "bpda", "paper", 0.01), _row("resnet18-relu", "bpda", "paper", 0.0, n=100)]
    (tmp_path / "reproduction.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    ours = {c.label: c for c in claims(tmp_path) if c.label.startswith("ours")}
    assert ours["ours, PGD as the report ran it"].relu == pytest.approx(64.7)
    assert ours["ours, BPDA"].relu is None  # the twin's row is on other images
    fig = viz.claims_chart(list(ours.values()))
    twin = fig.data[-1]
    assert list(twin.x) == pytest.approx([64.7]) and "ReLU twin" in twin.name
    assert twin.y[0].endswith("ours, PGD as the report ran it")


def test_the_audit_section(tmp_path):
    text = reproduction_markdown(tmp_path, tmp_path / "ckpt")
    assert "The gradient-masking audit" in text and "python -m kwta_demo audit" in text
    (tmp_path / "audit.json").write_text(json.dumps({"rows": [
        {"kind": "audit", "model": "alexnet-kwta-0.1", "attack": "pgd:report", "n": 64, "seed": 0,
         "correct": 50, "eps": 0.031, "device": "cpu", "seconds": 300.0,
         "data": "cifar10-jpeg.tar.gz (tar, sha256 0972)",
         "verdict": "Robustness here comes from gradient masking: x."},
        {"kind": "transfer", "model": "alexnet", "attack": "pgd:corrected", "n": 64, "seed": 0,
         "sources": ["alexnet-relu", "alexnet-kwta-0.1 (BPDA)"], "targets": ["alexnet-relu"],
         "rates": [[1.0], [None]], "ci95": [[[0.93, 1.0]], [[0.0, 1.0]]], "correct": [55]}]}))
    text = reproduction_markdown(tmp_path, tmp_path / "ckpt")
    assert "| alexnet-kwta-0.1 | `pgd:report` | 50 of 64 (seed 0) | Robustness here comes" in text
    assert ("In short: Robustness here comes from gradient masking: alexnet-kwta-0.1 under "
            "`pgd:report`.") in text
    assert "| examples crafted on | alexnet-relu (55 right) |" in text
    assert "| alexnet-relu | 100% [93–100] |" in text and "| alexnet-kwta-0.1 (BPDA) | n/a |" in text
    assert "the share of the images the column's model classifies correctly that the" in text
    # how the rows were obtained, read from the rows: command, images, seed, eps, device
    assert ("alexnet: `python -m kwta_demo audit --arch alexnet --n 64 --seed 0 --attacks "
            "pgd:report`") in text and "eps 0.031, device cpu, 5 min in all" in text
    # the data too; a row that does not record it says so
    assert ("test images of cifar10-jpeg.tar.gz (tar, sha256 0972) and data not recorded, "
            "L-inf eps 0.031") in text


def test_a_transfer_matrix_is_read_in_words_from_its_twin_column(tmp_path):
    def matrix(own: float, bpda: float) -> dict:
        return {"kind": "transfer", "model": "alexnet", "attack": "pgd:corrected",
                "bpda": "bpda:paper", "n": 64, "seed": 0,
                "sources": ["alexnet-relu", "alexnet-kwta-0.1", "alexnet-kwta-0.1 (BPDA)"],
                "targets": ["alexnet-relu", "alexnet-kwta-0.1"],
                "rates": [[1.0, 0.95], [own, 0.9], [bpda, 1.0]], "correct": [50, 40]}

    audited = {"kind": "audit", "model": "alexnet-kwta-0.1", "attack": "pgd:corrected", "n": 64,
               "seed": 0, "correct": 40, "verdict": "No sign of gradient masking: x."}
    (tmp_path / "audit.json").write_text(json.dumps({"rows": [audited, matrix(0.3, 0.8)]}))
    text = reproduction_markdown(tmp_path, tmp_path / "ckpt")
    assert "`pgd:corrected` examples (BPDA rows: `bpda:paper`) crafted on each model" in text
    assert ("Reading it: examples made on alexnet-kwta-0.1's own gradients fool alexnet-relu "
            "on 30% of its images, those of BPDA on the same model on 80%: what its own "
            "gradients find fools it (90%) but carries over less") in text
    # a gap under the audit's margin (5 points) reads as alike
    (tmp_path / "audit.json").write_text(json.dumps({"rows": [audited, matrix(0.78, 0.8)]}))
    text = reproduction_markdown(tmp_path, tmp_path / "ckpt")
    assert ("Reading it: alexnet-kwta-0.1's own gradients and BPDA's make examples that fool "
            "alexnet-relu alike (78% and 80%).") in text and "carries over less" not in text


def test_the_audit_table_puts_each_attacks_verdicts_together(tmp_path):
    def audited(model, attack):
        return {"kind": "audit", "model": model, "attack": attack, "n": 64, "seed": 0,
                "correct": 50, "verdict": f"verdict on {model} under {attack}."}

    # in the order a restarted run wrote them
    (tmp_path / "audit.json").write_text(json.dumps({"rows": [
        audited("alexnet-relu", "pgd:report"), audited("alexnet-kwta-0.1", "pgd:report"),
        audited("alexnet-relu", "deepfool:paper"), audited("resnet18-kwta-0.2", "pgd:report"),
        audited("alexnet-kwta-0.2", "pgd:report"), audited("resnet18-relu", "pgd:report"),
        audited("alexnet-kwta-0.2", "deepfool:paper")]}))
    text = reproduction_markdown(tmp_path, tmp_path / "ckpt")
    order = [line.split(" | ")[0][2:] + " " + line.split(" | ")[1]
             for line in text.splitlines() if line.startswith("| ") and "verdict on" in line]
    assert order == ["resnet18-relu `pgd:report`", "resnet18-kwta-0.2 `pgd:report`",
                     "alexnet-relu `pgd:report`", "alexnet-kwta-0.2 `pgd:report`",
                     "alexnet-kwta-0.1 `pgd:report`", "alexnet-relu `deepfool:paper`",
                     "alexnet-kwta-0.2 `deepfool:paper`"]


def test_the_step_finding_in_words_needs_every_model_and_quotes_the_rows(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    names = [f"{a}-{v}" for a in ("resnet18", "alexnet") for v in ("relu", "kwta-0.2", "kwta-0.1")]
    rows = [_row(n, "pgd", "report", 0.6 + 0.01 * i) for i, n in enumerate(names)]
    rows += [_row(n, "pgd", "corrected", 0.002 * i) for i, n in enumerate(names[:-1])]
    (results / "reproduction.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    assert "our ReLU models" not in reproduction_markdown(results, tmp_path / "ckpt")
    rows.append(_row(names[-1], "pgd", "corrected", 0.066))
    (results / "reproduction.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    text = reproduction_markdown(results, tmp_path / "ckpt")
    assert ("our ReLU models (resnet18-relu, alexnet-relu) keep 60.0% and 63.0% of their images, "
            "where the report's kept 0% and 8.8%") in text
    assert "no model keeps more than 6.6% (alexnet-kwta-0.1)" in text


def test_the_cost_table_sums_each_attacks_rows(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    rows = [_row("alexnet-relu", "none", "", 0.8, n=10000, seconds=30.0),
            _row("alexnet-relu", "pgd", "report", 0.7, seconds=60.0),
            _row("alexnet-relu", "pgd", "report", 0.7, n=1000, seconds=120.0),  # 680 new images
            _row("resnet18-kwta-0.1", "pgd", "report", 0.7, seconds=3420.0)]
    (results / "reproduction.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    text = reproduction_markdown(results, tmp_path / "ckpt")
    table = text.split("### What the evaluation cost")[1].split("###")[0]
    assert "| `clean` |  |  |  | 0.5 |  |  |" in table
    assert "| `pgd:report` |  |  | 57.0 | 3.0 |  |  |" in table
    assert "In all **1.0 hours** for the 4 rows so far." in table


def test_the_worst_case_counts_an_image_robust_only_if_every_attack_failed_on_it(tmp_path):
    results = tmp_path / "results"
    results.mkdir()

    def row(model, attack, preset, per_image, **extra):
        acc = sum(per_image) / len(per_image)
        return _row(model, attack, preset, acc, n=len(per_image), robust_per_image=per_image,
                    **extra)

    rows = [row("alexnet-relu", "pgd", "corrected", [False] * 8),
            # each attack alone leaves 2 of 8 standing, together only image 0
            row("alexnet-kwta-0.1", "pgd", "corrected", [True, True, False, False] + [False] * 4),
            row("alexnet-kwta-0.1", "deepfool", "paper", [True, False, True, False] + [False] * 4),
            # not on the same images or not in the eps-ball: left out
            row("alexnet-kwta-0.1", "cw", "paper", [False] * 4),
            row("alexnet-kwta-0.1", "vga", "report", [False] * 8, eps=1.0),
            row("alexnet-kwta-0.2", "pgd", "corrected", [True] * 6 + [False] * 2)]
    (results / "reproduction.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    text = reproduction_markdown(results, tmp_path / "ckpt")
    table = text.split("### Every attack at once")[1].split("###")[0]
    line = next(l for l in table.splitlines() if l.startswith("| alexnet-kwta-0.1 "))
    assert "| 2: PGD (corrected), DeepFool |" in line
    assert "| PGD (corrected): 25.0%" in line
    assert line.endswith("| 12.5% [2.2–47.1], n=8 |")
    # C&W, on the first 4 images only, joins in on a line of its own over those images
    fewer = next(l for l in table.splitlines()
                 if l.startswith("| alexnet-kwta-0.1, first 4 images "))
    assert "| 3: PGD (corrected), DeepFool, Carlini-Wagner |" in fewer
    # the row on exactly 4 images is quoted as it is (the fixture's interval)
    assert "| Carlini-Wagner: 0.0% [10.0–20.0], n=4 | 0.0% [0.0–49.0], n=4 |" in fewer
    assert "Attacks run on fewer images join in on a line of their own" in table
    # on a prefix, a longer row's figure is recomputed from its first n outcomes
    from kwta_demo.evaluation.results import wilson_interval
    from kwta_demo.reporting.analysis import worst_case

    w = worst_case(best_rows(rows), "alexnet-kwta-0.1", n=2)
    assert (w.n, w.acc, len(w.attacks)) == (2, 0.0, 3)
    assert w.strongest["n"] == 2 and w.strongest["robust_ci95"] == wilson_interval(0, 2)
    assert worst_case(best_rows(rows), "alexnet-kwta-0.1", n=9) is None  # no row that long
    assert f"| resnet18-relu | {NOT_MEASURED} |" in table
    assert ("the k-WTA models keep 75.0% (alexnet-kwta-0.2) and 12.5% (alexnet-kwta-0.1) of "
            "their images, the ReLU models 0.0% (alexnet-relu)") in table
    assert ("alexnet-kwta-0.1: its 95% interval overlaps the ReLU twin's, so no robustness "
            "beyond the ReLU model's is measurable on 8 images") in table
    assert "alexnet-kwta-0.2: above the ReLU twin's 95% interval" in table
    # no test-split indices in the meta: no image is named
    assert "The images no attack fooled" not in table
    (results / "reproduction.json").write_text(json.dumps(
        {"meta": {"robust_test_indices": list(range(100, 108))}, "rows": rows}))
    named = reproduction_markdown(results, tmp_path / "ckpt").split(
        "### Every attack at once")[1].split("###")[0]
    assert ("The images no attack fooled, by test-split index (`?test=N&arch=ARCH` after the "
            "app's address sets one up on the Attack tab): alexnet-kwta-0.2: #100, #101, #102, "
            "#103, #104, #105; alexnet-kwta-0.1: #100.") in named
    from kwta_demo.reporting.claims import claims

    (bar,) = [c for c in claims(results) if c.label == "ours, every attack at once"]
    assert bar.group == "AlexNet k-WTA-0.1" and bar.value == pytest.approx(12.5)
    assert "robust only if all of PGD (corrected), DeepFool fail" in bar.conditions
    assert bar.relu is None  # the twin ran PGD alone: no worst case over the same attacks
    rows[0] = row("alexnet-relu", "pgd", "corrected", [True] + [False] * 7)
    rows.append(row("alexnet-relu", "deepfool", "paper", [True] + [False] * 7))
    rows.append(row("alexnet-relu", "apgd-ce", "paper", [False] * 8))  # the k-WTA model has none
    (results / "reproduction.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    (bar,) = [c for c in claims(results) if c.label == "ours, every attack at once"]
    assert bar.relu == pytest.approx(12.5)  # over PGD (corrected) and DeepFool, as the bar


def test_the_adaptive_attacks_are_set_against_the_survivors_of_the_best_gradient_attack(
        tmp_path):
    results = tmp_path / "results"
    results.mkdir()

    def row(model, attack, preset, per_image):
        return _row(model, attack, preset, sum(per_image) / len(per_image), n=len(per_image),
                    robust_per_image=per_image)

    text = reproduction_markdown(results, tmp_path / "ckpt")
    assert "### Where k-WTA looks strongest" not in text and ADAPTIVE_NOTE in text
    rows = [row("resnet18-relu", "deepfool", "paper", [False] * 8),
            row("resnet18-kwta-0.1", "pgd", "corrected", [True] + [False] * 7),
            # DeepFool leaves the most standing: images 0-3
            row("resnet18-kwta-0.1", "deepfool", "paper", [True] * 4 + [False] * 4),
            # BPDA fools images 0-2 of those, not 3, and one DeepFool fooled already
            row("resnet18-kwta-0.1", "bpda", "paper", [False] * 3 + [True] * 2 + [False] * 3),
            # gradient estimation on the first 2 images only: fools image 1
            row("resnet18-kwta-0.1", "gradient-estimation", "cpu", [True, False]),
            # no adaptive row: no sentence
            row("alexnet-kwta-0.1", "deepfool", "paper", [True] * 8)]
    (results / "reproduction.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    section = reproduction_markdown(results, tmp_path / "ckpt").split(
        "### Where k-WTA looks strongest")[1].split("###")[0]
    assert ADAPTIVE_NOTE in section
    assert ("On resnet18-kwta-0.1, the gradient attack that leaves the most standing is "
            "DeepFool: 50.0% [10.0–20.0], n=8 (ReLU twin: 0.0%).") in section
    assert "BPDA leaves 25.0% [10.0–20.0], n=8, and fools 3 of the 4 images DeepFool" in section
    assert ("Gradient estimation leaves 50.0% [10.0–20.0], n=2 on the first 2 of those images, "
            "and fools 1 of the 2 images DeepFool left standing.") in section
    assert "alexnet" not in section


def test_squares_survivors_are_set_against_the_other_attacks_on_the_same_images(tmp_path):
    from kwta_demo.reporting.tables import status_markdown

    results = tmp_path / "results"
    results.mkdir()

    def row(model, attack, preset, per_image, **extra):
        return _row(model, attack, preset, sum(per_image) / len(per_image), n=len(per_image),
                    robust_per_image=per_image, **extra)

    rows = [row("alexnet-relu", "square", "cpu", [True] + [False] * 7),
            # Square leaves images 0-3 standing
            row("alexnet-kwta-0.2", "square", "cpu", [True] * 4 + [False] * 4),
            # APGD fools 0 and 1, BPDA 2: together 3 of the 4, APGD-CE the most
            row("alexnet-kwta-0.2", "apgd-ce", "paper", [False, False, True, True] + [False] * 4),
            row("alexnet-kwta-0.2", "bpda", "paper", [True, True, False, True] + [False] * 4),
            # on fewer images or outside the eps-ball: left out, though they fool image 3
            row("alexnet-kwta-0.2", "gradient-estimation", "cpu", [True] * 3 + [False]),
            row("alexnet-kwta-0.2", "vga", "report", [False] * 8, eps=1.0),
            # survivors but no other attack: no sentence
            row("alexnet-kwta-0.1", "square", "cpu", [True] * 8)]
    (results / "reproduction.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    section = reproduction_markdown(results, tmp_path / "ckpt").split(
        "### Where k-WTA looks strongest")[1].split("###")[0]
    assert ("Square reads only the model's scores, never a gradient. On alexnet-kwta-0.2 it "
            "leaves 50.0% [10.0–20.0], n=8 standing (ReLU twin: 12.5%); the 2 other attacks "
            "run on the same images fool 3 of those 4 (APGD-CE alone 2).") in section
    assert "alexnet-kwta-0.1" not in section
    assert ("Of the images Square leaves standing on the k-WTA models, the other attacks on "
            "the same images fool 3 of 4.") in status_markdown(results)


def test_the_readme_summary_says_what_is_measured_and_what_is_not(tmp_path):
    from kwta_demo.reporting.tables import status_markdown

    results = tmp_path / "results"
    results.mkdir()
    assert "Nothing is measured yet" in status_markdown(results)

    def row(model, attack, preset, per_image):
        return _row(model, attack, preset, sum(per_image) / len(per_image), n=len(per_image),
                    robust_per_image=per_image)

    rows = [row("resnet18-relu", "pgd", "report", [True] * 3 + [False]),
            row("resnet18-relu", "deepfool", "paper", [False] * 4),
            row("resnet18-kwta-0.1", "deepfool", "paper", [True, True, False, False]),
            row("resnet18-kwta-0.1", "bpda", "paper", [False, True, False, False])]
    (results / "reproduction.json").write_text(json.dumps({"meta": {"seed": 0}, "rows": rows}))
    text = status_markdown(results)
    assert "Measured on 4 seeded class-balanced test images" in text
    assert "It leaves 75.0% / – / – of the ResNet18 images standing (the report: 0% / 16.6% / 50.3%)" in text
    assert ("DeepFool leaves 50.0% of ResNet18 k-WTA-0.1's images standing (ReLU: 0.0%), "
            "BPDA fools 1 of those 2.") in text
    # 6 models x 11 attacks, 4 of them measured
    assert "62 cells of Tables 1-2 (–) are not measured yet" in text
    def audited(model, attack, verdict):
        return {"kind": "audit", "model": model, "attack": attack, "n": 64, "seed": 0,
                "device": "cpu", "verdict": verdict + ": evidence ..."}

    masking, clean = "Robustness here comes from gradient masking", "No sign of gradient masking"
    (results / "audit.json").write_text(json.dumps({"rows": [
        audited("resnet18-kwta-0.1", "pgd:corrected", masking),
        audited("resnet18-relu", "pgd:corrected", clean),
        audited("resnet18-kwta-0.1", "deepfool:paper", masking),
        audited("resnet18-kwta-0.2", "deepfool:paper", masking)]}))
    assert ("- **The gradient-masking audit** (64 test images, seed 0, device cpu; `python -m "
            "kwta_demo audit`). Robustness here comes from gradient masking: resnet18-kwta-0.1 "
            "under `pgd:corrected` and `deepfool:paper`, resnet18-kwta-0.2 under "
            "`deepfool:paper`. No sign of gradient masking: resnet18-relu under "
            "`pgd:corrected`.") in status_markdown(results)
    (results / "reproduction.json").write_text("{broken")
    assert "unreadable" in status_markdown(results)
