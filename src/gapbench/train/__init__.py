"""Training engine: fit() one model, fit_many() stacked models, losses and stop rules by name.

- :func:`fit`: SGD (momentum, weight decay) under a stop rule; batch size 1 on an MLP takes the fused
  batch-1 path (:mod:`.batch1`), everything else the plain autograd loop (:mod:`.loop`).
- :func:`fit_many`: many configs sharing an architecture trained as one stacked model (:mod:`.stacked`).
- :data:`LOSSES` / :func:`get_loss`: 'softmax_ce', 'sigmoid_ce', 'squared' (:mod:`.losses`).
- :data:`STOP_RULES`: 'margin', 'loss', 'train_error', 'epochs' (defined with TrainConfig, applied in :mod:`.stop`).
"""

from ..config import STOP_RULES
from .batch1 import Batch1Engine, fusable_reason
from .loop import ENGINES, PlainEngine, fit
from .losses import LOSSES, Loss, get_loss
from .stacked import StackedMLP, fit_many, stack_reason

__all__ = ["ENGINES", "LOSSES", "STOP_RULES", "Batch1Engine", "Loss", "PlainEngine", "StackedMLP", "fit",
           "fit_many", "fusable_reason", "get_loss", "stack_reason"]
