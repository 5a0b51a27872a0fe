"""metabayes: Amortized Bayesian Meta-Learning (Ravi & Beatson, ICLR 2019) in JAX.

The ELBO terms (``elbo``), the inner loop (``inner_loop``), the meta-learner and its train step
(``algorithms``); see docs/MATH.md for the mathematics each implements.
"""
from metabayes.xla_flags import set_default_xla_flag

# XLA:CPU's fusion emitters miscompile the gradient of a Conv4 (3+ blocks) whose weights are
# sampled inside jit (jax 0.10.2: off by up to 60% against finite differences and against the
# same gradient run eagerly; tests/test_models.py::test_jit_gradient_of_sampled_conv_net). Turn
# them off before the CPU backend starts; set the flag yourself in XLA_FLAGS to override.
set_default_xla_flag("xla_cpu_use_fusion_emitters", "false")

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
from metabayes.inner_loop import (adapt, fisher_diagonal, fisher_precision_update, local_objective,
                                  per_part_optimizer)
from metabayes.likelihoods import Categorical, Gaussian, GaussianPredictive
from metabayes.models import MLP, Conv4
from metabayes.posterior import MeanFieldGaussian
from metabayes.tasks import Task

__version__ = "0.1.0"

__all__ = [
    "Categorical", "Conv4", "DataError", "DivergenceError", "Gaussian", "GaussianPredictive",
    "Hyperprior", "MLP", "MeanFieldGaussian", "MetaLearner", "MetaParams", "NonFiniteLossError",
    "NonFinitePredictionError", "Task", "TrainState",
    "abml", "adapt", "draw_outputs", "elbo", "expected_log_likelihood", "fisher_diagonal",
    "fisher_precision_update", "global_kl", "local_kl", "local_objective", "maml",
    "per_part_optimizer", "sample_outputs",
]
