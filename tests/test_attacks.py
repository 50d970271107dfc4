"""The attack suite on tiny CPU models: bounds, power, agreement with foolbox, masking,
reproducibility, model state and parameter validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kwta_demo.attacks import (
    ATTACKS,
    MAX_STEPS,
    PRESETS,
    AttackParameterError,
    bpda_surrogate,
    run_attack,
)
from kwta_demo.attacks.base import ImageStreams, batch_seeds
from kwta_demo.evaluation.accuracy import robust_accuracy, vga_statistics
from kwta_demo.models.kwta import KWTA

EPS = 0.1  # the synthetic task's classes are ~0.3 apart per pixel: eps=0.1 is enough
TOL = 1e-6  # float rounding of x0 + clip(x - x0)


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- toy data and models


def make_data(n: int, seed: int, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten fixed random 3x8x8 templates plus Gaussian noise: an easy, separable task."""
    templates = 0.2 + 0.6 * torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(1234))
    labels = torch.arange(n) % 10
    noise_ = noise * torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return (templates[labels] + noise_).clamp(0, 1), labels


def tiny_net(act=nn.ReLU) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), act(), nn.Conv2d(8, 16, 3, stride=2, padding=1), act(),
        nn.Flatten(), nn.Linear(256, 32), act(), nn.Linear(32, 10),
    )


@pytest.fixture(scope="module")
def relu_model() -> nn.Module:
    torch.manual_seed(0)
    model = tiny_net()
    x, y = make_data(300, 0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):  # full batch: well under a second
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def batch(relu_model) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make_data(20, 1)
    with torch.no_grad():
        assert (relu_model(x).argmax(1) == y).float().mean() >= 0.95  # the toy task is learnt
    return x, y


@pytest.fixture(scope="module")
def kwta_model() -> nn.Module:
    torch.manual_seed(1)
    return tiny_net(lambda: KWTA(0.2)).eval()


def runner_up(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = model(x)
    return logits.scatter(1, y[:, None], float("-inf")).argmax(1)


class SawtoothKWTA(nn.Module):
    """A k-WTA toy whose gradient points away from the adversarial examples that exist.

    s = v.(x - 0.5)/D for a fixed sign pattern v. A linear layer computes tangent lines of
    the convex 1 + s + 5 s^2 at centres t_j = j * delta; k-WTA with k = 1 keeps the
    highest, i.e. the line of the tooth s is in. The read-out gives the tooth's margin
    (best other logit minus logit 0) a negative slope in s, while every tooth starts
    higher than the last: margin(s) is a rising staircase of falling teeth. At the clean
    images s = 0 and the margin is -2; it turns positive near s = +0.008, within eps =
    0.03. The exact gradient only sees the current tooth and sends s down, where the
    margin keeps falling; Gaussian probes of scale sigma / sqrt(D) ~ one tooth see the rise.
    This is gradient masking by k-WTA's winner switches, made deterministic.
    """

    def __init__(self, teeth=25, delta=0.002, omega=0.8, bias=2.0):
        super().__init__()
        v = torch.randint(0, 2, (192,), generator=torch.Generator().manual_seed(0)).double() * 2 - 1
        t = torch.arange(-teeth, teeth + 1, dtype=torch.float64) * delta
        slope = 1.0 + 10.0 * t
        intercept = (1.0 + t + 5.0 * t**2) - slope * t
        self.lines = nn.Linear(192, t.numel()).double()
        self.lines.weight.data = slope[:, None] * v[None, :] / 192
        self.lines.bias.data = intercept - slope * 0.5 * v.sum() / 192
        self.act = KWTA(1.0 / t.numel())  # k = 1
        at_left_edge = slope * (t - delta / 2) + intercept
        # the margin at the left edge of tooth j is bias - 2 * bias * omega^j
        readout = -2 * bias * omega ** (t / delta) / at_left_edge
        self.out = nn.Linear(t.numel(), 10).double()
        self.out.weight.data.zero_()
        self.out.weight.data[0] = -readout
        self.out.bias.data.fill_(-100.0)
        self.out.bias.data[0], self.out.bias.data[1] = -bias, 0.0
        self.register_buffer("v", v.float().view(1, 3, 8, 8))

    def s(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - 0.5) * self.v).flatten(1).sum(1) / 192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.lines(x.double().flatten(1)))).to(x.dtype)


@pytest.fixture(scope="module")
def sawtooth() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = SawtoothKWTA().eval()
    x = 0.5 + 0.15 * (2 * torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(1)) - 1)
    x = x - model.s(x)[:, None, None, None] * model.v  # put every image at s = 0
    return model, x, torch.zeros(12, dtype=torch.long)


def call(name: str, model, x, y, **kw):
    if ATTACKS[name].targeted == "required" and "target" not in kw:
        kw["target"] = runner_up(model, x, y)
    return run_attack(name, model, x, y, **kw)


# --------------------------------------------------------------------------- registry


def test_registry_has_the_contracted_attacks_and_presets():
    assert set(ATTACKS) == {"fgsm", "pgd", "deepfool", "cw", "vga", "gradient-estimation", "bpda",
                            "apgd-ce", "apgd-dlr", "square", "autoattack"}
    for name, presets in PRESETS.items():
        assert {"interactive", "paper"} <= set(presets), name
        for preset in presets:  # every preset resolves to valid parameters
            ATTACKS[name].resolve(preset, {})
    report = PRESETS["pgd"]["report"]
    assert report["steps"] == 40 and report["rel_step_size"] == 0.003
    assert ATTACKS["pgd"].preset_eps["report"] == 0.031


# --------------------------------------------------------------------------- every attack


ALL_RUNS = [(name, preset) for name in ATTACKS for preset in ("interactive", "paper")
            if (name, preset) not in {("cw", "paper"), ("gradient-estimation", "paper"),
                                      ("square", "paper")}]


@pytest.mark.parametrize("name,preset", ALL_RUNS)
def test_result_is_within_eps_and_bounds(relu_model, batch, name, preset):
    x, y = batch
    x, y = x[:6], y[:6]
    r = call(name, relu_model, x, y, eps=0.05, preset=preset, seed=1)
    assert r.adversarial.shape == x.shape and r.adversarial.dtype == x.dtype
    assert float((r.adversarial - x).abs().max()) <= 0.05 + TOL
    assert float(r.adversarial.min()) >= 0.0 and float(r.adversarial.max()) <= 1.0
    assert r.success.dtype == torch.bool and r.success.shape == (6,)
    assert r.losses.shape == r.true_prob.shape and r.losses.shape[1] == 6
    assert r.losses.shape[0] == (r.params["steps"] + 1 if r.params["per_step"] else 2)
    assert torch.isfinite(r.losses).all() and ((r.true_prob >= 0) & (r.true_prob <= 1)).all()
    delta = (r.adversarial - x).flatten(1)
    assert torch.allclose(r.linf, delta.abs().amax(1)) and torch.allclose(r.l2, delta.norm(dim=1))
    with torch.no_grad():
        assert torch.equal(r.clean_pred, relu_model(x).argmax(1))
        assert torch.equal(r.adv_pred, relu_model(r.adversarial).argmax(1))
    target = r.info.get("target")
    expected = r.adv_pred != y if target is None else r.adv_pred == target
    assert torch.equal(r.success, expected)
    assert r.attack == name and r.preset == preset and r.params["eps"] == 0.05


# Stronger settings where the interactive preset is deliberately weak (a click's budget).
POWER = {
    "vga": {"step_size": 0.01},
    "gradient-estimation": {"steps": 10, "samples": (50,), "milestones": None},
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attacks_succeed_far_more_often_than_chance(relu_model, batch, name):
    x, y = batch
    eps = 0.15
    corners = x + eps * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).sign()
    with torch.no_grad():
        chance = float((relu_model(corners.clamp(0, 1)).argmax(1) != y).float().mean())
    r = call(name, relu_model, x, y, eps=eps, preset="interactive", **POWER.get(name, {}))
    assert r.success_rate >= chance + 0.6, f"{name}: {r.success_rate:.2f} vs chance {chance:.2f}"


def test_nothing_succeeds_where_the_eps_ball_holds_no_adversarial(relu_model, batch):
    x, y = batch
    for name in ("pgd", "deepfool"):
        assert call(name, relu_model, x, y, eps=0.005).success_rate == 0.0


# --------------------------------------------------------------------------- PGD


def test_own_pgd_matches_foolbox_linf_pgd(relu_model, batch):
    import foolbox as fb

    x, y = batch
    fmodel = fb.PyTorchModel(relu_model, bounds=(0, 1))
    for eps, kw, fb_kw in [
        (0.05, {"step_size": 0.01, "steps": 10}, {"abs_stepsize": 0.01, "steps": 10}),
        (EPS, {"rel_step_size": 0.1, "steps": 15}, {"rel_stepsize": 0.1, "steps": 15}),
    ]:
        ours = run_attack(
            "pgd", relu_model, x, y, eps=eps, random_start=False, keep_best=False, **kw
        )
        attack = fb.attacks.LinfPGD(random_start=False, **fb_kw)
        _, theirs, success = attack(fmodel, x, y, epsilons=eps)
        assert torch.allclose(ours.adversarial, theirs, atol=1e-6)
        assert torch.equal(ours.success, success)
        backend = run_attack(
            "pgd", relu_model, x, y, eps=eps, random_start=False, keep_best=False,
            backend="foolbox", **kw,
        )
        assert torch.allclose(backend.adversarial, theirs, atol=1e-6)
        assert backend.losses.shape[0] == 2 and backend.params["per_step"] is False


def test_report_preset_barely_moves(relu_model, batch):
    x, y = batch
    report = run_attack("pgd", relu_model, x, y, eps=None, preset="report", random_start=False)
    assert report.params["eps"] == 0.031
    assert math.isclose(report.params["abs_step_size"], 0.003 * 0.031)
    assert float(report.linf.max()) <= 40 * 0.003 * 0.031 + TOL  # ~0.0037 of the 0.031 allowed
    corrected = run_attack(
        "pgd", relu_model, x, y, eps=0.031, preset="corrected", random_start=False
    )
    assert float(corrected.linf.max()) > 0.03


def test_losses_record_every_iterate(relu_model, batch):
    x, y = batch
    r = run_attack("pgd", relu_model, x, y, eps=EPS, steps=7, step_size=0.01, random_start=False)
    assert r.losses.shape == (8, 20)
    with torch.no_grad():
        logits = relu_model(x)
    assert torch.allclose(r.losses[0], F.cross_entropy(logits, y, reduction="none"), atol=1e-5)
    assert torch.allclose(r.true_prob[0], logits.softmax(1)[torch.arange(20), y], atol=1e-6)
    # The margin does not saturate like the cross-entropy of a confident model: it rises.
    m = run_attack("pgd", relu_model, x, y, eps=EPS, steps=7, step_size=0.01, loss="margin")
    assert (m.losses[-1] > m.losses[0]).all()


def test_already_misclassified_counts_as_success(relu_model, batch):
    x, y = batch
    wrong = (y + 1) % 10  # labels the model disagrees with
    r = run_attack("pgd", relu_model, x, wrong, eps=0.01, random_start=True)
    assert r.success.all()


# --------------------------------------------------------------------------- VGA


def test_vga_stops_at_the_target_and_counts_steps(relu_model, batch):
    x, y = batch
    target = runner_up(relu_model, x, y)
    r = run_attack("vga", relu_model, x, y, eps=EPS, target=target, step_size=0.01)
    steps = r.info["steps_to_success"]
    assert torch.equal(r.success, steps >= 0)
    assert torch.equal(r.adv_pred[r.success], target[r.success])
    assert r.losses.shape == (21, 20)
    done = r.success & (steps < 20)
    frozen = r.losses[steps[done], torch.arange(20)[done]]
    assert torch.allclose(r.losses[-1, done], frozen, atol=1e-5)  # stopped when reached
    assert math.isclose(r.params["step_l2"], 0.01 * math.sqrt(192))


def test_vga_statistics_cover_all_wrong_targets(relu_model, batch):
    x, y = batch
    seen = []
    stats = vga_statistics(
        relu_model, x[:4], y[:4], eps=EPS, preset="interactive", batch_size=12,
        progress=lambda done, total: seen.append((done, total)), step_size=0.01,
    )
    assert stats["n"] == 4 and stats["n_pairs"] == 36 and seen[-1] == (36, 36)
    assert 0 < stats["success_rate"] <= 1 and 0 <= stats["mean_steps"] <= 20
    assert len(stats["per_target"]) == 10


def test_report_vga_ascends_the_raw_logit_without_an_eps_ball(relu_model, batch):
    x, y = batch
    target = runner_up(relu_model, x, y)
    r = run_attack("vga", relu_model, x, y, eps=None, preset="report", target=target)
    assert r.params["eps"] == 1.0 and r.params["loss"] == "logit" and r.params["steps"] == 20
    # the report's L2 step of 10 on 3x224x224, as an RMS change per pixel
    assert math.isclose(r.params["step_size"], 10 / math.sqrt(3 * 224 * 224))
    with torch.no_grad():
        assert torch.allclose(r.losses[0], relu_model(x).gather(1, target[:, None])[:, 0], atol=1e-5)
    assert float(r.linf.max()) > 0.031  # no ball: it goes as far as it needs
    stats = vga_statistics(relu_model, x[:4], y[:4], eps=None, preset="report", batch_size=12)
    kept = stats["true_label_kept_rate"]
    assert 0 <= kept <= 1 - stats["success_rate"] + 1e-9  # a reached target is never the label


def test_logit_objective():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]])
    labels, target = torch.tensor([0, 1]), torch.tensor([2, 0])
    from kwta_demo.attacks.base import objective

    assert torch.equal(objective(logits, labels, None, "logit"), torch.tensor([-2.0, -3.0]))
    assert torch.equal(objective(logits, labels, target, "logit"), torch.tensor([0.5, 0.0]))


def test_derived_seeds_keep_runs_apart():
    from kwta_demo.attacks.base import check_seed, derived_seed

    seeds = {derived_seed(s, i) for s in range(20) for i in range(20)}
    assert len(seeds) == 400  # seed + index would give 39 distinct values
    assert derived_seed(3, 1) == derived_seed(3, 1) != derived_seed(1, 3)
    assert all(check_seed(v) == v for v in seeds)  # exact, even above 2**53


# --------------------------------------------------------------------------- adaptive attacks


def test_adaptive_attack_beats_pgd_on_kwta_toy(sawtooth):
    model, x, y = sawtooth
    eps = 0.03
    with torch.no_grad():
        assert (model(x).argmax(1) == 0).all()
        # adversarial examples exist: move every image along v by eps
        assert (model((x + eps * model.v).clamp(0, 1)).argmax(1) != 0).all()
    naive = [
        run_attack("pgd", model, x, y, eps=eps, preset="paper"),
        run_attack("pgd", model, x, y, eps=eps, preset="corrected", loss="margin"),
        run_attack("pgd", model, x, y, eps=eps, steps=100, rel_step_size=0.05),
        run_attack("fgsm", model, x, y, eps=eps),
    ]
    assert max(r.success_rate for r in naive) == 0.0  # the gradient leads away
    adaptive = run_attack(
        "gradient-estimation", model, x, y, eps=eps, steps=10, rel_step_size=0.2,
        samples=(20,), milestones=None,
    )
    assert adaptive.success_rate >= 0.9
    assert (model.s(adaptive.adversarial) > 0).all()  # it climbed the staircase


def test_gradient_estimate_points_along_the_true_gradient(relu_model, batch):
    from kwta_demo.attacks import estimate_gradient

    x, y = batch
    xg = x.clone().requires_grad_(True)
    logits = relu_model(xg)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    (true,) = torch.autograd.grad((other - logits[torch.arange(20), y]).sum(), xg)
    _, est = estimate_gradient(
        relu_model, x, y, None, loss="margin", samples=400, sigma=0.001,
        rng=ImageStreams(range(20), x.device), chunk_size=500,
    )
    cos = F.cosine_similarity(true.flatten(1), est.flatten(1))
    assert cos.mean() > 0.5  # 200 antithetic pairs in 192 dimensions


def test_bpda_replaces_only_the_kwta_backward(kwta_model):
    x = torch.randn(3, 16, 4, 4)
    act = KWTA(0.2)
    holder = nn.Sequential(act)
    exact = act(x)
    mask = (exact != 0).float()
    for surrogate, local in [("identity", torch.ones_like(x)), ("relu", (x > 0).float())]:
        xg = x.clone().requires_grad_(True)
        with bpda_surrogate(holder, surrogate) as swapped:
            out = holder(xg)
            (grad,) = torch.autograd.grad(out.sum(), xg)
        assert swapped == 1
        assert torch.equal(out, exact)  # the forward pass stays exact
        assert torch.equal(grad, local)
    xg = x.clone().requires_grad_(True)
    with bpda_surrogate(holder, "sigmoid", temperature=0.1):
        (grad,) = torch.autograd.grad(holder(xg).sum(), xg)
    assert not torch.equal(grad, mask) and (grad[mask.bool()] > 0.9).float().mean() > 0.9
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(holder(xg).sum(), xg)  # restored: the exact mask again
    assert torch.equal(grad, mask)


def test_bpda_handles_inplace_kwta_and_restores_the_model_even_on_error():
    act = KWTA(0.2, inplace=True)
    holder = nn.Sequential(act)
    x = torch.randn(2, 40)
    xg = x.clone().requires_grad_(True)
    with bpda_surrogate(holder, "relu"):
        out = holder(xg * 1.0)  # in place on a non-leaf, as inside a network
        (grad,) = torch.autograd.grad(out.sum(), xg)
    assert torch.equal(out, KWTA(0.2)(x)) and torch.equal(grad, (x > 0).float())
    with pytest.raises(RuntimeError, match="boom"):
        with bpda_surrogate(holder, "relu"):
            raise RuntimeError("boom")
    assert act.inplace is True and not act._forward_hooks and not act._forward_pre_hooks


def test_bpda_leaves_other_threads_alone():
    import threading

    holder = nn.Sequential(KWTA(0.2))
    x = torch.randn(3, 50)
    seen = {}

    def plain():
        xg = x.clone().requires_grad_(True)
        (seen["grad"],) = torch.autograd.grad(holder(xg).sum(), xg)

    with bpda_surrogate(holder, "identity"):
        worker = threading.Thread(target=plain)
        worker.start()
        worker.join()
    assert torch.equal(seen["grad"], (KWTA(0.2)(x) != 0).float())  # the exact mask


def test_bpda_equals_pgd_on_relu_models(relu_model, batch):
    x, y = batch
    kw = dict(eps=EPS, preset="interactive", seed=5)
    assert torch.equal(
        run_attack("bpda", relu_model, x, y, **kw).adversarial,
        run_attack("pgd", relu_model, x, y, **kw).adversarial,
    )


def test_bpda_runs_on_kwta_models(kwta_model, batch):
    x, y = batch
    r = run_attack("bpda", kwta_model, x[:4], y[:4], eps=EPS)
    assert r.params["kwta_modules_swapped"] == 3 and r.losses.shape == (11, 4)
    assert not any(m._forward_hooks for m in kwta_model.modules())


# --------------------------------------------------------------------------- reproducibility, state


@pytest.mark.parametrize("name", ["pgd", "gradient-estimation", "bpda"])
def test_fixed_seed_reproduces_exactly(kwta_model, batch, name):
    x, y = batch
    x, y = x[:5], y[:5]
    state = torch.random.get_rng_state()
    a = run_attack(name, kwta_model, x, y, eps=EPS, seed=7, random_start=True)
    b = run_attack(name, kwta_model, x, y, eps=EPS, seed=7, random_start=True)
    c = run_attack(name, kwta_model, x, y, eps=EPS, seed=8, random_start=True)
    assert torch.equal(a.adversarial, b.adversarial) and torch.equal(a.losses, b.losses)
    assert not torch.equal(a.adversarial, c.adversarial)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched


@pytest.mark.parametrize("name,params", [
    ("pgd", {"random_start": True}),
    ("gradient-estimation", {"random_start": True}),
    ("bpda", {"random_start": True}),
    ("square", {}),  # draws from the global generators: run one image per call
    ("apgd-ce", {}),
    ("autoattack", {}),
])
def test_an_image_is_attacked_the_same_in_any_batch(relu_model, batch, name, params):
    """Image i draws from its own seed: attacked alone, beside others or elsewhere in a
    batch, it ends in the same place (up to float rounding of batched kernels)."""
    x, y = batch
    x, y = x[:6], y[:6]
    seeds = batch_seeds(11, 6)
    whole = run_attack(name, relu_model, x, y, eps=EPS, preset="interactive", seed=11, **params)
    part = run_attack(name, relu_model, x[[4, 1]], y[[4, 1]], eps=EPS, preset="interactive",
                      seed=[seeds[4], seeds[1]], **params)
    assert torch.equal(part.success, whole.success[[4, 1]])
    assert torch.allclose(part.adversarial, whole.adversarial[[4, 1]], atol=1e-5)
    other = run_attack(name, relu_model, x[[4, 1]], y[[4, 1]], eps=EPS, preset="interactive",
                       seed=[seeds[4] + 1, seeds[1] + 1], **params)
    assert not torch.equal(other.adversarial, part.adversarial)


def test_image_streams_do_not_depend_on_how_draws_are_grouped():
    like = torch.zeros(3, 2, 4, 4)
    one = ImageStreams([5, 6, 7], like.device).normal(5, like)
    split = ImageStreams([5, 6, 7], like.device)
    two = torch.cat([split.normal(2, like), split.normal(3, like)])
    assert one.shape == (5, 3, 2, 4, 4) and torch.equal(one, two)
    alone = ImageStreams([7], like.device).normal(5, like[:1])
    assert torch.equal(alone[:, 0], one[:, 2])  # image 2's stream, whatever its batch
    rows = ImageStreams([5, 6, 7], like.device).uniform(like[:2], -1, 1, rows=torch.tensor([2, 0]))
    assert torch.equal(rows[0], ImageStreams([7], like.device).uniform(like[:1], -1, 1)[0])
    with pytest.raises(AttackParameterError, match="one per image"):
        batch_seeds([1, 2], 3)
    assert batch_seeds(4, 2) == batch_seeds([batch_seeds(4, 2)[0], batch_seeds(4, 2)[1]], 2)


def test_model_state_is_restored(batch):
    torch.manual_seed(2)
    model = tiny_net(lambda: KWTA(0.3)).train()
    model[1].training = False  # a mixed state must come back as it was
    x, y = batch
    for name in ("pgd", "deepfool"):
        run_attack(name, model, x[:3], y[:3], eps=EPS)
    assert model.training and not model[1].training and model[3].training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_works_inside_inference_mode(relu_model, batch):
    x, y = batch
    with torch.inference_mode():
        r = run_attack("pgd", relu_model, x[:2], y[:2], eps=EPS)
    assert r.adversarial.shape == (2, 3, 8, 8)
    on_cpu = r.cpu()
    assert torch.equal(on_cpu.adversarial, r.adversarial) and on_cpu.info.keys() == r.info.keys()


def test_robust_accuracy(relu_model, batch):
    x, y = batch
    uint8 = (x * 255).round().to(torch.uint8)
    seen = []
    out = robust_accuracy(
        relu_model, uint8, y, "pgd", eps=EPS, preset="interactive", batch_size=8,
        progress=lambda done, total: seen.append(done),
    )
    assert seen == [8, 16, 20] and out["n"] == 20 and out["clean_acc"] == 1.0
    assert out["robust_acc"] == pytest.approx(1 - out["success_rate"])
    assert out["robust_acc"] < 0.5 and 0 < out["mean_linf"] <= EPS + TOL
    weak = robust_accuracy(relu_model, x, y, "pgd", eps=0.005, batch_size=20, progress=False)
    assert weak["robust_acc"] == 1.0 and math.isnan(weak["mean_l2"])
    cw = robust_accuracy(relu_model, x[:4], y[:4], "cw", eps=EPS, preset="interactive")
    assert 0 <= cw["raw_success_rate"] <= 1 and "raw_l2_median" in cw


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"eps": 0}, "eps must lie in"),
        ({"eps": -0.1}, "eps must lie in"),
        ({"eps": 1.5}, "eps must lie in"),
        ({"eps": float("nan")}, "finite"),
        ({"eps": float("inf")}, "finite"),
        ({"eps": "0.1"}, "number"),
        ({"eps": True}, "number"),
        ({"eps": None, "preset": "interactive"}, "no published eps"),
        ({"steps": 0}, r"steps.*\[1, 10000\]"),
        ({"steps": MAX_STEPS + 1}, "10000"),
        ({"steps": 2.5}, "integer"),
        ({"steps": True}, "integer"),
        ({"step_size": 0.0}, r"\(0, 1\]"),
        ({"step_size": -1.0}, r"\(0, 1\]"),
        ({"step_size": float("nan")}, "finite"),
        ({"step_size": 0.01, "rel_step_size": 0.1}, "at most one"),
        ({"random_start": 1}, "True or False"),
        ({"loss": "hinge"}, "'ce', 'margin'"),
        ({"backend": "foolbox", "loss": "margin"}, "loss='ce'"),
        ({"preset": "fast"}, "interactive, paper, report, corrected"),
        ({"stepz": 3}, "unknown parameter.*valid: steps"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "integer"),
        ({"target": 10}, r"0\.\.9"),
    ],
)
def test_invalid_parameters_are_rejected(relu_model, batch, kwargs, match):
    x, y = batch
    kwargs = {"eps": EPS, **kwargs}
    with pytest.raises(AttackParameterError, match=match):
        run_attack("pgd", relu_model, x[:2], y[:2], **kwargs)


def test_invalid_inputs_are_rejected(relu_model, batch):
    x, y = batch
    x, y = x[:2], y[:2]
    bad = [
        (dict(images=x.clone().fill_(float("nan"))), "NaN"),
        (dict(images=x + 0.5), r"\[0, 1\]"),
        (dict(images=x[0]), r"\(B, 3, H, W\)"),
        (dict(images=x[:, :1]), r"\(B, 3, H, W\)"),
        (dict(images=x[:0], labels=y[:0]), "empty"),
        (dict(images=(x * 255).to(torch.uint8)), "uint8"),
        (dict(images=x.numpy()), "torch.Tensor"),
        (dict(labels=y.float()), "integers"),
        (dict(labels=y[:1]), r"shape \(2,\)"),
        (dict(labels=torch.tensor([0, 10])), r"0\.\.9"),
        (dict(labels=torch.tensor([-1, 0])), r"0\.\.9"),
        (dict(target=y), "true label"),
        (dict(target=torch.tensor([1, 2, 3])), "shape"),
    ]
    for change, match in bad:
        args = {"images": x, "labels": y, **change}
        with pytest.raises(AttackParameterError, match=match):
            run_attack("pgd", relu_model, args["images"], args["labels"], eps=EPS,
                       target=args.get("target"))


def test_attack_specific_rules(relu_model, batch):
    x, y = batch
    x, y = x[:2], y[:2]
    with pytest.raises(AttackParameterError, match="choose one of fgsm, pgd, deepfool"):
        run_attack("pgdd", relu_model, x, y, eps=EPS)
    with pytest.raises(AttackParameterError, match="untargeted"):
        run_attack("deepfool", relu_model, x, y, eps=EPS, target=(y + 1) % 10)
    with pytest.raises(AttackParameterError, match="needs a target"):
        run_attack("vga", relu_model, x, y, eps=EPS)
    with pytest.raises(AttackParameterError, match="one more 'samples' entry"):
        run_attack("gradient-estimation", relu_model, x, y, eps=EPS, samples=(10, 20, 30))
    with pytest.raises(AttackParameterError, match="even"):
        run_attack("gradient-estimation", relu_model, x, y, eps=EPS, samples=(9,), milestones=())
    with pytest.raises(AttackParameterError, match="surrogate"):
        run_attack("bpda", relu_model, x, y, eps=EPS, surrogate="tanh")
    # slider values arrive as floats: integral ones are fine
    assert run_attack("pgd", relu_model, x, y, eps=EPS, steps=3.0).losses.shape == (4, 2)


def test_bpda_and_a_plain_pass_interleaved_in_two_threads_keep_their_own_gradients():
    """Another request's pass between BPDA's two hooks must neither take BPDA's surrogate
    nor steal the input BPDA stored (the load test's cross-session bug)."""
    import threading

    kwta = KWTA(0.2)
    holder = nn.Sequential(kwta)
    x = torch.randn(3, 50)
    seen = {}

    def plain():
        xg = x.clone().requires_grad_(True)
        (seen["plain"],) = torch.autograd.grad(holder(xg).sum(), xg)

    def interleave(_module, _args):  # runs after BPDA's own pre-hook has stored its input
        if threading.current_thread() is threading.main_thread():
            worker = threading.Thread(target=plain)
            worker.start()
            worker.join()

    exact = (KWTA(0.2)(x) != 0).float()
    with bpda_surrogate(holder, "identity"):
        handle = kwta.register_forward_pre_hook(interleave)
        try:
            xb = x.clone().requires_grad_(True)
            (bpda_grad,) = torch.autograd.grad(holder(xb).sum(), xb)
        finally:
            handle.remove()
    assert torch.equal(seen["plain"], exact)
    assert torch.equal(bpda_grad, torch.ones_like(x))  # identity surrogate, not the mask


def test_library_attacks_leave_the_global_generators_alone(relu_model, batch):
    """ART draws from numpy's and torch's global generators: seeded inside, restored after."""
    import numpy as np

    x, y = batch
    np.random.seed(123)
    torch.manual_seed(456)
    before_np, before_torch = np.random.get_state()[1].copy(), torch.get_rng_state()
    a = run_attack("square", relu_model, x[:4], y[:4], eps=0.05, preset="interactive", seed=7)
    assert np.array_equal(np.random.get_state()[1], before_np)
    assert torch.equal(torch.get_rng_state(), before_torch)
    b = run_attack("square", relu_model, x[:4], y[:4], eps=0.05, preset="interactive", seed=7)
    c = run_attack("square", relu_model, x[:4], y[:4], eps=0.05, preset="interactive", seed=8)
    assert torch.equal(a.adversarial, b.adversarial) and not torch.equal(a.adversarial, c.adversarial)
    assert a.params["backend"].startswith("ART ") and a.params["per_step"] is False
    target = runner_up(relu_model, x[:4], y[:4])
    t = run_attack("apgd-dlr", relu_model, x[:4], y[:4], eps=0.1, preset="interactive", target=target)
    assert torch.equal(t.success, t.adv_pred == target)
    with pytest.raises(AttackParameterError):
        run_attack("square", relu_model, x[:4], y[:4], eps=0.05, target=target)


class _Quantised(nn.Module):
    """Rounds its input to 4 levels: a classifier whose input gradient is zero everywhere."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x * 3).round() / 3)


def test_autoattack_records_which_attack_fooled_each_image_and_its_flags(relu_model, batch):
    x, y = batch
    x, y = x[:6], y[:6]
    r = run_attack("autoattack", relu_model, x, y, eps=0.1, preset="interactive", seed=3)
    fooled_by = r.info["fooled_by"]
    with torch.no_grad():
        correct = relu_model(x).argmax(1) == y
    assert torch.equal(fooled_by > 0, r.success & correct)  # 0: stood, or misclassified clean
    assert not r.info["flag_zero_gradient"].any()
    assert r.params["backend"].startswith("pyautoattack ")
    # zero gradients everywhere: AutoAttack's own check flags every image it attacks, the
    # white-box attacks get nowhere, and only the score-based Square can fool an image
    masked = _Quantised(relu_model).eval()
    q = run_attack("autoattack", masked, x, y, eps=0.3, preset="interactive", seed=3,
                   attacks="apgd-ce+apgd-t+fab-t+square", n_iter=5, square_queries=200)
    with torch.no_grad():
        attacked = masked(x).argmax(1) == y
    assert bool(q.info["flag_zero_gradient"][attacked].all())
    assert set(q.info["fooled_by"][attacked].tolist()) <= {0, 4}


def test_autoattack_rows_count_its_attacks_and_flags(relu_model, batch):
    from kwta_demo.evaluation.accuracy import robust_accuracy

    x, y = batch
    row = robust_accuracy(relu_model, x[:6], y[:6], "autoattack", eps=0.1, preset="interactive",
                          seed=3, batch_size=3)
    aa = row["autoattack"]
    assert aa["attacks"] == ["apgd-ce", "apgd-t"]
    fooled = round((row["clean_acc"] - row["robust_acc"]) * 6)
    assert sum(aa["fooled_by"].values()) == fooled
    assert aa["flags"] == {"randomized": 0, "zero_gradient": 0}
    assert "square_after_white_box" not in aa  # no Square in this ensemble
