"""The published figures (kwta_demo.published) and the reproduction report script."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

from kwta_demo import published as P
from kwta_demo.attacks import ATTACKS
from kwta_demo.checkpoints import MODEL_NAMES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("reproduction_report",
                                                  ROOT / "scripts" / "reproduction_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the published constants -------------------------------------------------------------

def test_every_figure_is_well_formed_and_has_a_source():
    assert len({f.key for f in P.FIGURES}) == len(P.FIGURES)
    for f in P.FIGURES:
        assert f.publication in ("report", "paper") and f.table in (1, 2, 3)
        assert f.model is None or f.model in MODEL_NAMES, f.key
        assert f.attack is None or f.attack in ATTACKS, f.key
        assert f.unit in ("%", "s") and f.setting and f.quantity
        assert f.n is None or f.n > 0
        if f.unit == "%":
            assert 0.0 <= f.value <= 100.0 and f.fraction == pytest.approx(f.value / 100)
        src = f.source
        assert src.repo and src.path and src.where and src.quote, f.key
        assert f.status in ("read", "second-hand")
        if f.status == "read":  # read in a named file at a named commit
            assert re.fullmatch(r"[0-9a-f]{40}", src.commit) and "/" in src.repo, f.key
            assert src.url == f"https://github.com/{src.repo}/blob/{src.commit}/{src.path}"
        else:
            assert f.note, f"{f.key}: a second-hand figure must say why"


def test_each_read_figure_appears_in_its_quote():
    for f in P.FIGURES:
        if f.status != "read":
            continue
        numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", f.source.quote)]
        assert any(x == pytest.approx(f.value, abs=1e-12) for x in numbers), (f.key, f.source.quote)


def test_counted_figures_match_their_counts():
    # "522 / 2880 = 18.125 %": the count, the total (our n) and the value agree
    counted = [f for f in P.FIGURES if " / " in f.source.quote]
    assert len(counted) >= 18
    for f in counted:
        hit, total, pct = re.search(r"(\d+) / (\d+) = ([\d.]+) %", f.source.quote).groups()
        assert int(total) == f.n and float(pct) == f.value
        assert 100 * int(hit) / int(total) == pytest.approx(f.value)


def test_both_notebook_snapshots_cover_all_six_models():
    for snap in ("A", "B"):
        for quantity, attack in (("clean_acc", None), ("robust_acc", "pgd"),
                                 ("robust_acc", "deepfool"), ("vga_true_label_kept", "vga")):
            found = {f.model for f in P.find_figures(snapshot=snap, quantity=quantity,
                                                     attack=attack)}
            assert found == set(MODEL_NAMES), (snap, quantity)
    # foolbox figures average 20 batches of 16 images
    assert {f.n for f in P.find_figures(quantity="robust_acc")} == {320}


def test_what_was_not_found_is_recorded():
    missing = " ".join(m.what + m.looked_at + m.note for m in P.MISSING)
    assert "CS7643_Final_Report.pdf" in missing and "paper's CIFAR-10 ResNet18" in missing
    assert all(m.looked_at for m in P.MISSING)
    assert {f.status for f in P.find_figures(table=3)} == {"second-hand"}
    assert not P.find_figures(publication="paper")  # none read: do not make any up
    for fact in P.CODE_FACTS:
        assert fact.finding and fact.consequence and fact.source.quote, fact.key


def test_figure_rows_are_flat_and_cite_their_commit():
    rows = P.figure_rows(table=1, snapshot="B")
    assert len(rows) == 6
    for row in rows:
        assert P.NB_B[:8] in row["source"] and row["quote"] and row["url"]
        assert row["fraction"] == pytest.approx(row["value"] / 100)
    with pytest.raises(TypeError):
        P.figure_rows(colour="red")


# -- the PGD step-size arithmetic, from the attack presets --------------------------------

def test_report_pgd_preset_cannot_leave_a_tenth_of_the_eps_ball():
    r = P.pgd_reach("report")
    assert (r.steps, r.eps) == (P.UNATTRIBUTED_PGD["steps"], P.REPORT_EPS)
    assert r.step == pytest.approx(P.UNATTRIBUTED_PGD["rel_stepsize"] * P.REPORT_EPS)
    assert r.reach == pytest.approx(40 * 0.003 * 0.031)  # 0.00372
    assert r.ratio == pytest.approx(0.12) and r.ratio < 1


def test_corrected_preset_is_what_the_notebook_ran():
    r = P.pgd_reach("corrected")
    assert (r.steps, r.step, r.eps) == (P.NOTEBOOK_PGD["steps"], P.NOTEBOOK_PGD["abs_stepsize"],
                                        P.NOTEBOOK_PGD["eps"])
    assert r.reach == pytest.approx(0.12) and r.ratio == pytest.approx(0.12 / 0.031)
    assert ATTACKS["pgd"].presets["corrected"]["random_start"] is True


def test_paper_preset_matches_the_authors_eval_config():
    r = P.pgd_reach("paper")
    assert (r.steps, r.step, r.eps) == (20, 0.007, 0.031)  # config/eval/attacks_cifar_pgd.json
    assert r.ratio > 1
    assert P.pgd_reach("interactive", eps=0.031).ratio == pytest.approx(2.5)
    with pytest.raises(ValueError, match="no PGD preset"):
        P.pgd_reach("nonsense")


# -- scripts/reproduction_report.py ----------------------------------------------------------

def _result(path, meta, rows):
    path.write_text(json.dumps({"meta": meta, "rows": rows}))
    return path


def _row(model, attack, preset, n, robust, clean=0.9, eps=0.031):
    return {"model": model, "attack": attack, "preset": preset, "eps": eps if attack != "none"
            else 0.0, "n": n, "seed": 0, "device": "cuda", "clean_acc": clean,
            "robust_acc": robust}


def test_merge_two_files(report, tmp_path):
    meta1 = {"device": "cuda", "device_name": "GPU-1", "torch": "2.11", "date": "d1",
             "data": "x.tar.gz", "command": "python -m kwta_demo evaluate --models a"}
    meta2 = {**meta1, "device_name": "GPU-2", "date": "d2", "command": "second"}
    first = _result(tmp_path / "one.json", meta1, [
        _row("resnet18-relu", "none", "", 10000, 0.93, 0.93),
        _row("resnet18-relu", "pgd", "corrected", 1000, 0.10),
        _row("resnet18-relu", "pgd", "report", 1000, 0.80),
    ])
    second = _result(tmp_path / "two.json", meta2, [
        _row("resnet18-relu", "pgd", "corrected", 1000, 0.05),  # same key: replaces
        _row("resnet18-relu", "cw", "paper", 100, 0.02),
        _row("alexnet-relu", "none", "", 10000, 0.85, 0.85),
    ])
    out, md = tmp_path / "res" / "reproduction.json", tmp_path / "tables.md"
    assert report.main([str(first), str(second), "--out", str(out), "--markdown", str(md)]) == 0
    merged = json.loads(out.read_text())
    rows = {(r["model"], r["attack"], r["preset"]): r for r in merged["rows"]}
    assert len(merged["rows"]) == 5 == len(rows)
    assert rows[("resnet18-relu", "pgd", "corrected")]["robust_acc"] == 0.05
    assert rows[("resnet18-relu", "pgd", "corrected")]["device_name"] == "GPU-2"
    assert rows[("resnet18-relu", "pgd", "report")]["device_name"] == "GPU-1"
    assert rows[("resnet18-relu", "pgd", "report")]["source_file"] == "one.json"
    for r in merged["rows"]:
        assert all(k in r for k in report.REQUIRED)
    # MODEL_NAMES order, the clean row first
    assert [r["model"] for r in merged["rows"]][:4] == ["resnet18-relu"] * 4
    assert merged["rows"][0]["attack"] == "none"
    assert merged["meta"]["device_name"] == "GPU-1; GPU-2" and len(merged["meta"]["sources"]) == 2
    tables = md.read_text()
    assert "| resnet18-relu | 92.9% | 90.8% | not found | 93.00% (n=10000) |" in tables
    assert "5.00% (n=1000)" in tables and "80.00% (n=1000)" in tables and "2.00% (n=100)" in tables
    assert report.NOT_MEASURED in tables and report.PENDING not in tables

    # merging the merged file with itself again changes nothing
    again = tmp_path / "again.json"
    assert report.main([str(out), str(out), "--out", str(again)]) == 0
    assert json.loads(again.read_text())["rows"] == merged["rows"]


def test_bad_input_is_refused(report, tmp_path, capsys):
    bad = _result(tmp_path / "bad.json", {}, [{"model": "resnet18-relu", "attack": "pgd"}])
    assert report.main([str(bad), "--out", str(tmp_path / "o.json")]) == 2
    assert "lacks preset" in capsys.readouterr().err and not (tmp_path / "o.json").exists()


def test_tables_without_results_say_pending(report):
    tables = report.render(None)
    assert tables.count(report.PENDING) == len(MODEL_NAMES) + 1  # Table 1's cells + a note
    ours = tables.split("### Table 2: robust")[1].split("Robust accuracy =")[0]
    for model in MODEL_NAMES:
        (line,) = [x for x in ours.splitlines() if x.startswith(f"| {model} |")]
        assert line == f"| {model} | " + " | ".join(["pending"] * 8) + " |"


def test_update_doc_replaces_only_the_generated_block(report, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{report.BEGIN}\nold tables\n{report.END}\noutro\n")
    report.update_doc(doc, "NEW\n")
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{report.END}\noutro\n")
    assert "NEW" in text and "old tables" not in text
    doc.write_text("no markers")
    with pytest.raises(ValueError, match="needs exactly one"):
        report.update_doc(doc, "x")


def test_the_document_holds_the_current_tables(report):
    text = (ROOT / "docs" / "reproduction.md").read_text()
    block = text.split(report.BEGIN)[1].split(report.END)[0].strip()
    merged = None
    results = ROOT / "results" / "reproduction.json"
    if results.is_file():
        merged = report.merge(report.read_inputs([results]))
    assert block == report.render(merged).strip(), \
        "regenerate: python scripts/reproduction_report.py results/reproduction.json " \
        "--no-out --update-doc docs/reproduction.md (or with no input before any results)"
