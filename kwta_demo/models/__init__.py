"""The models: the k-WTA activation, the CIFAR ResNet18 and AlexNet, their checkpoints."""

from .architectures import ARCHS, CIFAR10_CLASSES, Classifier, ModelConfig, build_model
from .checkpoints import (
    MODEL_NAMES,
    CheckpointError,
    CheckpointNotFoundError,
    load_model,
    save_checkpoint,
)
from .kwta import KWTA, kwta_reference, kwta_to_relu, relu_to_kwta

__all__ = ["ARCHS", "CIFAR10_CLASSES", "Classifier", "ModelConfig", "build_model", "MODEL_NAMES",
           "CheckpointError", "CheckpointNotFoundError", "load_model", "save_checkpoint", "KWTA",
           "kwta_reference", "kwta_to_relu", "relu_to_kwta"]
