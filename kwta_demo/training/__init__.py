"""Training: the recipe (standard and adversarial stages, ``config``), one model's loop
(``loop``), the incremental schedule of an architecture (``schedule``), adversarial
training's pieces (``adversarial``), the resumable state (``state``), epoch timing
(``timing``)."""

from .config import (
    AT_STAGES,
    CONFIG_DEFAULTS,
    STAGES,
    Stage,
    TrainConfig,
    default_epochs,
    format_image_sizes,
    lr_at,
    parse_image_sizes,
    parse_stage,
    predecessor,
    stage_config,
    stage_name,
)
from .loop import (
    TrainingStopped,
    benchmark_epoch_seconds,
    cpu_has_native_bf16,
    evaluate_accuracy,
    train_model,
)
from .schedule import default_batch_size, reproduce_command, set_threads, train_schedule

__all__ = ["AT_STAGES", "CONFIG_DEFAULTS", "STAGES", "Stage", "TrainConfig", "default_epochs",
           "format_image_sizes", "lr_at", "parse_image_sizes", "parse_stage", "predecessor",
           "stage_config", "stage_name", "TrainingStopped", "benchmark_epoch_seconds",
           "cpu_has_native_bf16", "evaluate_accuracy", "train_model", "default_batch_size",
           "reproduce_command", "set_threads", "train_schedule"]
