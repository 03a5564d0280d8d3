"""Compression companions of quantization: structured / unstructured / N:M pruning and knowledge
distillation (torch). Imported lazily by ``lowbit`` (``lowbit.prune_channels``, ``lowbit.distill``, ...)."""

from .distill import DistillationLoss, Distiller, distill
from .pruning import (
    GradualPruner,
    PruneReport,
    prune_attention_heads,
    prune_channels,
    prune_ffn,
    prune_magnitude,
    prune_n_m,
    reapply_masks,
    sparsity_report,
)
from .sparse import sparse_storage

__all__ = [
    "DistillationLoss",
    "Distiller",
    "GradualPruner",
    "PruneReport",
    "distill",
    "prune_attention_heads",
    "prune_channels",
    "prune_ffn",
    "prune_magnitude",
    "prune_n_m",
    "reapply_masks",
    "sparse_storage",
    "sparsity_report",
]
