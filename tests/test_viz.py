"""Figures and display images: pure functions of tensors, checked on their numbers."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from kwta_demo.app import viz
from kwta_demo.models.architectures import CIFAR10_CLASSES


def test_image_array_is_exact_for_8bit_values_and_survives_png():
    pixels = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    array = viz.image_array(pixels.float() / 255)
    assert array.shape == (32, 32, 3) and array.dtype == np.uint8
    assert np.array_equal(array, pixels.permute(1, 2, 0).numpy())
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")  # what the app sends: lossless
    assert np.array_equal(np.asarray(Image.open(buf)), array)


def test_image_array_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="3, H, W"):
        viz.image_array(torch.zeros(1, 32, 32))


def test_perturbation_is_amplified_around_gray_with_its_scale():
    delta = torch.zeros(3, 4, 4)
    delta[0, 0, 0], delta[1, 1, 1], delta[2, 2, 2] = 0.02, -0.02, 0.01
    array, scale = viz.perturbation_array(delta)
    assert scale == pytest.approx(0.02)
    assert array[0, 0, 0] == 255 and array[1, 1, 1] == 0  # +-scale -> white / black
    assert array[2, 2, 2] == round(255 * 0.75)  # half the scale -> three quarters
    assert array[3, 3, 0] == 128  # zero -> mid-gray


def test_zero_perturbation_is_flat_gray_with_scale_zero():
    array, scale = viz.perturbation_array(torch.zeros(3, 8, 8))
    assert scale == 0.0 and (array == 128).all()


def test_prediction_bars_carry_both_distributions_and_mark_classes():
    clean = torch.softmax(torch.randn(10), 0)
    adv = torch.softmax(torch.randn(10), 0)
    fig = viz.prediction_bars(clean, adv, true_label=3, target=5, title="m")
    assert [t.name for t in fig.data] == ["clean", "adversarial"]
    assert np.allclose(fig.data[0].y, clean.numpy()) and np.allclose(fig.data[1].y, adv.numpy())
    assert "(true)" in fig.data[0].x[3] and CIFAR10_CLASSES[3] in fig.data[0].x[3]
    assert "(target)" in fig.data[0].x[5]
    with pytest.raises(ValueError, match="10 probabilities"):
        viz.prediction_bars(clean[:9], adv)


def test_attack_traces_switch_between_probability_and_loss():
    probs = {"resnet18-relu": torch.linspace(0.9, 0.1, 11), "resnet18-kwta-0.1": torch.rand(11)}
    losses = {k: -torch.log(v) for k, v in probs.items()}
    fig = viz.attack_traces(probs, losses)
    assert len(fig.data) == 4
    assert [t.visible for t in fig.data] == [None, None, False, False]  # probability first
    assert np.allclose(fig.data[0].y, probs["resnet18-relu"].numpy())
    assert np.allclose(fig.data[3].y, losses["resnet18-kwta-0.1"].numpy())
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.args[0]["visible"] for b in buttons] == [[True, True, False, False], [False, False, True, True]]
    assert fig.data[0].line.color != fig.data[1].line.color


def test_figures_serialise_as_plain_json_lists():
    """No binary-encoded arrays: the plotly.js bundled with Gradio must read them as is."""
    fig = viz.attack_traces({"a": np.arange(5.0)}, {"a": np.arange(5.0)})
    text = fig.to_json()
    assert "bdata" not in text
    assert json.loads(text)["data"][0]["y"] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_heatmaps_sum_absolute_activations_over_channels():
    clean = torch.zeros(4, 6, 6)
    clean[0, 1, 2], clean[3, 1, 2] = 2.0, -1.0  # k-WTA winners may be negative
    adv = torch.ones(4, 6, 6)
    fig = viz.activation_heatmaps({"m": (clean, adv)}, layer="layer1.0.act1")
    z_clean, z_adv = (np.asarray(t.z)[::-1] for t in fig.data)  # rows are flipped for display
    assert z_clean.shape == (6, 6) and z_clean[1, 2] == 3.0 and z_clean.sum() == 3.0
    assert (z_adv == 4.0).all()
    assert fig.data[0].zmax == fig.data[1].zmax == 4.0  # one scale per row


def test_heatmaps_show_fully_connected_layers_as_a_square():
    fig = viz.activation_heatmaps({"m": (torch.arange(10.0), torch.zeros(10))})
    z = np.asarray(fig.data[0].z, dtype=float)[::-1]
    assert z.shape == (4, 4)
    assert np.array_equal(z.ravel()[:10], np.arange(10.0)) and np.isnan(z.ravel()[10:]).all()


def test_channel_grid_tiles_the_strongest_clean_channels_first():
    clean = torch.zeros(20, 3, 3)
    clean[7] = 5.0
    clean[2] = 1.0
    adv = torch.rand(20, 3, 3)
    fig = viz.channel_grid({"m": (clean, adv)}, n_channels=4)
    mosaic = np.asarray(fig.data[0].z, dtype=float)[::-1]
    assert mosaic.shape == (2 * 4 - 1, 2 * 4 - 1)  # 2x2 tiles of 3x3 with 1-pixel gutters
    assert (mosaic[:3, :3] == 5.0).all()  # channel 7 first
    assert (mosaic[:3, 4:] == 1.0).all()  # then channel 2
    assert np.isnan(mosaic[3]).all()  # gutter
    adv_mosaic = np.asarray(fig.data[1].z, dtype=float)[::-1]
    assert np.allclose(adv_mosaic[:3, :3], adv[7].numpy())  # same channels for the adversarial


def test_empty_inputs_give_a_message_figure():
    fig = viz.activation_heatmaps({})
    assert fig.layout.annotations[0].text == "No activations to show"


def test_robustness_curves_one_line_per_model():
    fig = viz.robustness_curves([0, 2, 8], {"resnet18-relu": [0.9, 0.4, 0.0],
                                            "resnet18-kwta-0.1": [0.85, 0.6, 0.3]}, n=50)
    assert [t.name for t in fig.data] == ["resnet18-relu", "resnet18-kwta-0.1"]
    assert list(fig.data[1].y) == [0.85, 0.6, 0.3] and list(fig.data[0].x) == [0, 2, 8]
    assert "50 test images" in fig.layout.title.text
