"""metabayes: Amortized Bayesian Meta-Learning (Ravi & Beatson, ICLR 2019) in JAX.

The ELBO terms (``elbo``); the inner loop (``inner_loop``) and its composable pieces
(``inner_transforms``, ``local_variance``); the meta-learner's spec (``algorithms``) and the pure
functions over it (``meta_objective``, ``outer_step``, ``prediction``). docs/MATH.md gives the
mathematics each implements.
"""
from metabayes.xla_flags import convolutions_outside_ynnpack, turn_off_cpu_fusion_emitters

# Before the CPU backend starts: XLA:CPU's fusion emitters miscompile gradients of sampled conv
# nets, and its own convolution kernels are faster here than YNNPACK's (metabayes/xla_flags.py).
# Set either flag yourself in XLA_FLAGS to override.
turn_off_cpu_fusion_emitters()
convolutions_outside_ynnpack()

# distrax loads TensorFlow Probability's JAX substrate, which imports TensorFlow whenever it is
# installed, only to copy docstrings (tensorflow/probability#1714): seconds and ~600 MB. TensorFlow
# is for data_source="tfds" alone, so it is hidden while distrax loads (`import tensorflow`
# raises ImportError, which TFP handles), unless something imported it already.
import sys as _sys
if "tensorflow" not in _sys.modules:
    _sys.modules["tensorflow"] = None
    try:
        import distrax  # noqa: F401
    finally:
        if _sys.modules.get("tensorflow", 0) is None:
            del _sys.modules["tensorflow"]

from metabayes.algorithms import MetaLearner, MetaParams, TrainState, abml, maml
from metabayes.elbo import (draw_outputs, elbo, expected_log_likelihood, global_kl, local_kl,
                            sample_outputs)
from metabayes.errors import (DataError, DivergenceError, NonFiniteLossError,
                              NonFinitePredictionError)
from metabayes.hyperprior import Hyperprior
from metabayes.inner_loop import LocalObjective, adapt
from metabayes.inner_transforms import (per_part_optimizer, per_point_step, scale_by_meta_sgd,
                                        scale_by_prior_variance, stop_inner_gradients)
from metabayes.likelihoods import Categorical, Gaussian, GaussianPredictive
from metabayes.local_variance import (LocalVarianceRule, fisher_diagonal, fisher_precision_update,
                                      fisher_variance, gradient_variance)
from metabayes.meta_objective import meta_loss, per_point_kl, task_loss
from metabayes.models import MLP, Conv4
from metabayes.outer_step import train_step
from metabayes.posterior import MeanFieldGaussian
from metabayes.prediction import predict, predict_tasks
from metabayes.tasks import Task

__version__ = "0.1.0"

__all__ = [
    "Categorical", "Conv4", "DataError", "DivergenceError", "Gaussian", "GaussianPredictive",
    "Hyperprior", "LocalObjective", "LocalVarianceRule", "MLP", "MeanFieldGaussian",
    "MetaLearner", "MetaParams", "NonFiniteLossError", "NonFinitePredictionError", "Task",
    "TrainState",
    "abml", "adapt", "draw_outputs", "elbo", "expected_log_likelihood", "fisher_diagonal",
    "fisher_precision_update", "fisher_variance", "global_kl", "gradient_variance", "local_kl",
    "maml", "meta_loss", "per_part_optimizer", "per_point_kl", "per_point_step", "predict",
    "predict_tasks", "sample_outputs", "scale_by_meta_sgd", "scale_by_prior_variance",
    "stop_inner_gradients", "task_loss", "train_step",
]
