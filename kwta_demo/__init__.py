"""kwta-demo: k-Winners-Take-All models, attacks and an explorer for CIFAR-10."""

from .models import (
    CIFAR10_CLASSES,
    KWTA,
    MODEL_NAMES,
    CheckpointError,
    CheckpointNotFoundError,
    ModelConfig,
    build_model,
    kwta_reference,
    kwta_to_relu,
    load_model,
    relu_to_kwta,
    save_checkpoint,
)

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
