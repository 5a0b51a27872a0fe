"""Building a MetaLearner from an ml_collections config (the experiments' flags).

Shared config keys: algorithm (abml | maml), first_order, inner_steps, eval_inner_steps,
eval_inner_lr, inner_optimizer, inner_lr, inner_optimizer_log_sigma, inner_lr_log_sigma,
outer_lr, inner_samples, outer_samples, kl_weight, theta_family, outer_data, batch_norm,
eval_batch_norm, estimator, s0, a0, b0, init_log_sigma, scale_by_prior_variance, meta_sgd,
local_variance, eval_local_variance, precision_damping, num_tasks, task_chunk, each with its
rule in ``LEARNER_RULES``. Errors name options in backticks (`inner_lr`); the experiments' command line
turns them into ``--config.KEY`` flags (``experiments.cli``), and ``options_set_by`` says which
key set an option where they differ (the test-time learner's `inner_steps` is eval_inner_steps).
"""
import dataclasses
import functools

import flax.linen as nn
import ml_collections
import optax

from metabayes.algorithms import OPTION_RULES, MetaLearner, abml, maml
from metabayes.config_checks import BOOLEAN, integer, one_of, optional, positive
from metabayes.errors import options_set_by
from metabayes.hyperprior import Hyperprior
from metabayes.inner_transforms import per_part_optimizer
from metabayes.likelihoods import Likelihood
from metabayes.local_variance import LOCAL_VARIANCE_NAME

# eps_root > 0 keeps Adam differentiable where a gradient is exactly zero (second order).
INNER_OPTIMIZERS = {"sgd": optax.sgd, "adam": functools.partial(optax.adam, eps_root=1e-12)}
ALGORITHMS = ("abml", "maml")
# The test-time learner's options and the keys that set them ((key, the key it falls back to)).
EVALUATION_KEYS = {"inner_steps": "eval_inner_steps", "inner_lr": ("eval_inner_lr", "inner_lr"),
                   "batch_norm": ("eval_batch_norm", "batch_norm"),
                   "local_variance": ("eval_local_variance", "local_variance")}


def inner_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """μ: ``inner_optimizer`` at ``inner_lr``; log σ: ``inner_optimizer_log_sigma`` at
    ``inner_lr_log_sigma`` (each defaulting to μ's)."""
    log_sigma_name = config.inner_optimizer_log_sigma or config.inner_optimizer
    for name in (config.inner_optimizer, log_sigma_name):
        if name not in INNER_OPTIMIZERS:
            raise ValueError(f"`inner_optimizer` and `inner_optimizer_log_sigma` must be one of "
                             f"{sorted(INNER_OPTIMIZERS)}, got {name!r}")
    mean_optimizer = INNER_OPTIMIZERS[config.inner_optimizer](config.inner_lr)
    if config.inner_lr_log_sigma is None and config.inner_optimizer_log_sigma is None:
        return mean_optimizer
    log_sigma_lr = (config.inner_lr if config.inner_lr_log_sigma is None
                    else config.inner_lr_log_sigma)
    return per_part_optimizer(mean_optimizer, INNER_OPTIMIZERS[log_sigma_name](log_sigma_lr))


def make_learner(config: ml_collections.ConfigDict, model: nn.Module,
                 likelihood: Likelihood) -> MetaLearner:
    """The MetaLearner that ``config`` describes, for ``model`` and ``likelihood``."""
    if config.algorithm not in ALGORITHMS:
        raise ValueError(f"`algorithm` must be one of {ALGORITHMS}, got {config.algorithm!r}")
    common = dict(
        likelihood=likelihood, inner_lr=config.inner_lr, inner_steps=config.inner_steps,
        outer_optimizer=optax.adam(config.outer_lr), inner_optimizer=inner_optimizer(config),
        first_order=config.first_order, batch_norm=config.get("batch_norm", "transductive"),
        num_tasks=config.num_tasks, meta_sgd=config.meta_sgd,
        task_chunk=config.get("task_chunk") or "auto")
    if config.outer_data is not None:   # None: the algorithm's own (MAML query, ABML both)
        common["outer_data"] = config.outer_data
    if config.algorithm == "maml":
        return maml(model, **common)
    return abml(model, inner_samples=config.inner_samples, outer_samples=config.outer_samples,
                kl_weight=config.kl_weight, theta_family=config.theta_family,
                estimator=config.estimator, hyperprior=Hyperprior(config.s0, config.a0, config.b0),
                init_log_sigma=config.init_log_sigma,
                scale_by_prior_variance=config.scale_by_prior_variance,
                local_variance=config.local_variance, precision_damping=config.precision_damping,
                **common)


def make_evaluator(config: ml_collections.ConfigDict, learner: MetaLearner) -> MetaLearner:
    """The learner used at test time: ``eval_inner_steps`` inner steps at ``eval_inner_lr``
    (None: ``inner_lr``; it sets μ's step size, and log σ's where that follows μ's), with batch
    norm ``eval_batch_norm`` (None: ``batch_norm``) and σ_λ's rule ``eval_local_variance``
    (None: ``local_variance``). Its errors name those keys."""
    with options_set_by(EVALUATION_KEYS):
        if config.get("eval_batch_norm") is not None:
            learner = dataclasses.replace(learner, batch_norm=config.eval_batch_norm)
        if config.get("eval_local_variance") is not None:
            learner = dataclasses.replace(learner, local_variance=config.eval_local_variance)
        if config.get("eval_inner_lr") is None:
            return learner.replace_inner_steps(config.eval_inner_steps)
        test = config.copy_and_resolve_references()
        with test.unlocked():
            test.inner_lr = config.eval_inner_lr
        return dataclasses.replace(learner, inner_steps=config.eval_inner_steps,
                                   inner_lr=test.inner_lr, inner_optimizer=inner_optimizer(test))


def add_learner_defaults(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The shared keys with the library's defaults (an experiment overrides what it needs)."""
    c.algorithm = "abml"
    c.first_order = False
    c.inner_steps = 5
    c.eval_inner_steps = 5
    c.eval_inner_lr = ml_collections.config_dict.placeholder(float)   # None: inner_lr
    c.inner_optimizer = "sgd"
    c.inner_lr = 0.1
    c.inner_optimizer_log_sigma = ml_collections.config_dict.placeholder(str)   # None: as μ
    c.inner_lr_log_sigma = ml_collections.config_dict.placeholder(float)        # None: inner_lr
    c.outer_lr = 1e-3
    c.inner_samples = 1
    c.outer_samples = 1
    c.eval_samples = 10
    c.kl_weight = 1.0
    c.theta_family = "point"        # point | gaussian
    c.outer_data = ml_collections.config_dict.placeholder(str)   # support_query | query; None:
    #   the algorithm's own: ABML support_query (its eq. 5), MAML query (Finn et al.)
    c.batch_norm = "transductive"   # transductive | support (statistics of the support set)
    c.eval_batch_norm = ml_collections.config_dict.placeholder(str)   # None: batch_norm
    c.estimator = "weights"         # weights | local_reparam | flipout
    c.s0 = 1.0
    c.a0 = 1.0
    c.b0 = 0.01
    c.init_log_sigma = -3.0
    c.scale_by_prior_variance = False
    c.meta_sgd = False
    c.local_variance = "gradient"   # gradient | fisher (σ_λ⁻² ← F/β + σ_θ⁻², damped)
    c.eval_local_variance = ml_collections.config_dict.placeholder(str)   # None: local_variance
    c.precision_damping = 0.5
    c.num_tasks = 100_000           # N of the 1/N global-KL scaling
    c.task_chunk = ml_collections.config_dict.placeholder(int)   # None: from a memory budget (task_chunks)
    return c


# The rule of each key of ``add_learner_defaults`` (``metabayes.config_checks``): the learner's
# own rule where the key is a MetaLearner option (``OPTION_RULES``).
LEARNER_RULES = {
    **{key: OPTION_RULES[key] for key in (
        "inner_steps", "inner_lr", "inner_samples", "outer_samples", "kl_weight", "batch_norm",
        "estimator", "init_log_sigma", "precision_damping", "num_tasks")},
    "task_chunk": optional(integer(1)),
    "local_variance": LOCAL_VARIANCE_NAME,
    "algorithm": one_of(*ALGORITHMS), "first_order": BOOLEAN, "eval_inner_steps": integer(0),
    "eval_inner_lr": optional(positive()), "inner_optimizer": one_of(*INNER_OPTIMIZERS),
    "inner_optimizer_log_sigma": optional(one_of(*INNER_OPTIMIZERS)),
    "inner_lr_log_sigma": optional(positive()), "outer_lr": positive(),
    "eval_samples": integer(1), "theta_family": one_of("point", "gaussian"),
    "outer_data": optional(OPTION_RULES["outer_data"]),
    "eval_batch_norm": optional(OPTION_RULES["batch_norm"]),
    "eval_local_variance": optional(LOCAL_VARIANCE_NAME),
    "s0": positive(), "a0": positive(), "b0": positive(),
    "scale_by_prior_variance": BOOLEAN, "meta_sgd": BOOLEAN,
}
