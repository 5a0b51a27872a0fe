"""Evaluation: scoring a meta-learner's posterior predictive on many tasks (``scoring``), the
metrics (``metrics``: accuracy, NLL, Brier, calibration, entropy, AUROC) and the figures
(``plotting``)."""
from metabayes.evaluation.scoring import (check_finite_predictions, classification_evaluation,
                                          posterior_scales, predict_tasks, regression_metrics,
                                          split_out_of_episode)

__all__ = ["check_finite_predictions", "classification_evaluation", "posterior_scales",
           "predict_tasks", "regression_metrics", "split_out_of_episode"]
