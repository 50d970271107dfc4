"""Loss-landscape slices, checked against a direct computation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kwta_demo import build_model
from kwta_demo.evaluation.landscape import directions, line_slice, plane_slice


def test_slices_match_a_direct_computation():
    torch.manual_seed(0)
    model = build_model("alexnet", "kwta", 0.1).eval()
    image = torch.rand(3, 32, 32)
    label = int(model(image.unsqueeze(0)).argmax(1))
    dirs = directions(model, image, label, seed=1, adversarial=(image + 0.02).clamp(0, 1))
    assert set(dirs) == {"gradient sign", "random", "attack"}
    assert all(float(d.abs().max()) == 1.0 for d in dirs.values())
    line = line_slice(model, image, label, dirs["random"], radius=0.05, points=5)
    assert line.alphas[2] == 0.0
    x = (image + 0.025 * dirs["random"]).clamp(0, 1).unsqueeze(0)
    with torch.no_grad():
        logits = model(x)
    assert abs(line.loss[3] - float(F.cross_entropy(logits, torch.tensor([label])))) < 1e-5
    others = logits.clone()
    others[0, label] = float("-inf")
    assert abs(line.margin[3] - float(logits[0, label] - others.max())) < 1e-5
    assert len(line.hamming) == 7 and all(v[2] == 0.0 for v in line.hamming.values())  # clean: no change
    assert any(v[0] > 0 for v in line.hamming.values())
    plane = plane_slice(model, image, label, dirs["gradient sign"], dirs["random"], radius=0.05,
                        points=3)
    assert plane.shape == (3, 3) and abs(float(plane[1, 1]) - line.loss[2]) < 1e-5
    with torch.no_grad():
        corner = (image - 0.05 * dirs["gradient sign"] + 0.05 * dirs["random"]).clamp(0, 1)
        expected = F.cross_entropy(model(corner.unsqueeze(0)), torch.tensor([label]))
    assert abs(float(plane[2, 0]) - float(expected)) < 1e-5  # rows follow the random axis


def test_relu_models_have_no_winner_changes_to_count():
    torch.manual_seed(0)
    model = build_model("alexnet").eval()
    image = torch.rand(3, 32, 32)
    dirs = directions(model, image, 0)
    assert line_slice(model, image, 0, dirs["gradient sign"], radius=0.03, points=3).hamming == {}
