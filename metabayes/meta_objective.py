"""The meta-objective of MATH.md §4 as pure functions of a ``MetaLearner`` spec.

    task_loss_i = −E_q(φ;λ_i^K)[log p(D_i^outer | φ)] + β c_i KL(q(φ;λ_i^K) || p(φ|θ))
    meta_loss   = (1/M) Σ_i task_loss_i + (1/N) KL(q(θ;ψ) || p(θ))

(c_i = 1, or ``learner.outer_kl_scale`` of the task, e.g. ``per_point_kl``.) Each takes the
learner first and is jittable with it closed over
(``jax.jit(functools.partial(meta_loss, learner))``).
"""
import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from metabayes.elbo import (ApplyFn, LocalObjective, draw_outputs, global_kl, local_kl,
                            mean_log_likelihood)
from metabayes.inner_loop import adapt
from metabayes.inner_transforms import support_rows
from metabayes.posterior import MeanFieldGaussian
from metabayes.task_chunks import choose_task_chunk
from metabayes.tasks import Data, Task, check_task, concatenate


def adapt_task(learner, params, theta: MeanFieldGaussian, support: Data,
               key: jax.Array, start: Optional[MeanFieldGaussian] = None) -> MeanFieldGaussian:
    """q(φ; λ^K) for one task's support set (inputs [N, ...], targets [N, ...]), from θ (or
    from ``start``, with θ still the prior of the KL term), then ``learner.refit`` if set."""
    objective = LocalObjective(learner.model.apply, theta, support, learner.likelihood,
                               learner.kl_weight, learner.inner_samples, learner.estimator)
    local = adapt(objective, key,
                  inner_optimizer=learner.inner_transformation(params, theta, support),
                  num_steps=learner.inner_steps, local_variance=learner.local_variance_rule,
                  start=start, unroll=learner.inner_unroll)
    return local if learner.refit is None else learner.refit(learner.model, theta, local, support)


@dataclasses.dataclass(frozen=True)
class per_point_kl:
    """A ``MetaLearner.outer_kl_scale``: c = N_o / (count(S) + N_o) for N_o outer points.

    With the query set alone as the outer data, the outer loss −E_q[log p(Q | φ)] + β KL weighs
    a KL earned on the N_S support points against N_o points' likelihood: where λ fits a long
    support set closely (a closed-form ``refit``), the KL dwarfs the query's likelihood. Scaled
    by c, the loss is N_o × the task's ELBO per point,
    −(E log p(S) + E log p(Q)) / (N_S + N_o) + β KL / (N_S + N_o), with the mean log-likelihood
    of the support estimated by the query's. ``count``: N_S of a support set (default: its rows;
    a weighted set passes its total weight).
    """

    count: Callable = support_rows

    def __call__(self, support: Data, outer: Data) -> jax.Array:
        outer_points = outer[1].shape[0]
        return outer_points / (self.count(support) + outer_points)


def scoring_network(learner, support_inputs: jax.Array) -> ApplyFn:
    """The apply function that scores query inputs of the task with ``support_inputs``
    [N_s, ...]: ``model.apply``, or with ``batch_norm="support"`` the model run on
    [support; queries] with statistics from the N_s support rows, returning the queries'
    outputs only."""
    if learner.batch_norm == "transductive":
        return learner.model.apply
    rows = support_inputs.shape[0]

    def apply_with_support_statistics(variables, inputs, **kwargs):
        both = jnp.concatenate([support_inputs, inputs])
        return learner.model.apply(variables, both, statistics_rows=rows, **kwargs)[rows:]

    return apply_with_support_statistics


def task_loss(learner, params, task: Task, key: jax.Array):
    """One task's outer loss −ELL(λ^K; D^outer) + β c KL(λ^K || θ), and its parts as metrics
    (``local_kl`` without c)."""
    theta_key, adapt_key, outer_key = jax.random.split(key, 3)
    theta = params.q_theta.sample(theta_key)
    local_posterior = adapt_task(learner, params, theta, task.support, adapt_key)
    outer = (concatenate(task.support, task.query) if learner.outer_data == "support_query"
             else task.query)
    outputs = draw_outputs(scoring_network(learner, task.support[0]), local_posterior, outer[0],
                           outer_key, learner.outer_samples, learner.estimator,
                           sequential=learner.sequential_outer_draws)
    nll = -mean_log_likelihood(outputs, outer[1], learner.likelihood)
    kl = local_kl(local_posterior, theta) if learner.kl_weight else jnp.zeros(())
    kl_scale = (1.0 if learner.outer_kl_scale is None
                else learner.outer_kl_scale(task.support, outer))
    query_rows = task.query[1].shape[0]   # the query set is the last rows of the outer data
    fit = learner.likelihood.fit_metrics(outputs[:, -query_rows:], task.query[1])
    return nll + learner.kl_weight * kl_scale * kl, {"outer_nll": nll, "local_kl": kl,
                                          **{f"query_{name}": v for name, v in fit.items()}}


def map_tasks(learner, function: Callable, params, tasks):
    """``function(params, task)`` over the leading task axis of ``tasks``: vmapped, or
    ``lax.map`` over chunks of k vmapped tasks, each under ``jax.checkpoint`` (recomputed in
    the backward pass, but for what ``learner.chunk_policy`` saves), with k from
    ``learner.task_chunk`` (``choose_task_chunk``)."""
    first = jax.tree_util.tree_map(lambda a: a[0], tasks)
    chunk = choose_task_chunk(learner.task_chunk, learner.memory_budget,
                              lambda p: function(p, first), params,
                              jax.tree_util.tree_leaves(tasks)[0].shape[0])
    one_task = lambda task: function(params, task)
    if chunk is None:
        return jax.vmap(one_task)(tasks)
    return jax.lax.map(jax.checkpoint(one_task, policy=learner.chunk_policy), tasks,
                       batch_size=chunk)


def meta_loss(learner, params, batch: Task, key: jax.Array):
    """The meta-batch loss (1/M) Σ_i task_loss_i + (1/N) KL(q(θ) || p(θ)) of a batch [M, ...],
    and its metrics; tasks are mapped in chunks as ``map_tasks`` says."""
    check_task(batch, batched=True)
    keys = jax.random.split(key, batch.support[0].shape[0])
    one_task = lambda p, task_key: task_loss(learner, p, *task_key)
    task_losses, metrics = map_tasks(learner, one_task, params, (batch, keys))
    global_term = (global_kl(params.q_theta, learner.hyperprior)
                   if learner.hyperprior is not None else jnp.zeros(()))
    loss = jnp.mean(task_losses) + global_term / learner.num_tasks
    metrics = jax.tree_util.tree_map(jnp.mean, metrics)
    return loss, {**metrics, "global_kl": global_term, "loss": loss}
