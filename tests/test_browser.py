"""A real browser against the real server: ``python app.py`` in a subprocess, driven by
Playwright through Debian's Chromium. Picks a gallery image, uploads an image, runs the
attack and finds the plotly charts; saves screenshots (to tmp, and to
``$KWTA_SCREENSHOT_DIR`` when set).

Needs ``pip install playwright`` (its PyPI package carries the driver; no
``playwright install``) and ``apt-get install chromium``; skipped, saying which, otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from kwta_demo.testing import serve_app, write_image_folder, write_random_checkpoints

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("KWTA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ATTACK_TIMEOUT_MS = 180_000  # a CPU shared with other work can be slow

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    write_random_checkpoints(root / "ckpt", ["alexnet-relu", "alexnet-kwta-0.1"])
    write_image_folder(root / "data", per_class=1)
    args = ["--checkpoints", str(root / "ckpt"), "--data", str(root / "data"), "--device", "cpu"]
    try:
        with serve_app(args, root, env={"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}) as app:
            yield app.url, root
    except RuntimeError as e:
        pytest.fail(f"the app did not start: {e}")


@pytest.fixture(scope="module")
def page(app_server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(app_server[0], wait_until="load")
        page.wait_for_selector("#run-attack")
        yield page
        browser.close()


def _shot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    extra = os.environ.get("KWTA_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(extra) / name), full_page=True)


def _run_attack(page, expect: str) -> str:
    """Click Run attack; wait for the summary of this attack (it contains ``expect``)."""
    page.locator("#run-attack").click()
    page.wait_for_function(
        """(expect) => { const t = document.querySelector('#attack-summary').innerText;
                         return t.includes(expect) && t.includes('model(s) in'); }""",
        arg=expect, timeout=ATTACK_TIMEOUT_MS,
    )
    return page.locator("#attack-summary").inner_text()


def test_page_says_which_models_are_missing(page):
    status = page.locator("#model-status").inner_text()
    assert "resnet18-relu: missing locally" in status
    assert "alexnet-relu: found" in status or "alexnet-relu: loaded" in status


def test_pick_gallery_image_and_attack(page, tmp_path):
    thumbs = page.locator("#gallery button.thumbnail-item")
    thumbs.first.wait_for()  # the gallery arrives after the page, once the data is decoded
    assert thumbs.count() == 10
    caption = thumbs.nth(3).inner_text().strip()
    thumbs.nth(3).click()
    page.wait_for_selector("#model-input img")
    assert page.locator("#true-class input").input_value() == caption.split(" ")[0]
    assert "pixel for pixel" in page.locator("#preview-note").inner_text()

    page.locator("#arch label", has_text="AlexNet").click()
    summary = _run_attack(page, f"label: {caption.split(' ')[0]}")
    assert "pgd" in summary and "3 model(s)" in summary
    # Charts: a bar chart per model slot (gamma 0.2 has no checkpoint: a notice), the
    # trace, the heat maps and the channel grid.
    page.wait_for_function("document.querySelectorAll('#heatmaps .js-plotly-plot').length == 1",
                           timeout=ATTACK_TIMEOUT_MS)
    assert page.locator(".js-plotly-plot").count() >= 6
    assert page.locator("#trace-plot .js-plotly-plot .scatterlayer .trace").count() == 2
    assert "Not available" in page.locator("#slot-kwta-0\\.2").inner_text()
    relu_slot = page.locator("#slot-relu")
    assert "L∞" in relu_slot.inner_text()
    src = relu_slot.locator("img").first.get_attribute("src")
    assert src.endswith(".png")  # lossless, not the default WebP
    stats = page.locator("#activation-stats").inner_text()
    assert "alexnet-relu" in stats and "alexnet-kwta-0.1" in stats and "winners" in stats
    _shot(page, tmp_path, "attack.png")


def test_upload_any_image_and_attack(page, tmp_path):
    upload = tmp_path / "upload.png"
    Image.new("RGBA", (300, 200), (200, 40, 40, 255)).save(upload)
    page.locator("#input-image input[type=file]").set_input_files(str(upload))
    page.wait_for_function(
        "document.querySelector('#preview-note').innerText.includes('300x200 RGBA')", timeout=60_000)
    note = page.locator("#preview-note").inner_text()
    assert "center-cropped to 200x200" in note and "box filter" in note
    assert page.locator("#true-class input").input_value().startswith("unknown")
    page.locator("#variants label", has_text="γ=0.2").click()  # toggle a model off
    page.wait_for_selector("#slot-kwta-0\\.2", state="hidden")
    summary = _run_attack(page, "label: unknown")
    assert "2 model(s)" in summary
    assert page.locator("#slot-relu .js-plotly-plot").count() == 1
    _shot(page, tmp_path, "upload.png")


def test_audit_and_transfer_the_last_attack(page, tmp_path):
    """After the upload's attack (true class unknown: each model's own prediction is
    attacked), the audit gives a verdict per model and the transfer matrix draws."""
    page.locator("#run-audit").click()
    page.wait_for_function(
        "document.querySelector('#audit-verdict').innerText.includes('Gradient-masking audit')",
        timeout=ATTACK_TIMEOUT_MS)
    verdict = page.locator("#audit-verdict").inner_text()
    assert "alexnet-relu" in verdict and ("No sign of gradient masking" in verdict
                                          or "gradient masking" in verdict or "not real" in verdict)
    page.locator("#transfer button", has_text="Transfer matrix").first.click()  # open the accordion
    page.locator("#run-transfer").click()
    page.wait_for_selector("#transfer-plot .js-plotly-plot", timeout=ATTACK_TIMEOUT_MS)
    assert page.locator("#transfer-plot .js-plotly-plot .heatmaplayer, "
                        "#transfer-plot .js-plotly-plot .hm").count() >= 1
    for panel, button, plot in (("#atlas", "#run-atlas", "#atlas-plot"),
                                ("#landscape", "#run-landscape", "#landscape-plot")):
        page.locator(f"{panel} button").first.click()  # open the accordion
        page.locator(button).click()
        page.wait_for_selector(f"{plot} .js-plotly-plot", timeout=ATTACK_TIMEOUT_MS)
    assert "Winner-flip atlas" in page.locator("#atlas-plot").inner_text()
    assert "Loss landscape" in page.locator("#landscape-plot").inner_text()
    _shot(page, tmp_path, "audit.png")


def test_reproduction_tab_shows_the_claims_chart(page):
    page.locator("button[role=tab]", has_text="Reproduction").click()
    page.wait_for_selector("#reproduction-chart .js-plotly-plot")
    text = page.locator("#reproduction").inner_text()
    assert "could not cross its eps-ball" in text or "could not reach the edge" in text
    assert "Table 1: ResNet18" in text and "RobustBench" in text
    # the results files behind it download as they are in results/
    link = page.locator('#reproduction-files a[download="reproduction.json"]')
    link.wait_for()
    got = page.request.get(link.get_attribute("href"))
    rows = got.json()["rows"] if got.ok else []
    # a running evaluation only ever adds rows to the file after the app copied it
    now = json.loads((ROOT / "results" / "reproduction.json").read_text())["rows"]
    assert rows and rows == now[: len(rows)]


def test_a_replay_link_sets_up_the_click(page, app_server):
    """Last: it reloads the page with a replay link in its address."""
    url, _ = app_server
    page.goto(url + "?test=3&arch=alexnet&variants=relu,kwta-0.1&attack=fgsm&preset=paper"
                    "&eps=4&seed=2", wait_until="load")
    page.wait_for_selector("#attack-summary")
    page.wait_for_function(
        "document.querySelector('#attack-summary').innerText.includes('replay link')",
        timeout=60_000)
    assert "test image #3" in page.locator("#attack-summary").inner_text()
    page.wait_for_selector("#model-input img")
    summary = _run_attack(page, "fgsm")
    assert "ε = 4.00/255" in summary and "Replay this click" in summary and "?test=3" in summary
    page.goto(url + "?test=3&arch=vgg", wait_until="load")
    page.wait_for_selector("#attack-summary")
    page.wait_for_function(
        "document.querySelector('#attack-summary').innerText.includes('cannot be used')",
        timeout=60_000)
