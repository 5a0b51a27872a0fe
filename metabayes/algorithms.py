"""ABML and MAML as one meta-learner (MATH.md §2-4): the outer loss, the train step, prediction.

    loss(ψ) = (1/M) Σ_i [ −E_q(φ;λ_i^K)[log p(D_i^outer | φ)] + β KL(q(φ;λ_i^K) || p(φ|θ)) ]
              + (1/N) KL(q(θ;ψ) || p(θ)),     θ ~ q(θ;ψ),  λ_i^K = adapt(θ, S_i)

MAML is ``theta_family="deterministic"`` (σ_θ = 0, φ = μ), β = 0 and no hyperprior: the same
code, built by ``maml(...)``.
"""
import dataclasses
import functools
import math
from typing import Any, Dict, Optional

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from metabayes.elbo import check_estimator, draw_outputs, global_kl, local_kl, mean_log_likelihood
from metabayes.errors import NonFiniteLossError
from metabayes.hyperprior import Hyperprior
from metabayes.inner_loop import adapt, check_num_steps, check_local_variance
from metabayes.likelihoods import Categorical, Likelihood
from metabayes.posterior import MeanFieldGaussian, PyTree
from metabayes.tasks import Task, check_task, concatenate

THETA_FAMILIES = ("point", "gaussian", "deterministic")
OUTER_DATA = ("support_query", "query")
BATCH_NORM = ("transductive", "support")


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
      outer_optimizer: optax transformation applied to ψ.
      inner_optimizer: any optax transformation; None means SGD(inner_lr).
      inner_samples, outer_samples: Monte-Carlo samples of the inner / outer likelihood.
      kl_weight: β on the local KL (1 = the real ELBO).
      first_order: drop second-order terms of the inner loop.
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
      local_variance, precision_damping: how σ_λ moves in the inner loop, "gradient" or
        "fisher" (see ``metabayes.adapt``).
      task_chunk: None vmaps the task loss over all M tasks at once; k runs ``lax.map`` over
        chunks of k vmapped tasks, each under ``jax.checkpoint`` (recomputed in the backward
        pass), so only one chunk's activations are alive at a time: the same result with
        roughly k/M of the memory, for one more forward pass. ``predict_tasks`` maps its
        tasks in the same chunks.
    """

    model: nn.Module
    likelihood: Likelihood = Categorical()
    inner_lr: float = 0.1
    inner_steps: int = 5
    outer_optimizer: optax.GradientTransformation = optax.adam(1e-3)
    inner_optimizer: Optional[optax.GradientTransformation] = None
    inner_samples: int = 1
    outer_samples: int = 1
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
    local_variance: str = "gradient"
    precision_damping: float = 0.5
    task_chunk: Optional[int] = None

    def __post_init__(self):
        check_num_steps(self.inner_steps)
        if self.theta_family != "deterministic":
            check_local_variance(self.local_variance, self.precision_damping, self.kl_weight)
        check_estimator(self.estimator)
        if self.theta_family not in THETA_FAMILIES:
            raise ValueError(f"`theta_family` must be one of {THETA_FAMILIES}, got {self.theta_family!r}")
        if self.outer_data not in OUTER_DATA:
            raise ValueError(f"`outer_data` must be one of {OUTER_DATA}, got {self.outer_data!r}")
        if self.batch_norm not in BATCH_NORM:
            raise ValueError(f"`batch_norm` must be one of {BATCH_NORM}, got {self.batch_norm!r}")
        optional = ("task_chunk",) if self.task_chunk is not None else ()
        for name in ("inner_samples", "outer_samples", "num_tasks") + optional:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {getattr(self, name)!r}")
        if not (self.inner_lr > 0 and math.isfinite(self.inner_lr)):
            raise ValueError(f"`inner_lr` must be a positive number, got {self.inner_lr!r}")
        if not (self.kl_weight >= 0 and math.isfinite(self.kl_weight)):
            raise ValueError(f"`kl_weight` must be >= 0, got {self.kl_weight!r}")
        if self.hyperprior is not None and not isinstance(self.hyperprior, Hyperprior):
            raise ValueError(f"`hyperprior` must be a metabayes.Hyperprior or None, got {self.hyperprior!r}")
        if self.theta_family == "deterministic" and (self.kl_weight or self.hyperprior is not None):
            raise ValueError("`theta_family`='deterministic' (MAML, σ_θ = 0) needs `kl_weight`=0 and "
                             "`hyperprior`=None: a KL to a point mass is undefined")

    def replace_inner_steps(self, inner_steps: int) -> "MetaLearner":
        """The same learner with K = ``inner_steps`` (e.g. more steps at test time)."""
        return dataclasses.replace(self, inner_steps=inner_steps)

    @property
    def inner(self) -> optax.GradientTransformation:
        return self.inner_optimizer or optax.sgd(self.inner_lr)

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
        params = self.init_params(key, example_inputs)
        return TrainState(jnp.zeros((), jnp.int32), params, self.outer_optimizer.init(params))

    def adapt(self, params: MetaParams, theta: MeanFieldGaussian, support, key) -> MeanFieldGaussian:
        """q(φ; λ^K) for one task's support set, starting from θ."""
        return adapt(self.model.apply, theta, support, key, inner_optimizer=self.inner,
                     num_steps=self.inner_steps, num_samples=self.inner_samples,
                     kl_weight=self.kl_weight, first_order=self.first_order,
                     likelihood=self.likelihood, estimator=self.estimator,
                     scale_by_prior_variance=self.scale_by_prior_variance,
                     step_scale=params.step_scale, local_variance=self.local_variance,
                     precision_damping=self.precision_damping)

    def network(self, support_inputs: jax.Array):
        """The apply function that scores query inputs of the task with ``support_inputs``
        [N_s, ...]: ``model.apply``, or with ``batch_norm="support"`` the model run on
        [support; queries] with statistics from the N_s support rows, returning the queries'
        outputs only."""
        if self.batch_norm == "transductive":
            return self.model.apply
        rows = support_inputs.shape[0]

        def apply_with_support_statistics(variables, inputs, **kwargs):
            both = jnp.concatenate([support_inputs, inputs])
            return self.model.apply(variables, both, statistics_rows=rows, **kwargs)[rows:]

        return apply_with_support_statistics

    def task_loss(self, params: MetaParams, task: Task, key: jax.Array):
        """One task's outer loss −ELL(λ^K; D^outer) + β KL(λ^K || θ) and its two parts."""
        theta_key, adapt_key, outer_key = jax.random.split(key, 3)
        theta = params.q_theta.sample(theta_key)
        local_posterior = self.adapt(params, theta, task.support, adapt_key)
        outer = concatenate(task.support, task.query) if self.outer_data == "support_query" else task.query
        outputs = draw_outputs(self.network(task.support[0]), local_posterior, outer[0],
                               outer_key, self.outer_samples, self.estimator)
        nll = -mean_log_likelihood(outputs, outer[1], self.likelihood)
        kl = local_kl(local_posterior, theta) if self.kl_weight else jnp.zeros(())
        query_rows = task.query[1].shape[0]   # the query set is the last rows of the outer data
        fit = self.likelihood.fit_metrics(outputs[:, -query_rows:], task.query[1])
        return nll + self.kl_weight * kl, {"outer_nll": nll, "local_kl": kl,
                                           **{f"query_{name}": v for name, v in fit.items()}}

    def loss(self, params: MetaParams, batch: Task, key: jax.Array):
        """The meta-batch loss (1/M) Σ_i task_loss_i + (1/N) KL(q(θ) || p(θ)), and metrics."""
        check_task(batch, batched=True)
        num_tasks_in_batch = batch.support[0].shape[0]
        keys = jax.random.split(key, num_tasks_in_batch)
        if self.task_chunk is None:
            task_losses, metrics = jax.vmap(self.task_loss, in_axes=(None, 0, 0))(params, batch, keys)
        else:
            chunk_loss = jax.checkpoint(lambda task_key: self.task_loss(params, *task_key))
            task_losses, metrics = jax.lax.map(chunk_loss, (batch, keys), batch_size=self.task_chunk)
        global_term = (global_kl(params.q_theta, self.hyperprior) if self.hyperprior is not None
                       else jnp.zeros(()))
        loss = jnp.mean(task_losses) + global_term / self.num_tasks
        metrics = jax.tree_util.tree_map(jnp.mean, metrics)
        return loss, {**metrics, "global_kl": global_term, "loss": loss}

    def _train_step(self, state: TrainState, batch: Task, key: jax.Array):
        (loss, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(state.params, batch, key)
        updates, opt_state = self.outer_optimizer.update(grads, state.opt_state, state.params)
        new_state = TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state)
        finite_gradient = jnp.all(jnp.stack(
            [jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
        finite = jnp.isfinite(loss) & finite_gradient
        new_state = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old),
                                           new_state, state)
        return new_state, {**metrics, "finite": finite, "finite_gradient": finite_gradient}

    @functools.cached_property
    def train_step(self):
        """jit-compiled ``(state, batch, key) -> (state, metrics)``; a non-finite step leaves
        the state unchanged and reports ``metrics["finite"] = False`` (see ``check_finite``)."""
        return jax.jit(self._train_step)

    def check_finite(self, metrics: Dict[str, Any], step: int) -> None:
        """Raise NonFiniteLossError naming the likely causes if a step was not finite."""
        if not bool(metrics["finite"]):
            gradient = "finite" if bool(metrics["finite_gradient"]) else "not finite"
            raise NonFiniteLossError(
                f"the meta-loss or its gradient is not finite at step {step} (loss "
                f"{float(metrics['loss'])}, gradient {gradient}). Likely causes: `inner_lr`="
                f"{self.inner_lr} too large for `kl_weight`={self.kl_weight} and the prior scale "
                f"sigma_theta (`init_log_sigma`={self.init_log_sigma}): inner SGD diverges when "
                "inner_lr * kl_weight / sigma_theta^2 > 2. Lower `inner_lr` or `kl_weight`, raise "
                "`init_log_sigma`, or set `scale_by_prior_variance`.")

    def predict(self, params: MetaParams, support, query_inputs: jax.Array, key: jax.Array,
                num_samples: int = 10):
        """Posterior predictive (1/T) Σ_t p(y | x, φ_t), φ_t ~ q(φ; λ(S)), for one task.

        Adapts from θ = E_q(θ)[θ] (ψ itself for the point estimate). The T samples run one
        after another (``lax.map``), so memory does not grow with T; a point-mass posterior
        (MAML) runs the network once. Batch norm (``batch_norm``): "transductive" normalises
        the N_q query inputs by their own statistics, so every query's prediction depends on
        the others in the batch; "support" uses the support set's. Returns class probabilities
        [N_q, C] (Categorical) or a GaussianPredictive (Gaussian).
        """
        adapt_key, sample_key = jax.random.split(key)
        local_posterior = self.adapt(params, params.q_theta.mean, support, adapt_key)
        outputs = draw_outputs(self.network(support[0]), local_posterior, query_inputs,
                               sample_key, num_samples, self.estimator, sequential=True)
        return self.likelihood.predictive(outputs)

    @functools.cached_property
    def predict_tasks(self):
        """jit-compiled ``predict`` for M tasks: ``(params, support [M, ...], query_inputs
        [M, N_q, ...], keys [M], num_samples)`` -> probabilities [M, N_q, C] (or a batched
        GaussianPredictive). Tasks are vmapped, ``task_chunk`` at a time when it is set."""
        def predict_tasks(params, support, query_inputs, keys, num_samples):
            one_task = lambda task: self.predict(params, *task, num_samples)
            tasks = (support, query_inputs, keys)
            if self.task_chunk is None:
                return jax.vmap(one_task)(tasks)
            return jax.lax.map(one_task, tasks, batch_size=self.task_chunk)

        return jax.jit(predict_tasks, static_argnums=4)


def abml(model: nn.Module, **options) -> MetaLearner:
    """Amortized Bayesian Meta-Learning (Ravi & Beatson, 2019); options as ``MetaLearner``."""
    return MetaLearner(model, **options)


def maml(model: nn.Module, first_order: bool = False, outer_data: str = "query",
         **options) -> MetaLearner:
    """MAML (Finn et al., 2017) as ABML with σ_θ = 0, β = 0 and no hyperprior; its outer loss is
    on the query set only, as published (``outer_data="support_query"`` is ABML's choice)."""
    return MetaLearner(model, first_order=first_order, outer_data=outer_data,
                       theta_family="deterministic", kl_weight=0.0, hyperprior=None, **options)
