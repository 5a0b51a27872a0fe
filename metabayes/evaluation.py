"""Posterior-predictive evaluation over many test tasks (MATH.md §5)."""
from typing import Dict

import jax
import jax.numpy as jnp

from metabayes.algorithms import MetaLearner, MetaParams
from metabayes.metrics import mean_ci95
from metabayes.tasks import Task, check_task


def predict_tasks(learner: MetaLearner, params: MetaParams, support, query_inputs: jax.Array,
                  key: jax.Array, num_samples: int):
    """``learner.predict`` for M tasks at once: support [M, N_s, ...], query inputs [M, N_q, ...]."""
    keys = jax.random.split(key, query_inputs.shape[0])
    return jax.jit(jax.vmap(lambda s, x, k: learner.predict(params, s, x, k, num_samples)))(
        support, query_inputs, keys)


def regression_metrics(learner: MetaLearner, params: MetaParams, tasks: Task, key: jax.Array,
                       num_samples: int = 10) -> Dict[str, Dict[str, float]]:
    """Query MSE of the predictive mean and predictive NLL per point, mean ± 95% CI over tasks."""
    check_task(tasks, batched=True)
    predictive = predict_tasks(learner, params, tasks.support, tasks.query[0], key, num_samples)
    targets = tasks.query[1]
    squared_error = jnp.mean((predictive.mean - targets) ** 2, axis=(1, 2))
    nll = -jnp.mean(jax.vmap(lambda p, y: p.log_prob(y))(predictive, targets), axis=1)
    return {"mse": mean_ci95(squared_error), "nll": mean_ci95(nll)}
