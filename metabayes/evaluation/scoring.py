"""Posterior-predictive evaluation over many test tasks (MATH.md §5)."""
import functools
from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from metabayes.algorithms import MetaLearner, MetaParams
from metabayes.errors import NonFinitePredictionError
from metabayes.evaluation.metrics import (classification_report, mean_ci95, out_of_episode_auroc,
                               predictive_entropy)
from metabayes.tasks import Task, check_task


def check_finite_predictions(predictive) -> None:
    """NonFinitePredictionError naming the likely options unless every entry of ``predictive``
    (class probabilities [M, N_q, C] or a GaussianPredictive) is finite."""
    leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(predictive)]
    bad = sum(int(np.sum(~np.isfinite(leaf))) for leaf in leaves)
    if bad:
        total = sum(leaf.size for leaf in leaves)
        raise NonFinitePredictionError(
            f"the posterior predictive is not finite ({bad} of {total} values): the test-time "
            "inner loop diverged, or meta-training did (its loss growing by orders of "
            "magnitude). Lower the inner step size `inner_lr` or the number of inner steps "
            "`inner_steps`.")


def predict_tasks(learner: MetaLearner, params: MetaParams, support, query_inputs: jax.Array,
                  key: jax.Array, num_samples: int):
    """``learner.predict`` for M tasks at once: support [M, N_s, ...], query inputs [M, N_q, ...];
    NonFinitePredictionError if the predictive is not finite."""
    keys = jax.random.split(key, query_inputs.shape[0])
    predictive = learner.predict_tasks(params, support, query_inputs, keys, num_samples)
    check_finite_predictions(predictive)
    return predictive


def regression_metrics(learner: MetaLearner, params: MetaParams, tasks: Task, key: jax.Array,
                       num_samples: int = 10) -> Dict[str, Dict[str, float]]:
    """Query MSE of the predictive mean and predictive NLL per point, mean ± 95% CI over tasks."""
    check_task(tasks, batched=True)
    predictive = predict_tasks(learner, params, tasks.support, tasks.query[0], key, num_samples)
    targets = tasks.query[1]
    squared_error = jnp.mean((predictive.mean - targets) ** 2, axis=(1, 2))
    nll = -jnp.mean(jax.vmap(lambda p, y: p.log_prob(y))(predictive, targets), axis=1)
    return {"mse": mean_ci95(squared_error), "nll": mean_ci95(nll)}


def split_out_of_episode(batch: Task, ways: int):
    """Tasks of N + O classes -> (the tasks of classes 0..N-1, query inputs of classes N..N+O-1),
    with N = ``ways`` and O ≥ 1 out-of-episode classes (N where the split has 2N classes).

    The out-of-episode images come from classes the task never saw; they are scored by
    predictive entropy to measure out-of-episode detection (MATH.md §5).
    """
    def by_label(data):
        inputs, labels = (np.asarray(a) for a in data)
        order = np.argsort(labels, axis=1, kind="stable")
        rows = np.arange(labels.shape[0])[:, None]
        return inputs[rows, order], labels[rows, order]

    (s_in, s_lab), (q_in, q_lab) = by_label(batch.support), by_label(batch.query)
    inside = lambda labels: labels < ways
    n_support, n_query = inside(s_lab).sum(axis=1), inside(q_lab).sum(axis=1)
    if not (np.all(n_support == n_support[0]) and np.all(n_query == n_query[0])
            and 0 < n_query[0] < q_lab.shape[1]):
        raise ValueError(f"split_out_of_episode needs balanced tasks of more than {ways} classes")
    n_support, n_query = n_support[0], n_query[0]
    task = Task((s_in[:, :n_support], s_lab[:, :n_support]), (q_in[:, :n_query], q_lab[:, :n_query]))
    return task, q_in[:, n_query:]


def classification_evaluation(learner: MetaLearner, params: MetaParams, batches, key: jax.Array,
                              ways: int, num_samples: int = 10, num_bins: int = 10):
    """Accuracy ± CI, NLL, Brier, ECE, MCE and out-of-episode AUROC over test meta-batches.

    ``batches`` yields meta-batches of tasks of ``ways`` classes and more out of the episode
    (2·``ways``-way tasks where the split has the classes; see ``split_out_of_episode``).
    Each task is adapted once, and its in-episode and out-of-episode queries [N·Q + O·Q, ...]
    are scored in one batch, so a transductive batch norm normalises them by the statistics
    of their mixture, not the unseen classes by themselves.
    Returns (report dict, in-episode entropies, out-of-episode entropies).
    """
    probs, labels, entropy_in, entropy_out = [], [], [], []
    for index, batch in enumerate(batches):
        task, outside = split_out_of_episode(batch, ways)
        inside_count = task.query[0].shape[1]
        keys = jax.random.split(jax.random.fold_in(key, index), task.query[0].shape[0])
        scored = np.asarray(learner.predict_tasks(
            params, task.support, np.concatenate([task.query[0], outside], axis=1), keys,
            num_samples))
        check_finite_predictions(scored)
        inside, out = scored[:, :inside_count], scored[:, inside_count:]
        probs.append(inside)
        labels.append(task.query[1])
        entropy_in.append(predictive_entropy(inside).ravel())
        entropy_out.append(predictive_entropy(out).ravel())
    probs, labels = np.concatenate(probs), np.concatenate(labels)
    entropy_in, entropy_out = np.concatenate(entropy_in), np.concatenate(entropy_out)
    report = classification_report(probs, labels, num_bins)
    report["out_of_episode_auroc"] = out_of_episode_auroc(entropy_in, entropy_out)
    return report, entropy_in, entropy_out


@functools.partial(jax.jit, static_argnums=0)
def _adapt_tasks(learner: MetaLearner, params: MetaParams, theta, support, keys):
    """q(φ; λ) of M tasks [M, N_s, ...] from θ, compiled once per learner and shape."""
    return jax.vmap(lambda s, k: learner.adapt(params, theta, s, k))(support, keys)


def posterior_scales(learner: MetaLearner, params: MetaParams, support, key: jax.Array
                     ) -> Dict[str, float]:
    """Per parameter (e.g. "Conv3x3_0/kernel"): the mean prior scale σ_θ, and the mean adapted
    scale σ_λ over M tasks' support sets [M, N_s, ...] (the paper's Figure 5). Empty for MAML."""
    theta = params.q_theta.mean
    if theta.is_point_mass:
        return {}
    adapted = _adapt_tasks(learner, params, theta, support,
                           jax.random.split(key, support[0].shape[0]))
    names = ["/".join(str(getattr(p, "key", p)) for p in path)
             for path, _ in jax.tree_util.tree_flatten_with_path(theta.std)[0]]
    prior = jax.tree_util.tree_leaves(theta.std)
    local = jax.tree_util.tree_leaves(adapted.std)
    scales = {}
    for name, sigma_theta, sigma_lambda in zip(names, prior, local):
        scales[f"sigma_theta/{name}"] = float(jnp.mean(sigma_theta))
        scales[f"sigma_lambda/{name}"] = float(jnp.mean(sigma_lambda))
    return scales
