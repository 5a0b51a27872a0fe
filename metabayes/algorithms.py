"""ABML and MAML as one static spec (MATH.md §2-4); the functions over it live beside it.

    loss(ψ) = (1/M) Σ_i [ −E_q(φ;λ_i^K)[log p(D_i^outer | φ)] + β KL(q(φ;λ_i^K) || p(φ|θ)) ]
              + (1/N) KL(q(θ;ψ) || p(θ)),     θ ~ q(θ;ψ),  λ_i^K = adapt(θ, S_i)

``MetaLearner`` holds the options and what they mean (the inner optimiser chain, the σ_λ rule);
the loss is ``metabayes.meta_objective``, the jittable train step ``metabayes.outer_step``,
prediction ``metabayes.prediction``. Each is a plain function of (learner, ...); the learner's
methods of the same names are those functions bound to it, for convenience. MAML is
``theta_family="deterministic"`` (σ_θ = 0, φ = μ), β = 0 and no hyperprior: ``maml(...)``.
"""
import dataclasses
import functools
from typing import Callable, Optional, Union

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from metabayes import meta_objective, outer_step, prediction
from metabayes.config_checks import (Rule, check_option, integer, number, one_of, optional,
                                     positive)
from metabayes.elbo import ESTIMATOR
from metabayes.hyperprior import Hyperprior
from metabayes.inner_transforms import (scale_by_meta_sgd, scale_by_prior_variance,
                                        stop_inner_gradients)
from metabayes.likelihoods import Categorical, Likelihood
from metabayes.inner_loop import NUM_STEPS
from metabayes.local_variance import (DAMPING, LOCAL_VARIANCE, LocalVarianceRule,
                                      check_fisher_kl_weight, fisher_variance, gradient_variance)
from metabayes.posterior import MeanFieldGaussian, PyTree

THETA_FAMILIES = ("point", "gaussian", "deterministic")
OUTER_DATA = ("support_query", "query")
OUTER_DRAWS = ("auto", "vmap", "sequential")
BATCH_NORM = ("transductive", "support")

# The rule of each option that has one (``metabayes.config_checks``): checked here, and reused
# by the experiments' config keys of the same names (``metabayes.training.config.LEARNER_RULES``).
OPTION_RULES = {
    "inner_lr": positive(), "inner_steps": NUM_STEPS, "inner_samples": integer(1),
    "outer_samples": integer(1), "kl_weight": number(0.0), "outer_data": one_of(*OUTER_DATA),
    "outer_draws": one_of(*OUTER_DRAWS),
    "batch_norm": one_of(*BATCH_NORM), "theta_family": one_of(*THETA_FAMILIES),
    "num_tasks": integer(1), "init_log_sigma": number(), "local_variance": LOCAL_VARIANCE,
    "precision_damping": DAMPING, "estimator": ESTIMATOR,
    "inner_unroll": Rule("True or an integer >= 1",
                         lambda v: v is True or integer(1).accepts(v), 0),
    "task_chunk": Rule("None, 'auto' or an integer >= 1",
                       lambda v: v in (None, "auto") or integer(1).accepts(v), 0),
    "memory_budget": optional(integer(1)),
    "hyperprior": Rule("a metabayes.Hyperprior or None",
                       lambda v: v is None or isinstance(v, Hyperprior), "paper"),
}


@flax.struct.dataclass
class MetaParams:
    """ψ: q(θ; ψ) (θ = (μ, log σ) of p(φ|θ)) and optional Meta-SGD step scales shaped like θ."""

    q_theta: MeanFieldGaussian
    step_scale: Optional[PyTree] = None


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: MetaParams
    opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class MetaLearner:
    """Everything static about a meta-learning run; ψ and optimiser state live in TrainState.

    Attributes:
      model: a Flax module whose params are φ (``metabayes.models``).
      likelihood: ``Categorical()`` or ``Gaussian(noise_std)``.
      inner_lr: the inner step size (the default inner optimiser is ``optax.sgd(inner_lr)``).
      inner_steps: K.
      inner_unroll: inner steps per trip of the inner ``lax.scan`` (True: all K, no loop; the
        same function). XLA's cost analysis counts a loop's body once, so
        ``benchmarks.flops`` counts the step with ``True``.
      outer_optimizer: optax transformation applied to ψ.
      inner_optimizer: any optax transformation; None means SGD(inner_lr).
      inner_samples, outer_samples: Monte-Carlo samples of the inner / outer likelihood.
      outer_draws: how the S outer samples run: "vmap" (in parallel), "sequential" (``lax.map``,
        one after another) or "auto": sequential on CPU, where it was 7.5% faster at S = 5
        (BENCHMARKS.md, "Issue 20, seventh pass"), vmapped elsewhere. The same loss.
      kl_weight: β on the local KL (1 = the real ELBO).
      first_order: drop second-order terms of the inner loop (``stop_inner_gradients``).
      outer_data: "support_query" (ABML's eq. 5, the default) or "query" (MAML's, the default
        of ``maml``).
      batch_norm: where a batch-norm model (``Conv4``) takes its statistics when it scores a
        task's query (outer) inputs: "transductive" (the batch of query inputs itself, as MAML
        does; the default) or "support" (the task's support inputs only, placed before the
        queries; the model must take ``statistics_rows``). The inner loop sees only the support
        set, so it is the same in both.
      theta_family: q(θ): "point" (the paper's), "gaussian", or "deterministic" (MAML: σ_θ = 0).
      hyperprior: p(θ); None drops the global term.
      num_tasks: N, the number of tasks in the data, for the 1/N scaling of the global KL.
      estimator: "weights", "local_reparam" or "flipout".
      init_log_sigma: log σ_θ at initialisation.
      init_theta_log_scale: initial log std of the Gaussian q(θ) over (μ, log σ).
      scale_by_prior_variance: precondition the inner μ-gradient by σ_θ² (stable inner SGD).
      meta_sgd: learn per-parameter inner step scales as part of ψ.
      local_variance, precision_damping: how σ_λ moves in the inner loop: "gradient",
        "fisher" (with damping ρ = ``precision_damping``) or a ``LocalVarianceRule`` of your own
        (``metabayes.local_variance``).
      inner_step_scale: None, or a function of a task's support set (inputs, targets) -> a
        scalar c that multiplies every inner update (an ``optax.scale`` at the chain's end),
        i.e. the inner step size becomes c · inner_lr for SGD. E.g.
        ``per_point_step(reference, count)`` takes steps on the per-point objective once the
        support set has more than ``reference`` points.
      task_chunk: "auto" (the default) takes the largest k whose saved activations fit
        ``memory_budget`` (``metabayes.task_chunks``); None vmaps the task loss over all M
        tasks at once; k < M runs ``lax.map`` over chunks of k vmapped tasks, each under
        ``jax.checkpoint`` (recomputed in the backward pass), so only one chunk's activations
        are alive at a time: the same result with roughly k/M of the memory, for one more
        forward pass. ``predict_tasks`` maps its tasks in the same way.
      memory_budget: bytes one chunk's saved activations may take under "auto"; None: the
        platform's default (``metabayes.task_chunks.default_memory_budget``).
      chunk_policy: the chunks' ``jax.checkpoint`` policy (``jax.checkpoint_policies``), e.g.
        ``dots_saveable`` keeps every chunk's matmul outputs and recomputes only the rest;
        None: nothing saved, the whole forward pass recomputed.
      refit: None, or a function (model, p(φ|θ), λ^K, support) -> λ applied after the K inner
        steps, in the meta-objective and at prediction alike, e.g. ``metabayes.bandit.
        exact_head.ExactHead``: a factor of λ at the local objective's closed-form optimum.
        The meta-gradient flows through it.
      outer_kl_scale: None, or a function of a task's (support, outer data) -> a scalar c
        multiplying the local KL in the outer loss (not the inner one's), e.g.
        ``metabayes.per_point_kl``.
    """

    model: nn.Module
    likelihood: Likelihood = Categorical()
    inner_lr: float = 0.1
    inner_steps: int = 5
    inner_unroll: Union[int, bool] = 1
    outer_optimizer: optax.GradientTransformation = optax.adam(1e-3)
    inner_optimizer: Optional[optax.GradientTransformation] = None
    inner_samples: int = 1
    outer_samples: int = 1
    outer_draws: str = "auto"
    kl_weight: float = 1.0
    first_order: bool = False
    outer_data: str = "support_query"
    batch_norm: str = "transductive"
    theta_family: str = "point"
    hyperprior: Optional[Hyperprior] = Hyperprior()
    num_tasks: int = 1
    estimator: str = "weights"
    init_log_sigma: float = -3.0
    init_theta_log_scale: float = -6.0
    scale_by_prior_variance: bool = False
    meta_sgd: bool = False
    local_variance: Union[str, LocalVarianceRule] = "gradient"
    precision_damping: float = 0.5
    task_chunk: Union[None, int, str] = "auto"
    memory_budget: Optional[int] = None
    inner_step_scale: Optional[Callable] = None
    chunk_policy: Optional[Callable] = None
    refit: Optional[Callable] = None
    outer_kl_scale: Optional[Callable] = None

    def __post_init__(self):
        for name, rule in OPTION_RULES.items():
            check_option(name, getattr(self, name), rule)
        if self.theta_family == "deterministic":
            if self.kl_weight or self.hyperprior is not None:
                raise ValueError("`theta_family`='deterministic' (MAML, σ_θ = 0) needs "
                                 "`kl_weight`=0 and `hyperprior`=None: a KL to a point mass is "
                                 "undefined")
        elif self.local_variance == "fisher":
            check_fisher_kl_weight(self.kl_weight)

    def replace_inner_steps(self, inner_steps: int) -> "MetaLearner":
        """The same learner with K = ``inner_steps`` (e.g. more steps at test time)."""
        return dataclasses.replace(self, inner_steps=inner_steps)

    @property
    def sequential_outer_draws(self) -> bool:
        """Whether the outer samples run one after another (``outer_draws``)."""
        if self.outer_draws == "auto":
            return jax.default_backend() == "cpu"
        return self.outer_draws == "sequential"

    @property
    def inner(self) -> optax.GradientTransformation:
        """The user's inner optimiser: ``inner_optimizer``, or SGD(inner_lr)."""
        return self.inner_optimizer or optax.sgd(self.inner_lr)

    def inner_transformation(self, params: MetaParams, theta: MeanFieldGaussian,
                             support=None) -> optax.GradientTransformation:
        """The inner loop's whole update, ``metabayes.inner_transforms`` chained with ``inner``
        as the options say: [stop gradients] → [× σ_θ²] → inner optimiser → [× Meta-SGD]
        → [× ``inner_step_scale(support)``]."""
        parts = [stop_inner_gradients()] if self.first_order else []
        if self.scale_by_prior_variance:
            parts.append(scale_by_prior_variance(theta))
        parts.append(self.inner)
        if params.step_scale is not None:
            parts.append(scale_by_meta_sgd(params.step_scale))
        if self.inner_step_scale is not None:
            parts.append(optax.scale(self.inner_step_scale(support)))
        return optax.chain(*parts)

    @property
    def local_variance_rule(self) -> LocalVarianceRule:
        """How σ_λ moves (``metabayes.local_variance``); MAML's point mass has none."""
        if self.theta_family == "deterministic" or self.local_variance == "gradient":
            return gradient_variance()
        if self.local_variance == "fisher":
            return fisher_variance(self.precision_damping)
        return self.local_variance

    def init_params(self, key: jax.Array, example_inputs: jax.Array) -> MetaParams:
        """ψ at initialisation; ``example_inputs`` is one task's inputs [N, ...]."""
        params = self.model.init(key, example_inputs)["params"]
        if self.theta_family == "deterministic":
            theta = MeanFieldGaussian(params)
        else:
            theta = MeanFieldGaussian.from_params(params, self.init_log_sigma)
        scale = self.init_theta_log_scale if self.theta_family == "gaussian" else None
        q_theta = MeanFieldGaussian.from_params(theta, scale)
        step_scale = jax.tree_util.tree_map(jnp.ones_like, theta) if self.meta_sgd else None
        return MetaParams(q_theta, step_scale)

    def init(self, key: jax.Array, example_inputs: jax.Array) -> TrainState:
        """The train state at initialisation, compiled as one program: run op by op, flax's
        init would compile and keep a program per op (60 MB for Conv4, measured)."""
        return jax.jit(self._initial_state)(key, example_inputs)

    def _initial_state(self, key: jax.Array, example_inputs: jax.Array) -> TrainState:
        params = self.init_params(key, example_inputs)
        return TrainState(jnp.zeros((), jnp.int32), params, self.outer_optimizer.init(params))

    # The pure functions of meta_objective, outer_step and prediction, bound to this learner.
    adapt = meta_objective.adapt_task
    network = meta_objective.scoring_network
    task_loss = meta_objective.task_loss
    loss = meta_objective.meta_loss
    check_finite = outer_step.check_finite
    predict = prediction.predict

    @functools.cached_property
    def train_step(self):
        """``jax.jit(functools.partial(metabayes.train_step, self))``: ``(state,
        batch, key) -> (state, metrics)``, compiled once per learner."""
        return jax.jit(functools.partial(outer_step.train_step, self))

    @functools.cached_property
    def predict_tasks(self):
        """``metabayes.prediction.predict_tasks`` for this learner, jitted (``num_samples``
        static)."""
        return jax.jit(functools.partial(prediction.predict_tasks, self), static_argnums=4)


def abml(model: nn.Module, **options) -> MetaLearner:
    """Amortized Bayesian Meta-Learning (Ravi & Beatson, 2019); options as ``MetaLearner``."""
    return MetaLearner(model, **options)


def maml(model: nn.Module, first_order: bool = False, outer_data: str = "query",
         **options) -> MetaLearner:
    """MAML (Finn et al., 2017) as ABML with σ_θ = 0, β = 0 and no hyperprior: its outer loss is
    on the query set only, as published (``outer_data="support_query"`` is ABML's choice)."""
    return MetaLearner(model, first_order=first_order, outer_data=outer_data,
                       theta_family="deterministic", kl_weight=0.0, hyperprior=None, **options)
