"""Running meta-training: the outer loop with its logs and checks (``loop``), orbax
checkpoints (``checkpointing``), learners built from ml_collections configs (``config``),
meta-batches sharded over devices (``sharding``) and trained runs served on new tasks
(``predictor``)."""
from metabayes.training.loop import MetricWriter, check_divergence, fit, progress_fields

__all__ = ["MetricWriter", "check_divergence", "fit", "progress_fields"]
