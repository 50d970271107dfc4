import pytest
import torch

from kwta_demo import KWTA, ModelConfig, build_model


@pytest.mark.parametrize(
    "arch, params", [("resnet18", 11_173_962), ("alexnet", 4_618_186)]
)
def test_shapes_and_parameter_counts(arch, params):
    for activation, gamma in [("relu", None), ("kwta", 0.2)]:
        model = build_model(arch, activation, gamma).eval()
        assert sum(p.numel() for p in model.parameters()) == params
        out = model(torch.rand(2, 3, 32, 32))
        assert out.shape == (2, 10)
        assert model.config.name == (f"{arch}-relu" if gamma is None else f"{arch}-kwta-0.2")


def test_resnet18_activation_layout():
    model = build_model("resnet18", "kwta", 0.1)
    kwtas = [m for m in model.modules() if isinstance(m, KWTA)]
    assert len(kwtas) == 16  # after bn1 and after the residual add, in 8 blocks
    assert all(k.gamma == 0.1 for k in kwtas)
    assert isinstance(model.backbone.stem_act, torch.nn.ReLU)  # the authors' stem
    relu = build_model("resnet18")
    assert not any(isinstance(m, KWTA) for m in relu.modules())


def test_alexnet_has_kwta_after_every_conv_and_hidden_fc():
    model = build_model("alexnet", "kwta", 0.2)
    assert sum(isinstance(m, KWTA) for m in model.modules()) == 7


def test_normalisation_is_inside_the_model():
    model = build_model("alexnet")
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(arch="vgg"), "unknown arch"),
        (dict(arch="resnet18", activation="gelu"), "unknown activation"),
        (dict(arch="resnet18", activation="kwta"), "gamma"),
        (dict(arch="resnet18", activation="kwta", gamma=2.0), "gamma"),
        (dict(arch="resnet18", activation="relu", gamma=0.1), "gamma"),
    ],
)
def test_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_config_round_trip():
    cfg = ModelConfig("alexnet", "kwta", 0.1)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown fields"):
        ModelConfig.from_dict({**cfg.to_dict(), "depth": 50})


def test_names_are_one_rule_both_ways():
    from kwta_demo.models.architectures import ModelConfig
    from kwta_demo.models.checkpoints import MODEL_NAMES

    assert MODEL_NAMES == ("resnet18-relu", "resnet18-kwta-0.2", "resnet18-kwta-0.1",
                           "alexnet-relu", "alexnet-kwta-0.2", "alexnet-kwta-0.1")
    for name in MODEL_NAMES:
        assert ModelConfig.from_name(name).name == name
    assert ModelConfig.from_name("alexnet-kwta-0.1") == ModelConfig("alexnet", "kwta", 0.1)
    assert ModelConfig.from_name("resnet18-kwta-0.1").variant == "kwta-0.1"
    for bad in ("alexnet", "alexnet-tanh", "vgg-relu", "alexnet-kwta", "alexnet-kwta-2",
                "alexnet-kwta-0.10", "alexnet-relu-x"):
        with pytest.raises(ValueError, match="not a canonical model name"):
            ModelConfig.from_name(bad)
