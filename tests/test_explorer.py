"""The app's handlers, called directly (no Gradio): uploads, gallery, models, attacks,
activations, sweeps and the reproduction tables, with tiny checkpoints and data."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from kwta_demo.app import viz
from kwta_demo.app.explorer import Explorer
from kwta_demo.app.inputs import Limits, attack_controls, model_names, parse_eps_list
from kwta_demo.app.model_cache import ModelCache
from kwta_demo.data.uploads import ImageInputError, prepare_image
from kwta_demo.models.activations import active_share, comparable_layers, flipped_share
from kwta_demo.models.architectures import CIFAR10_CLASSES
from kwta_demo.reporting.tables import reproduction_markdown
from kwta_demo.testing import write_image_folder, write_random_checkpoints

NAMES = ["alexnet-relu", "alexnet-kwta-0.2", "alexnet-kwta-0.1"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    write_random_checkpoints(root / "ckpt", NAMES)
    write_image_folder(root / "data", per_class=2)
    mp = pytest.MonkeyPatch()
    mp.setenv("KWTA_CHECKPOINTS", str(root / "ckpt"))
    mp.setenv("KWTA_CIFAR10", str(root / "data"))
    mp.setenv("KWTA_HUB_TIMEOUT", "0.2")  # a missing model must fail fast offline
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def explorer(assets):
    return Explorer(ModelCache("cpu"), gallery_per_class=2)


def _image(explorer, index=4):
    image, cls = explorer.gallery_item(index)
    return image, cls


# ---------------------------------------------------------------- uploads


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def test_32x32_rgb_is_used_pixel_for_pixel():
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    prepared = prepare_image(_png(Image.fromarray(pixels)))
    assert np.array_equal(prepared.to_uint8(), pixels)
    assert "pixel for pixel" in prepared.description


def test_large_image_is_center_cropped_then_area_averaged():
    img = np.zeros((64, 128, 3), dtype=np.uint8)
    img[:, 32:96] = 200  # the central square is uniform, the sides differ
    prepared = prepare_image(Image.fromarray(img))
    assert (prepared.to_uint8() == 200).all()
    assert prepared.original_size == (128, 64)
    assert "center-cropped to 64x64" in prepared.description and "box filter" in prepared.description


def test_small_image_is_enlarged_with_a_stated_method():
    prepared = prepare_image(Image.new("RGB", (10, 10), (10, 20, 30)))
    assert prepared.tensor.shape == (3, 32, 32) and "bicubic" in prepared.description


def test_transparency_is_laid_over_white():
    img = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    out = prepare_image(img).to_uint8()
    assert tuple(out[1, 1]) == (255, 255, 255) and tuple(out[0, 0]) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["P", "L", "1", "LA", "CMYK", "YCbCr", "HSV", "LAB", "I", "F"])
def test_every_pil_mode_becomes_rgb(mode):
    prepared = prepare_image(Image.new(mode, (40, 36)))
    assert prepared.tensor.shape == (3, 32, 32) and prepared.original_mode == mode
    assert 0.0 <= float(prepared.tensor.min()) <= float(prepared.tensor.max()) <= 1.0


def test_16_bit_images_are_scaled_not_clipped():
    values = np.array([[0, 65535], [32768, 65535]], dtype=np.uint16).repeat(16, 0).repeat(16, 1)
    prepared = prepare_image(_png(Image.fromarray(values)))
    assert prepared.original_mode.startswith("I")
    out = prepared.to_uint8()[:, :, 0]
    assert out[0, 0] == 0 and out[0, 31] == 255 and out[31, 0] == 128


def test_float_images_in_unit_range_are_kept():
    img = Image.fromarray(np.full((32, 32), 0.5, dtype=np.float32), mode="F")
    assert (prepare_image(img).to_uint8() == 128).all()


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (64, 32), (0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    prepared = prepare_image(buf.getvalue())
    assert prepared.original_size == (32, 64)
    assert "EXIF" in prepared.description


def test_pixel_cap_is_checked_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (8000, 6000)).save(path)  # 48 megapixels, a few kB on disk
    with pytest.raises(ImageInputError, match="megapixels"):
        prepare_image(path)
    with pytest.raises(ImageInputError, match="limit"):
        prepare_image(Image.new("RGB", (100, 100)), max_pixels=5000)


@pytest.mark.parametrize("bad, message", [
    (None, "no image"),
    (b"not an image at all", "not an image"),
    (_png(Image.new("RGB", (64, 64)))[:60], "damaged or truncated|not an image"),
    ("/nonexistent/file.png", "no image file"),
    (np.zeros((4, 4, 2)), "array"),
    (np.full((4, 4, 3), np.nan), "NaN"),
])
def test_bad_images_are_refused_with_a_reason(bad, message):
    with pytest.raises(ImageInputError, match=message):
        prepare_image(bad)


# ---------------------------------------------------------------- gallery and models


def test_gallery_is_a_seeded_class_balanced_sample(explorer):
    g = explorer.gallery()
    assert len(g.images) == 20 and np.bincount(g.labels, minlength=10).tolist() == [2] * 10
    assert all(img.shape == (32, 32, 3) and img.dtype == np.uint8 for img in g.images)
    assert "seed 0" in g.message
    again = Explorer(explorer.cache, gallery_per_class=2).gallery()
    assert all(np.array_equal(a, b) for a, b in zip(g.images, again.images))
    image, cls = explorer.gallery_item(5)
    assert np.array_equal(image, g.images[5]) and cls == CIFAR10_CLASSES[g.labels[5]]
    assert g.captions[5].startswith(cls)
    with pytest.raises(ValueError, match="gallery index"):
        explorer.gallery_item(20)
    with pytest.raises(ValueError, match="gallery index"):
        explorer.gallery_item(1.5)


def test_without_data_the_gallery_is_empty_but_uploads_work(assets, tmp_path):
    ex = Explorer(ModelCache("cpu"), data_source=str(tmp_path / "nowhere"))
    g = ex.gallery()
    assert g.images == [] and "Uploads still work" in g.message
    with pytest.raises(ValueError, match="gallery is empty"):
        ex.gallery_item(0)
    out = ex.attack(Image.new("RGB", (50, 40), (90, 30, 200)), arch="alexnet", variants=["relu"],
                    attack="fgsm", eps_255=4)
    assert out.models[0].error is None


def test_model_status_names_what_is_missing(explorer):
    from kwta_demo.app.ui import model_status_markdown

    text = model_status_markdown(explorer.cache.device, explorer.model_status())
    for name in ("resnet18-relu", "resnet18-kwta-0.2", "resnet18-kwta-0.1"):
        assert f"`{name}`: missing locally" in text
    assert "Not available here yet: resnet18-relu, resnet18-kwta-0.2, resnet18-kwta-0.1" in text


def test_model_cache_loads_once_and_remembers_failures(assets, tmp_path):
    calls = []

    def loader(name, device):
        calls.append(name)
        if name == "alexnet-kwta-0.2":
            from kwta_demo.models.checkpoints import CheckpointError
            raise CheckpointError("damaged on purpose")
        from kwta_demo import load_model
        return load_model(name, device)

    cache = ModelCache("cpu", loader=loader)
    assert cache.get("alexnet-relu") is cache.get("alexnet-relu")
    for _ in range(2):
        with pytest.raises(Exception, match="damaged on purpose"):
            cache.get("alexnet-kwta-0.2")
    assert calls == ["alexnet-relu", "alexnet-kwta-0.2"]
    states = {s.name: s.state for s in cache.status()}
    assert states["alexnet-relu"] == "loaded" and states["alexnet-kwta-0.2"] == "failed"
    assert not any(p.requires_grad for p in cache.get("alexnet-relu").parameters())
    with pytest.raises(ValueError, match="unknown model"):
        cache.get("vgg-relu")


def test_a_broken_checkpoint_does_not_stop_the_others(assets, tmp_path):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(assets / "ckpt", ckpt)
    (ckpt / "alexnet-kwta-0.2" / "model.safetensors").write_bytes(b"garbage")
    mp = pytest.MonkeyPatch()
    mp.setenv("KWTA_CHECKPOINTS", str(ckpt))
    try:
        ex = Explorer(ModelCache("cpu"))
        out = ex.attack(Image.new("RGB", (32, 32), (120, 60, 30)), arch="AlexNet",
                        variants=["relu", "kwta-0.2", "kwta-0.1"], attack="fgsm", eps_255=4)
        errors = {m.name: m.error for m in out.models}
        assert errors["alexnet-relu"] is None and errors["alexnet-kwta-0.1"] is None
        assert "safetensors" in errors["alexnet-kwta-0.2"]
        status = {s.name: s for s in ex.model_status()}
        assert status["alexnet-kwta-0.2"].state == "failed" and not status["alexnet-kwta-0.2"].usable
        assert set(out.state()["adversarial"]) == {"alexnet-relu", "alexnet-kwta-0.1"}
    finally:
        mp.undo()


# ---------------------------------------------------------------- attack


def test_pgd_attack_on_three_models(explorer):
    image, cls = _image(explorer)
    calls = []
    out = explorer.attack(image, arch="AlexNet", variants=["ReLU", "k-WTA γ=0.2", "k-WTA γ=0.1"],
                          attack="pgd", preset="interactive", eps_255=8, steps=4, true_class=cls,
                          seed=3, progress=lambda f, d: calls.append(f))
    assert [m.name for m in out.models] == NAMES
    assert calls[-1] == 1.0 and calls == sorted(calls)
    clean = out.image.tensor
    for m in out.models:
        assert m.error is None
        adv = m.adversarial
        assert adv.shape == (3, 32, 32) and 0 <= adv.min() and adv.max() <= 1
        assert (adv - clean).abs().max() <= 8 / 255 + 1e-6
        s = m.summary()
        assert s["label"] == cls and s["steps_recorded"] == 5  # 4 steps + the start
        assert math.isclose(float(m.clean_probs.sum()), 1, rel_tol=1e-5)
        assert s["linf_255"] <= 8 + 1e-3
    state = out.state()
    assert state["arch"] == "alexnet" and torch.equal(state["clean"], clean)
    json.dumps([m.summary() for m in out.models])  # plain numbers for the API


def test_attack_is_reproducible_and_overrides_apply(explorer):
    image, cls = _image(explorer, 9)
    kw = dict(arch="alexnet", variants=["kwta-0.1"], attack="pgd", eps_255=6, true_class=cls, seed=1)
    a = explorer.attack(image, **kw, steps=3, step_size_255=2)
    b = explorer.attack(image, **kw, steps=3, step_size_255=2)
    assert torch.equal(a.models[0].adversarial, b.models[0].adversarial)
    assert a.models[0].result.true_prob.shape[0] == 4
    assert a.models[0].result.params["step_size"] == pytest.approx(2 / 255)


def test_unknown_label_attacks_each_models_own_prediction(explorer):
    image, _ = _image(explorer)
    out = explorer.attack(image, arch="alexnet", variants=["relu"], attack="fgsm", eps_255=2,
                          true_class="unknown")
    m = out.models[0]
    assert out.label is None and m.label == int(m.clean_probs.argmax())


def test_targeted_attack_needs_and_uses_a_target(explorer):
    image, cls = _image(explorer)
    target = "ship" if cls != "ship" else "truck"
    with pytest.raises(ValueError, match="targeted attack: pick a target"):
        explorer.attack(image, arch="alexnet", variants=["relu"], attack="vga", eps_255=8, true_class=cls)
    out = explorer.attack(image, arch="alexnet", variants=["relu"], attack="vga", eps_255=8,
                          true_class=cls, target_class=target, steps=2)
    assert out.target == 8 or out.target == 9
    assert bool(out.models[0].result.params["targeted"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(eps_255=0), "epsilon must lie"),
    (dict(eps_255=65), "epsilon must lie"),
    (dict(eps_255=float("nan")), "finite"),
    (dict(eps_255="lots"), "number"),
    (dict(attack="nope"), "unknown attack"),
    (dict(preset="fastest"), "unknown preset"),
    (dict(arch="vgg"), "unknown architecture"),
    (dict(variants=[]), "no model selected"),
    (dict(variants=["kwta-0.3"]), "unknown model variant"),
    (dict(steps=10_000), "steps must be a whole number in 1..200"),
    (dict(steps=2.5), "whole number"),
    (dict(step_size_255=-1), "step size must lie"),
    (dict(true_class="cat", target_class="cat"), "target class is the true class"),
    (dict(target_class="unicorn"), "unknown target class"),
    (dict(attack="deepfool", target_class="ship"), "untargeted"),
    (dict(seed=-1), "seed"),
])
def test_attack_inputs_are_validated(explorer, kwargs, message):
    image, _ = _image(explorer)
    args = dict(arch="alexnet", variants=["relu"], attack="pgd", preset="interactive", eps_255=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        explorer.attack(image, **args)


def test_bad_upload_is_a_user_error(explorer):
    with pytest.raises(ValueError, match="not an image"):
        explorer.attack(b"\x00\x01", arch="alexnet", variants=["relu"], attack="fgsm", eps_255=8)


def test_time_limit_stops_a_request(assets):
    ex = Explorer(ModelCache("cpu"), limits=Limits(time_limit_s=-1))
    with pytest.raises(TimeoutError, match="limit"):
        ex.attack(Image.new("RGB", (32, 32)), arch="alexnet", variants=["relu"], attack="fgsm", eps_255=8)


def test_attack_controls_follow_the_registry():
    pgd = attack_controls("pgd", "report")
    assert {"interactive", "paper", "report"} <= set(pgd.presets)
    assert pgd.has_steps and pgd.has_step_size and pgd.eps_255 == pytest.approx(0.031 * 255)
    assert "report" in pgd.note
    assert attack_controls("vga").targeted == "required"
    assert attack_controls("deepfool").targeted == "no"
    with pytest.raises(ValueError, match="unknown attack"):
        attack_controls("nope")


def test_model_names_are_canonical_and_ordered():
    assert model_names("ResNet18", ["k-WTA γ=0.1", "ReLU"]) == ["resnet18-relu", "resnet18-kwta-0.1"]
    assert model_names("alexnet", "kwta-0.2") == ["alexnet-kwta-0.2"]


# ---------------------------------------------------------------- activations


def test_activation_maps_compare_clean_and_adversarial(explorer):
    image, cls = _image(explorer)
    out = explorer.attack(image, arch="alexnet", variants=["relu", "kwta-0.1"], attack="fgsm",
                          eps_255=8, true_class=cls)
    view = explorer.activations(out.state(), "features.6")
    assert view.layer.name == "features.6" and view.layer.shape == (192, 16, 16)
    stats = {s["model"]: s for s in view.stats}
    kwta = stats["alexnet-kwta-0.1"]
    assert 0.1 <= kwta["active_clean"] < 0.11  # gamma of the units win (ties may add a few)
    assert 0.0 <= kwta["flipped"] <= 1.0
    assert stats["alexnet-relu"]["active_clean"] > 0.2  # ReLU is far less sparse
    assert set(view.maps) == {"alexnet-relu", "alexnet-kwta-0.1"}
    clean, adv = view.maps["alexnet-kwta-0.1"]
    assert clean.shape == adv.shape and round(active_share(clean), 4) == kwta["active_clean"]
    heat = viz.activation_heatmaps(view.maps, layer=view.layer.name)
    assert len(heat.data) == 4 and len(viz.channel_grid(view.maps, layer=view.layer.name).data) == 4
    default = explorer.activations(out.state())
    assert default.layer.name == comparable_layers("alexnet")[0].name


def test_activation_requests_are_validated(explorer):
    with pytest.raises(ValueError, match="run an attack first"):
        explorer.activations(None, "features.2")
    state = {"arch": "alexnet", "clean": torch.rand(3, 32, 32),
             "adversarial": {"alexnet-relu": torch.rand(3, 32, 32)}}
    with pytest.raises(ValueError, match="unknown layer"):
        explorer.activations(state, "layer1.0.act1")


def test_comparable_layers_are_those_kwta_replaces():
    names = [l.name for l in comparable_layers("resnet18")]
    assert len(names) == 16 and "stem_act" not in names and names[0] == "layer1.0.act1"
    assert [l.name for l in comparable_layers("alexnet")][-2:] == ["classifier.2", "classifier.5"]


def test_active_and_flipped_shares():
    clean = torch.tensor([1.0, 0.0, -2.0, 3.0])
    adv = torch.tensor([0.0, 1.0, -2.0, 0.0])
    assert active_share(clean) == 0.75
    assert flipped_share(clean, adv) == pytest.approx(2 / 3)
    assert math.isnan(flipped_share(torch.zeros(3), torch.ones(3)))


# ---------------------------------------------------------------- sweep


def test_sweep_accuracy_vs_eps(explorer):
    calls = []
    out = explorer.sweep(arch="alexnet", variants=["relu", "kwta-0.1"], attack="fgsm",
                         eps_255="8, 0", n=6, seed=2, progress=lambda f, d: calls.append(f))
    assert out.eps_255 == [0.0, 8.0] and set(out.accuracy) == {"alexnet-relu", "alexnet-kwta-0.1"}
    from kwta_demo.data.cifar10 import evaluation_sample, load_cifar10
    from kwta_demo.evaluation.accuracy import robust_accuracy

    subset, index = evaluation_sample(load_cifar10("test"), 6, 2)  # the evaluation's own images
    for name, accs in out.accuracy.items():
        model = explorer.cache.get(name)
        with torch.no_grad():
            clean = (model(subset.images.float() / 255).argmax(1) == subset.labels)
        assert accs[0] == pytest.approx(float(clean.float().mean()))  # eps 0 = clean accuracy
        assert accs[1] <= accs[0]  # FGSM never helps (a correct image stays wrong or flips)
        # the same number the evaluation path gives on the same images and seed
        expected = robust_accuracy(model, subset.images, subset.labels, "fgsm", eps=8 / 255,
                                   preset="interactive", seed=2,
                                   batch_size=explorer.limits.sweep_batch,
                                   indices=index)["robust_acc"]
        assert accs[1] == expected
    assert calls == sorted(calls) and calls[-1] == 1.0
    assert len(out.rows()) == 4
    assert len(viz.robustness_curves(out.eps_255, out.accuracy, n=out.n).data) == 2


def test_sweep_inputs_are_validated(explorer):
    base = dict(arch="alexnet", variants=["relu"], attack="fgsm", eps_255="0, 4", n=4)
    for kwargs, message in [
        (dict(n=0), "number of images"), (dict(n=10_000), "number of images"),
        (dict(eps_255=""), "at least one epsilon"), (dict(eps_255="1, x"), "number"),
        (dict(eps_255="-1"), "each epsilon"), (dict(eps_255=",".join(map(str, range(20)))), "at most"),
        (dict(attack="nope"), "unknown attack"),
    ]:
        with pytest.raises(ValueError, match=message):
            explorer.sweep(**{**base, **kwargs})


def test_parse_eps_list():
    assert parse_eps_list("8, 2; 4 2") == [2.0, 4.0, 8.0]
    assert parse_eps_list([0, 1]) == [0.0, 1.0]


def test_sweep_without_data_says_so(assets, tmp_path):
    ex = Explorer(ModelCache("cpu"), data_source=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="needs CIFAR-10"):
        ex.sweep(arch="alexnet", variants=["relu"], attack="fgsm", eps_255="0", n=2)


# ---------------------------------------------------------------- reproduction


def test_reproduction_tables_say_plainly_what_is_missing(tmp_path):
    text = reproduction_markdown(tmp_path / "results", tmp_path / "ckpt")
    assert "do not exist yet" in text and "not measured yet" in text
    assert "381 s" in text and "735 s" in text  # the report's Table 3


def test_a_fresh_clone_shows_the_shipped_gallery_sample(monkeypatch, tmp_path):
    """No CIFAR-10 configured and none found: the 100 shipped test images, with their
    test-split indices; a configured source that is missing is an error, not the sample."""
    from kwta_demo.data import cifar10 as data
    from kwta_demo.data.cifar10 import GALLERY_SAMPLE

    monkeypatch.delenv("KWTA_CIFAR10", raising=False)
    monkeypatch.setattr(data, "_search_paths", lambda: [tmp_path / "nothing-here"])
    data.clear_cache()
    ex = Explorer(ModelCache("cpu"), gallery_per_class=10)
    gallery = ex.gallery()
    assert len(gallery.images) == 100 and "shipped with the app" in gallery.message
    index = json.loads((GALLERY_SAMPLE / "index.json").read_text())
    shipped = sorted(p.stem for p in GALLERY_SAMPLE.glob("test/*/*.png"))
    assert sorted(f"{i:05d}" for i in index) == shipped
    assert all(f"(test #{i})" in " ".join(gallery.captions) for i in index[:5])
    assert sum(p.stat().st_size for p in GALLERY_SAMPLE.rglob("*") if p.is_file()) < 1_000_000
    missing = Explorer(ModelCache("cpu"), data_source=str(tmp_path / "gone"))
    assert missing.gallery().images == [] and "gone" in missing.gallery().message


# ---------------------------------------------------------------- audit


def test_the_last_attack_can_be_audited(explorer):
    image, cls = _image(explorer)
    out = explorer.attack(image, arch="alexnet", variants=["relu", "kwta-0.1"], attack="pgd",
                          preset="interactive", eps_255=8, steps=3, true_class=None)
    audited = explorer.audit_last(out.state())
    assert [a.model for a in audited.audits] + list(audited.errors) == ["alexnet-relu", "alexnet-kwta-0.1"]
    for a in audited.audits:
        keys = [c.key for c in a.checks]
        assert keys == ["audited", "unbounded", "more_steps", "gradient_free", "transfer", "gradients"]
        assert a.eps == pytest.approx(8 / 255) and a.n == 1 and a.verdict
    relu = audited.audits[0]
    assert {c.key: c for c in relu.checks}["transfer"].flagged is None  # the twin is itself
    assert {c.key: c for c in audited.audits[1].checks}["transfer"].flagged is not None
    rows = audited.rows()
    assert len(rows) == 12 and rows[0][0] == "alexnet-relu" and rows[0][2] in ("yes", "no", "—")
    with pytest.raises(ValueError, match="run an attack first"):
        explorer.audit_last(None)


def test_an_audit_over_test_images(explorer):
    out = explorer.audit_images(arch="alexnet", variants=["kwta-0.1"], attack="fgsm", preset="paper",
                                eps_255=8, n=10, seed=0)
    if out.audits:
        (a,) = out.audits
        assert 1 <= a.n <= 10 and {c.key for c in a.checks} >= {"unbounded", "gradient_free"}
        assert {c.key: c for c in a.checks}["more_steps"].flagged is None  # FGSM has no steps
    else:  # a random model may get none of them right
        assert "nothing to audit" in out.errors["alexnet-kwta-0.1"]
    with pytest.raises(ValueError, match="targeted"):
        explorer.audit_images(arch="alexnet", variants=["relu"], attack="vga", preset="paper",
                              eps_255=8, n=4)
    with pytest.raises(ValueError):
        explorer.audit_images(arch="alexnet", variants=["relu"], attack="pgd", preset="paper",
                              eps_255=8, n=0)


def test_transfer_matrix_of_the_last_attack_and_over_images(explorer):
    image, _ = _image(explorer)
    out = explorer.attack(image, arch="alexnet", variants=["relu", "kwta-0.1"], attack="fgsm",
                          preset="paper", eps_255=8, true_class=None)
    matrix, errors = explorer.transfer_last(out.state())
    assert matrix.sources == ("alexnet-relu", "alexnet-kwta-0.1", "alexnet-kwta-0.1 (BPDA)")
    assert matrix.targets == ("alexnet-relu", "alexnet-kwta-0.1") and not errors
    assert all(v in (0.0, 1.0) or math.isnan(v) for row in matrix.rates for v in row)
    over, _ = explorer.transfer_images(arch="alexnet", variants=["relu", "kwta-0.2"], attack="fgsm",
                                       preset="paper", eps_255=8, n=6, seed=1)
    assert over.targets == ("alexnet-relu", "alexnet-kwta-0.2") and len(over.sources) == 3
    with pytest.raises(ValueError, match="run an attack first"):
        explorer.transfer_last({})


def test_the_png_is_the_8bit_image_inside_the_ball_and_is_checked_again(explorer):
    from kwta_demo.app.outcomes import quantise_8bit

    clean = torch.randint(0, 256, (1, 3, 32, 32)).float() / 255
    adv = (clean + (torch.rand_like(clean) - 0.5) * 0.1).clamp(0, 1)
    q = quantise_8bit(adv, clean, 4 / 255)
    assert torch.equal(q * 255, torch.round(q * 255))  # on the 8-bit grid
    assert float((q - clean).abs().max()) <= 4 / 255 + 1e-7 and 0 <= float(q.min()) <= float(q.max()) <= 1
    image, _ = _image(explorer)
    out = explorer.attack(image, arch="alexnet", variants=["relu"], attack="pgd", preset="interactive",
                          eps_255=8, true_class=None)
    (m,) = out.models
    assert torch.equal(m.adv_8bit, quantise_8bit(m.result.adversarial, out.image.tensor.unsqueeze(0),
                                                 8 / 255)[0])
    model = explorer.cache.get("alexnet-relu")
    with torch.no_grad():
        pred = int(model(m.adv_8bit.unsqueeze(0)).argmax(1)[0])
    assert m.fools_8bit == (pred != m.label) and m.summary()["success_8bit"] == m.fools_8bit


def test_a_receipt_replays_bit_identically(explorer):
    from kwta_demo.app.receipts import read_tensors, replay_arguments

    image, cls = _image(explorer)
    out = explorer.attack(image, arch="alexnet", variants=["relu", "kwta-0.1"], attack="pgd",
                          preset="interactive", eps_255=8, steps=4, true_class=cls, seed=3)
    document, blob = explorer.receipt(out)
    document = json.loads(json.dumps(document))  # it is plain JSON
    assert document["seed"] == 3 and document["overrides"] == {"steps": 4}
    assert all(m["weights_sha256"] and len(m["weights_sha256"]) == 64 for m in document["models"])
    assert document["versions"]["torch"] == torch.__version__
    tensors = read_tensors(blob)
    again = explorer.attack(**replay_arguments(document))
    assert torch.equal(again.image.tensor, tensors["clean"])
    for m in again.models:
        assert torch.equal(m.adversarial, tensors[f"adversarial/{m.name}"])
        assert torch.equal(m.adv_8bit, tensors[f"adversarial_8bit/{m.name}"])
    with pytest.raises(ValueError, match="not a receipt"):
        replay_arguments({"format": "something else"})


def test_a_replay_query_sets_up_the_same_click(explorer):
    from kwta_demo.app.replay import parse_replay, replay_query

    gallery = explorer.gallery()
    index = gallery.indices[3]
    image, cls = explorer.test_image(index)
    assert np.array_equal(image, gallery.images[3]) and cls == CIFAR10_CLASSES[gallery.labels[3]]
    out = explorer.attack(image, arch="alexnet", variants=["relu", "kwta-0.1"], attack="pgd",
                          preset="interactive", eps_255=6, steps=3, true_class=cls, seed=4)
    query = replay_query(out, index)
    from urllib.parse import parse_qsl

    replay = parse_replay(dict(parse_qsl(query[1:])))
    again = explorer.attack(explorer.test_image(replay.pop("test"))[0], **replay)
    for a, b in zip(out.models, again.models):
        assert torch.equal(a.adversarial, b.adversarial)
    assert parse_replay({}) is None
    for bad in ({"test": "x"}, {"test": "1", "arch": "vgg"}, {"test": "1", "colour": "red"},
                {"test": "1", "eps": "nan"}, {"test": "1", "true": "cow"}):
        with pytest.raises(ValueError):
            parse_replay(bad)
    with pytest.raises(ValueError, match="not in"):
        explorer.test_image(99_999)


def test_the_landscape_of_the_last_attack(explorer):
    image, _ = _image(explorer)
    out = explorer.attack(image, arch="alexnet", variants=["relu", "kwta-0.1"], attack="fgsm",
                          preset="paper", eps_255=8, true_class=None)
    view = explorer.landscape(out.state(), points=5, plane_points=3)
    lines = view.lines
    figure = viz.landscape_figure(view.lines, view.planes, view.radius)
    assert set(lines) == {"alexnet-relu", "alexnet-kwta-0.1"}
    assert set(lines["alexnet-kwta-0.1"]) == {"gradient sign", "random", "attack"} or \
        set(lines["alexnet-kwta-0.1"]) == {"gradient sign", "random"}
    assert lines["alexnet-relu"]["random"].alphas[0] == pytest.approx(-16 / 255)
    assert figure.layout.title.text.startswith("Loss landscape")
    # ReLU's winner panel says why it is empty; k-WTA's has its curve
    notes = [a for a in figure.layout.annotations if a.text == "no k-WTA layers: no winners to change"]
    assert len(notes) == 1 and (notes[0].xref, notes[0].yref) == ("paper", "paper")
    lo, hi = figure.layout.xaxis2.domain  # row 1, column 2
    assert lo < notes[0].x < hi and figure.layout.yaxis2.domain[0] < notes[0].y
    assert any(t.type == "scatter" and t.xaxis == "x5" for t in figure.data)  # row 2, column 2
    with pytest.raises(ValueError, match="run an attack first"):
        explorer.landscape(None)


def test_the_winner_flip_atlas_follows_the_attack(explorer):
    from kwta_demo.attacks import run_attack
    from kwta_demo.attacks.gradient import recording_iterates
    from kwta_demo.models.activations import capture_activations, flipped_share

    image, _ = _image(explorer)
    out = explorer.attack(image, arch="alexnet", variants=["kwta-0.1"], attack="pgd",
                          preset="interactive", eps_255=8, steps=4, true_class=None, seed=2)
    atlas = explorer.atlas(out.state())
    figure = viz.atlas_figure(atlas)
    a = atlas["alexnet-kwta-0.1"]
    assert a["per_step"] and len(a["shares"]) == 5 and len(a["layers"]) == 7  # start + 4 steps
    assert all(0.0 <= v <= 1.0 for row in a["shares"] for v in row)  # iterate 0: the random start
    # recompute one cell by hand: the iterates of the same attack, the same capture
    model = explorer.cache.get("alexnet-kwta-0.1")
    x = out.image.tensor.unsqueeze(0)
    with recording_iterates() as its:
        again = run_attack("pgd", model, x, torch.tensor([out.models[0].label]), eps=8 / 255,
                           preset="interactive", seed=2, steps=4)
    assert torch.equal(again.adversarial[0], out.models[0].adversarial)  # the same attack
    acts = capture_activations(model, torch.cat([x, its[3]]), [a["layers"][2]])
    assert a["shares"][3][2] == flipped_share(acts[a["layers"][2]][0], acts[a["layers"][2]][1])
    assert a["true_prob"] == out.models[0].result.true_prob[:, 0].tolist()
    assert figure.layout.title.text.startswith("Winner-flip atlas")


def test_the_slot_caption_never_contradicts_the_verdict():
    """What a slot says of the 8-bit PNG agrees with the attack's verdict, and blames k-WTA's
    winners only on a k-WTA model."""
    from kwta_demo.app.ui import png_caption

    assert png_caption(True, True, kwta=False).endswith("fools it too.")
    relu = png_caption(True, False, kwta=False)
    assert "does **not** fool it" in relu and "k-WTA" not in relu
    assert "k-WTA model's winners" in png_caption(True, False, kwta=True)
    never = png_caption(False, False, kwta=True)
    assert "either" in never and "any more" not in never
    assert "where the attack did not" in png_caption(False, True, kwta=False)
