"""kwta-demo: k-Winners-Take-All models, attacks and an explorer for CIFAR-10."""

from .checkpoints import (
    MODEL_NAMES,
    CheckpointError,
    CheckpointNotFoundError,
    load_model,
    save_checkpoint,
)
from .kwta import KWTA, kwta_reference, kwta_to_relu, relu_to_kwta
from .models import CIFAR10_CLASSES, ModelConfig, build_model

__all__ = [
    "KWTA",
    "kwta_reference",
    "relu_to_kwta",
    "kwta_to_relu",
    "ModelConfig",
    "build_model",
    "CIFAR10_CLASSES",
    "MODEL_NAMES",
    "CheckpointError",
    "CheckpointNotFoundError",
    "load_model",
    "save_checkpoint",
]

__version__ = "0.1.0"
