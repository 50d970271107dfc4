"""Take the README's screenshots of the app: ``python docs/screenshots/take_screenshots.py``.

Starts ``python app.py`` on a free local port and drives it with Playwright and Debian's
Chromium (as tests/test_browser.py does). The data is the configured CIFAR-10 source
(KWTA_CIFAR10 or the default search). The models are the trained checkpoints of one
architecture (``--arch``; by default ResNet18 when its three are in the checkpoint folder,
else AlexNet); only with ``--stand-ins`` randomly initialised models written to a
temporary folder, and then the captions must say so (their predictions mean nothing).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LONG_MS = 600_000


LAYER = {"resnet18": "layer2.0.act1", "alexnet": "features.6"}
ARCH_LABEL = {"resnet18": "ResNet18", "alexnet": "AlexNet"}


def _trained(arch: str) -> bool:
    from kwta_demo.settings import get_settings

    folder = get_settings().checkpoint_dir
    return all((folder / f"{arch}-{v}" / "config.json").is_file()
               for v in ("relu", "kwta-0.2", "kwta-0.1"))


def _checkpoints(arch: str, stand_ins: bool) -> tuple[str, bool]:
    from kwta_demo.settings import get_settings

    if not stand_ins:
        if not _trained(arch):
            raise SystemExit(f"the three {arch} checkpoints are not all in "
                             f"{get_settings().checkpoint_dir}; pass --stand-ins to use "
                             "randomly initialised models (and say so in the captions)")
        return str(get_settings().checkpoint_dir), True
    from kwta_demo.testing import write_random_checkpoints

    tmp = Path(tempfile.mkdtemp(prefix="kwta-shots-"))
    write_random_checkpoints(tmp)
    return str(tmp), False


def masking_example(arch: str, results: Path = ROOT / "results" / "reproduction.json",
                    attack: str = "deepfool", preset: str = "paper") -> int | None:
    """The test-split index of the first evaluation image on which ``attack:preset`` fools
    ``arch``'s ReLU model and leaves both of its k-WTA models standing (None: no such image
    in ``results``): an image whose audit shows what masking looks like."""
    from kwta_demo.evaluation.results import load_result

    data = load_result(results)
    if data is None:
        return None
    indices = data["meta"].get("robust_test_indices") or []
    robust = {Path(r["model"]).name: r.get("robust_per_image") for r in data["rows"]
              if r.get("attack") == attack and r.get("preset") == preset
              and r.get("n") == len(indices)}
    names = [f"{arch}-{v}" for v in ("relu", "kwta-0.2", "kwta-0.1")]
    if not all(robust.get(n) for n in names):
        return None
    relu, k2, k1 = (robust[n] for n in names)
    return next((indices[i] for i in range(len(indices)) if not relu[i] and k2[i] and k1[i]),
                None)


def run_attack(page) -> None:
    """Click *Run attack* and wait for its summary."""
    page.locator("#run-attack").click()
    page.wait_for_function(
        "document.querySelector('#attack-summary').innerText.includes('model(s) in')")


def run_audit(page) -> None:
    """Click *Audit the last attack* and wait for its verdict."""
    page.locator("#run-audit").click()
    page.wait_for_function(
        "document.querySelector('#audit-verdict').innerText.includes('Gradient-masking audit')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--gallery-index", type=int, default=12)
    parser.add_argument("--arch", choices=sorted(LAYER), default=None,
                        help="default: resnet18 when its three checkpoints are present, else alexnet")
    parser.add_argument("--stand-ins", action="store_true",
                        help="randomly initialised models instead of the trained checkpoints")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from kwta_demo.testing import serve_app

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arch = args.arch or ("resnet18" if _trained("resnet18") else "alexnet")
    ckpt, trained = _checkpoints(arch, args.stand_ins)
    print(f"models: {arch}, {'trained checkpoints' if trained else 'RANDOMLY INITIALISED stand-ins'} "
          f"in {ckpt}")
    app_args = ["--checkpoints", ckpt, "--device", "cpu"]
    try:
        with tempfile.TemporaryDirectory() as logs, serve_app(
            app_args, Path(logs), env={"HF_HUB_OFFLINE": "1"}, timeout=180
        ) as app, sync_playwright() as p:
            url = app.url
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
            page.set_default_timeout(LONG_MS)
            page.goto(url, wait_until="load")
            page.wait_for_selector("#run-attack")
            page.locator("#arch label", has_text=ARCH_LABEL[arch]).click()
            page.locator("#gallery button.thumbnail-item").nth(args.gallery_index).click()
            page.wait_for_selector("#model-input img")
            run_attack(page)
            page.wait_for_function("document.querySelectorAll('#heatmaps .js-plotly-plot').length == 1")
            page.locator("#layer input").click()
            page.locator("ul[role=listbox] li", has_text=LAYER[arch]).first.click()
            page.wait_for_function(
                f"document.querySelector('#activation-stats').innerText.includes('{LAYER[arch]}')")
            time.sleep(1)
            page.locator("#attack-inputs").screenshot(path=str(out / "attack-input.png"))
            page.locator("#attack-results").screenshot(path=str(out / "attack-results.png"))
            if not trained:  # untrained models sit at p = 0.1 everywhere: the loss shows more
                page.locator("#trace-plot .updatemenu-button", has_text="loss").click()
                time.sleep(1)
            page.locator("#trace-plot").screenshot(path=str(out / "attack-trace.png"))
            page.locator("#activation-maps").screenshot(path=str(out / "activation-maps.png"))

            run_audit(page)
            page.locator("#audit").screenshot(path=str(out / "audit.png"))
            for panel, button, plot, name in (
                    ("#transfer", "#run-transfer", "#transfer-plot", "transfer.png"),
                    ("#atlas", "#run-atlas", "#atlas-plot", "atlas.png"),
                    ("#landscape", "#run-landscape", "#landscape-plot", "landscape.png")):
                page.locator(f"{panel} button").first.click()  # open the accordion
                page.locator(button).click()
                page.wait_for_selector(f"{plot} .js-plotly-plot")
                time.sleep(1)
                page.locator(panel).screenshot(path=str(out / name))

            example = masking_example(arch)
            if example is not None and trained:  # DeepFool, where k-WTA seems to resist it
                print(f"DeepFool audit on test image #{example}", flush=True)
                page.goto(f"{url}?test={example}&arch={arch}&attack=deepfool&preset=paper",
                          wait_until="load")
                page.wait_for_selector("#attack-summary")
                page.wait_for_function("document.querySelector('#attack-summary').innerText"
                                       f".includes('test image #{example}')")
                page.wait_for_selector("#model-input img")
                print("  set up from the replay link", flush=True)
                run_attack(page)
                print("  attack done; auditing", flush=True)
                run_audit(page)
                page.locator("#audit").screenshot(path=str(out / "audit-deepfool.png"))
                page.goto(url, wait_until="load")
                page.wait_for_selector("#run-attack")
            page.get_by_role("tab", name="Robustness sweep").click()
            page.locator("#sweep-arch label", has_text=ARCH_LABEL[arch]).click()
            page.locator("#sweep-eps textarea, #sweep-eps input").first.fill("0, 2, 4, 8")
            n_box = page.locator("#sweep-n input[type=number]")
            n_box.fill("10")
            n_box.press("Enter")
            page.locator("#run-sweep").click()
            page.wait_for_function(
                "document.querySelectorAll('#sweep-plot .js-plotly-plot .scatterlayer .trace').length >= 3")
            time.sleep(1)
            page.locator("#tab-sweep").screenshot(path=str(out / "sweep.png"))

            page.get_by_role("tab", name="Reproduction").click()
            page.wait_for_selector("#reproduction-chart .js-plotly-plot")
            time.sleep(1)
            page.locator("#reproduction-chart").screenshot(path=str(out / "reproduction-chart.png"))
            page.locator("#tab-reproduction").screenshot(path=str(out / "reproduction.png"))
            browser.close()
    finally:
        if not trained:
            shutil.rmtree(ckpt, ignore_errors=True)
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
