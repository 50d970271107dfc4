"""Replay links: a click on a test image as a query string (``?test=...&attack=...``) that
sets up the same click on any copy of the app, and reading one back."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from ..models.architectures import CIFAR10_CLASSES, ModelConfig
from .inputs import (
    bounded_int,
    check_arch,
    check_attack,
    class_index,
    eps_from_255,
    finite,
    model_names,
)
from .outcomes import AttackOutcome

__all__ = ["REPLAY_KEYS", "replay_query", "parse_replay"]
REPLAY_KEYS = ("test", "arch", "variants", "attack", "preset", "eps", "steps", "step", "true",
               "target", "seed")


def replay_query(outcome: "AttackOutcome", test_index: int) -> str:
    """The query string that sets the app up for the same click on test image
    ``test_index`` (``?test=...&arch=...``); ``parse_replay`` reads it back."""
    params = outcome.params
    fields = {
        "test": test_index, "arch": outcome.arch,
        "variants": ",".join(ModelConfig.from_name(m.name).variant for m in outcome.models),
        "attack": outcome.attack, "preset": outcome.preset,
        "eps": repr(round(params["eps"] * 255, 6)), "seed": params["seed"],
        "steps": params.get("steps"),
        "step": None if params.get("step_size") is None else repr(round(params["step_size"] * 255, 6)),
        "true": None if outcome.label is None else CIFAR10_CLASSES[outcome.label],
        "target": None if outcome.target is None else CIFAR10_CLASSES[outcome.target],
    }
    return "?" + urlencode({k: v for k, v in fields.items() if v is not None})


def parse_replay(query: dict[str, str]) -> dict[str, Any] | None:
    """The attack settings a replay query holds (None when it holds none); every value is
    checked as ``Explorer.attack`` checks it, so a bad link is a clear error."""
    if "test" not in query:
        return None
    unknown = sorted(set(query) - set(REPLAY_KEYS))
    if unknown:
        raise ValueError(f"unknown replay parameter(s): {', '.join(unknown)}")
    arch = check_arch(query.get("arch", "resnet18"))
    variants = [v for v in query.get("variants", "relu,kwta-0.2,kwta-0.1").split(",") if v]
    model_names(arch, variants)
    attack, preset = query.get("attack", "pgd"), query.get("preset", "interactive")
    check_attack(attack, preset)
    out = {"test": bounded_int(query["test"], "test", 0, 10**6), "arch": arch, "variants": variants,
           "attack": attack, "preset": preset,
           "eps_255": finite(query.get("eps", "8"), "eps"),
           "steps": bounded_int(query["steps"], "steps", 1, 10**4) if query.get("steps") else None,
           "step_size_255": finite(query["step"], "step") if query.get("step") else None,
           "seed": bounded_int(query.get("seed", "0"), "seed", 0, 2**31 - 1),
           "true_class": query.get("true"), "target_class": query.get("target")}
    for key in ("true_class", "target_class"):
        if out[key] is not None:
            class_index(out[key], key.replace("_", " "))
    eps_from_255(out["eps_255"])
    return out
