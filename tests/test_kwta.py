"""k-WTA against a plain, loop-based reference of the authors' semantics."""

import pytest
import torch
import torchvision
from torch import nn

from kwta_demo import KWTA, kwta_reference, kwta_to_relu, relu_to_kwta
from kwta_demo.models.kwta import num_winners


def plain_kwta(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per sample: sort descending, threshold = k-th value, keep everything >= it."""
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        row = x[i].flatten()
        k = max(1, int(gamma * row.numel()))
        threshold = sorted(row.tolist(), reverse=True)[k - 1]
        out[i] = torch.where(x[i] >= threshold, x[i], torch.zeros_like(x[i]))
    return out


@pytest.mark.parametrize("shape", [(3, 4, 5, 5), (2, 17), (1, 1), (5, 3, 2)])
@pytest.mark.parametrize("gamma", [0.05, 0.1, 0.2, 0.5, 1.0])
def test_matches_plain_reference(shape, gamma):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    expected = plain_kwta(x, gamma)
    assert torch.equal(KWTA(gamma)(x), expected)
    assert torch.equal(kwta_reference(x, gamma), expected)


def test_exactly_k_survive_without_ties():
    x = torch.randn(4, 8, 6, 6)  # continuous values: no ties, and no winner is exactly 0
    gamma = 0.2
    out = KWTA(gamma)(x)
    k = num_winners(gamma, 8 * 6 * 6)
    assert k == 57
    assert (out.flatten(1) != 0).sum(1).tolist() == [k] * 4
    # the survivors are the k largest of each sample
    top = x.flatten(1).topk(k, dim=1).values
    assert torch.equal(out.flatten(1).sort(1, descending=True).values[:, :k], top)


def test_ties_keep_more_than_k_like_the_reference():
    x = torch.tensor([[3.0, 1.0, 1.0, 1.0, 0.5]])
    # gamma 0.4 -> k = 2, threshold = 1.0, three elements tie at it: four survive
    assert KWTA(0.4)(x).tolist() == [[3.0, 1.0, 1.0, 1.0, 0.0]]


def test_negative_winners_survive():
    # fewer than k positive units: k-WTA keeps negative winners, unlike ReLU
    x = torch.tensor([[-1.0, -2.0, -3.0, 4.0]])
    assert KWTA(0.5)(x).tolist() == [[-1.0, 0.0, 0.0, 4.0]]


def test_gamma_edges():
    x = torch.randn(2, 10)
    assert torch.equal(KWTA(1.0)(x), x)  # everything survives
    tiny = KWTA(1e-6)(x)  # k = floor(1e-5) -> at least 1
    assert (tiny != 0).sum(1).tolist() == [1, 1]
    assert torch.equal(tiny.abs().sum(1), x.max(1).values.abs())


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), float("inf"), "a", None])
def test_bad_gamma_is_a_value_error(bad):
    with pytest.raises(ValueError, match="gamma"):
        KWTA(bad)


def test_needs_a_batch_dimension():
    with pytest.raises(ValueError, match="batch"):
        KWTA(0.5)(torch.randn(5))


def test_gradient_is_mask_times_upstream():
    x = torch.randn(3, 2, 4, 4, requires_grad=True)
    upstream = torch.randn(3, 2, 4, 4)
    out = KWTA(0.25)(x)
    (grad,) = torch.autograd.grad(out, x, upstream)
    mask = (plain_kwta(x.detach(), 0.25) != 0).float()
    assert torch.equal(grad, mask * upstream)


def test_inplace_matches_and_backprops():
    x = torch.randn(2, 3, 4, 4)
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    out_a = KWTA(0.3)(a * 1.0)
    out_b = KWTA(0.3, inplace=True)(b * 1.0)
    assert torch.equal(out_a, out_b)
    out_a.sum().backward()
    out_b.sum().backward()
    assert torch.equal(a.grad, b.grad)


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def test_swap_torchvision_resnet18_and_back():
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.rand(2, 3, 64, 64)
    before = model(x)
    relus = _count(model, nn.ReLU)
    assert relu_to_kwta(model, 0.1) == relus == 9  # stem + one shared ReLU per block
    assert _count(model, nn.ReLU) == 0 and _count(model, KWTA) == relus
    kwta_out = model(x)
    assert not torch.allclose(kwta_out, before)
    # the shared module is still shared: every block's relu is one KWTA
    assert model.layer1[0].relu.gamma == 0.1
    assert kwta_to_relu(model) == relus
    assert torch.equal(model(x), before)


def test_swap_torchvision_alexnet_sparsity():
    model = torchvision.models.alexnet(weights=None, num_classes=10).eval()
    assert relu_to_kwta(model, 0.2) == 7
    seen = []
    for m in model.modules():
        if isinstance(m, KWTA):
            m.register_forward_hook(lambda _m, _i, out: seen.append((out != 0).float().mean().item()))
    model(torch.rand(2, 3, 224, 224))
    assert len(seen) == 7
    assert all(0.19 <= s <= 0.21 for s in seen), seen  # really k-WTA, not ReLU


def test_swap_gives_an_existing_kwta_the_new_gamma():
    model = nn.Sequential(nn.Linear(4, 4), KWTA(0.5))
    assert relu_to_kwta(model, 0.25) == 1
    assert model[1].gamma == 0.25
