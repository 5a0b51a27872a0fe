r"""Few-shot sine regression with ABML or MAML: ``python -m experiments.sinusoid --config.X=...``.

Every hyperparameter is a flag (``--config.algorithm=maml``, ``--config.steps=2000``, ...);
``--workdir`` receives metrics.json and sinusoid.png.
"""
import itertools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags

from experiments.cli import run
import metabayes as mb
from metabayes.training.config import (EVALUATION_KEYS, LEARNER_RULES, add_learner_defaults,
                              make_evaluator, make_learner)
from metabayes.config_checks import check_config, integer, number, one_of, positive, sequence_of
from metabayes.data.sinusoid import SinusoidTasks, sine
from metabayes.errors import options_set_by
from metabayes.evaluation import predict_tasks, regression_metrics
from metabayes.models import ACTIVATIONS
from metabayes.evaluation.plotting import plot_regression_tasks
from metabayes.training import fit


def get_config() -> ml_collections.ConfigDict:
    """Defaults: MAML's sinusoid setting (M = 25, K = 10 points, 5 steps, 1-40-40-1 ReLU)."""
    c = add_learner_defaults(ml_collections.ConfigDict())
    c.seed = 0
    c.steps = 5000
    c.meta_batch = 25
    c.support = 10
    c.query = 10
    c.hidden = (40, 40)
    c.activation = "relu"
    c.noise_std = 0.1               # known Gaussian noise of the likelihood
    c.inner_lr = 2e-5               # on the summed log-likelihood: MAML's 0.01 on mean MSE at noise 0.1
    c.local_variance = "fisher"     # σ_λ from the data's Fisher; "gradient" (the paper's) keeps σ_θ here
    c.seen_range = (-5.0, -3.0)     # the widening probe: support only here, sd measured ≥ 1 beyond
    c.eval_tasks = 600
    c.plot_tasks = 4
    c.log_every = 500
    return c


RULES = {**LEARNER_RULES, "seed": integer(0), "steps": integer(1), "meta_batch": integer(1),
         "support": integer(1), "query": integer(1), "hidden": sequence_of(integer(1)),
         "activation": one_of(*ACTIVATIONS), "noise_std": positive(),
         "seen_range": sequence_of(number(), length=2), "eval_tasks": integer(2),
         "plot_tasks": integer(1), "log_every": integer(1)}


def check_seen_range(seen_range, input_range) -> None:
    """``seen_range`` must be (low, high) inside ``input_range`` leaving ≥ 1 unit unseen beyond it."""
    low, high = input_range
    if not (len(seen_range) == 2 and low <= seen_range[0] <= seen_range[1] - 0.1
            and seen_range[1] <= high and (seen_range[0] - 1 >= low or seen_range[1] + 1 <= high)):
        raise ValueError(f"`seen_range` must be (low, high) with {low} <= low <= high - 0.1, "
                         f"high <= {high}, and at least 1 unit of [{low}, {high}] beyond it, "
                         f"got {tuple(seen_range)}")


def on_range(grid, low, high):
    """The grid points [G] in [low, high]."""
    return (grid >= low) & (grid <= high)


def seen_unseen_sd(std, grid, seen_range):
    """Median over tasks of the mean sd [M, G] on ``seen_range`` and ≥ 1 unit beyond it."""
    seen = on_range(grid, *seen_range)
    unseen = (grid <= seen_range[0] - 1) | (grid >= seen_range[1] + 1)
    return (float(np.median(np.mean(std[:, seen], axis=1))),
            float(np.median(np.mean(std[:, unseen], axis=1))))


def mirror_ratio(std, grid, seen_range):
    """Median over tasks of sd on the mirror image −``seen_range`` over sd on ``seen_range``
    (each a mean over the grid points [G] there), for sd [M, G] of tasks seen on seen_range."""
    low, high = seen_range
    seen, mirror = on_range(grid, low, high), on_range(grid, -high, -low)
    return float(np.median(np.mean(std[:, mirror], axis=1) / np.mean(std[:, seen], axis=1)))


def grid_predictive(learner, params, support, key, num_samples, grid):
    """Predictive mean and sd [M, G] on ``grid`` [G] for M tasks' support sets."""
    grid_inputs = jnp.broadcast_to(grid[None, :, None], (support[0].shape[0], grid.size, 1))
    predictive = predict_tasks(learner, params, support, grid_inputs, key, num_samples)
    return np.asarray(predictive.mean[..., 0]), np.asarray(predictive.std[..., 0])


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Meta-train, evaluate on ``eval_tasks`` held-out tasks, write metrics.json and a plot.

    Besides query MSE and NLL, it measures how the predictive sd depends on the data: on
    held-out tasks whose support points all lie in ``seen_range`` (``seen`` tasks), the sd on
    that range against the sd ≥ 1 unit beyond it (each a median over tasks), for the learner
    and for the exact Bayes predictive of the task family (the yardstick: how much widening
    is warranted). The mirror probe asks whether that widening follows the data or merely |x|:
    tasks seen on ``seen_range`` and on its mirror image each give the ratio of the sd at the
    unseen mirror image to the sd where they were seen; ``mirror_widening`` is the geometric mean
    of the two ratios, which cancels any fixed asymmetry of the band in x (1: the band does not
    depend on where the support lies).
    """
    check_config(config, RULES)
    tasks = SinusoidTasks(support=config.support, query=config.query)
    check_seen_range(config.seen_range, tasks.input_range)
    os.makedirs(workdir, exist_ok=True)
    model = mb.MLP(hidden=tuple(config.hidden), outputs=1, activation=config.activation)
    learner = make_learner(config, model, mb.Gaussian(config.noise_std))
    evaluator = make_evaluator(config, learner)   # before training: bad eval flags fail fast
    seen_tasks = tasks._replace(input_range=tuple(config.seen_range))
    key = jax.random.PRNGKey(config.seed)
    init_key, train_key, eval_key, seen_key, predict_key = jax.random.split(key, 5)
    state = learner.init(init_key, jnp.zeros((config.support, 1)))
    start = time.perf_counter()
    batch_key, step_key = jax.random.split(train_key)
    batches = (tasks.sample(jax.random.fold_in(batch_key, t), config.meta_batch)[0]
               for t in itertools.count())
    state, history = fit(learner, state, batches, step_key, config.steps,
                         log_every=config.log_every)
    train_seconds = time.perf_counter() - start

    test_tasks, amplitudes, phases = tasks.sample(eval_key, config.eval_tasks)
    with options_set_by(EVALUATION_KEYS):
        scores = regression_metrics(evaluator, state.params, test_tasks, predict_key,
                                    config.eval_samples)
    seen, seen_amplitudes, seen_phases = seen_tasks.sample(seen_key, config.eval_tasks)
    grid = np.linspace(*tasks.input_range, 201, dtype=np.float32)
    mean, std = grid_predictive(evaluator, state.params, test_tasks.support, predict_key,
                                config.eval_samples, grid)
    seen_mean, seen_std = grid_predictive(evaluator, state.params, seen.support, predict_key,
                                          config.eval_samples, grid)
    bayes = jax.jit(lambda support: jax.lax.map(
        lambda one: tasks.exact_predictive(one, grid, config.noise_std, grid=128), support))
    _, bayes_seen_std = bayes(seen.support)
    low, high = config.seen_range
    mirrored, _, _ = tasks._replace(input_range=(-high, -low)).sample(
        jax.random.fold_in(seen_key, 1), config.eval_tasks)
    _, mirrored_std = grid_predictive(evaluator, state.params, mirrored.support, predict_key,
                                      config.eval_samples, grid)
    _, bayes_mirrored_std = bayes(mirrored.support)
    mirror_widening = lambda left, right: math.sqrt(
        mirror_ratio(np.asarray(left), grid, (low, high))
        * mirror_ratio(np.asarray(right), grid, (-high, -low)))
    sd_seen, sd_unseen = seen_unseen_sd(seen_std, grid, config.seen_range)
    bayes_sd_seen, bayes_sd_unseen = seen_unseen_sd(np.asarray(bayes_seen_std), grid,
                                                    config.seen_range)

    shown = config.plot_tasks // 2
    pick = lambda full, part: np.concatenate([np.asarray(full)[:shown],
                                              np.asarray(part)[:config.plot_tasks - shown]])
    plot_support = jax.tree_util.tree_map(pick, test_tasks.support, seen.support)
    plot_regression_tasks(
        os.path.join(workdir, "sinusoid.png"), grid,
        np.asarray(sine(grid[None, :], pick(amplitudes, seen_amplitudes)[:, None],
                        pick(phases, seen_phases)[:, None])),
        plot_support, pick(mean, seen_mean), pick(std, seen_std),
        f"{config.algorithm.upper()}: {config.support}-shot sine regression "
        f"(right: support only in [{low:g}, {high:g}])",
        reference=bayes(plot_support))
    results = {"algorithm": config.algorithm, "steps": config.steps, **scores,
               "predictive_sd_seen": sd_seen, "predictive_sd_unseen": sd_unseen,
               "widening": sd_unseen / sd_seen, "bayes_sd_seen": bayes_sd_seen,
               "bayes_sd_unseen": bayes_sd_unseen, "bayes_widening": bayes_sd_unseen / bayes_sd_seen,
               "mirror_widening": mirror_widening(seen_std, mirrored_std),
               "bayes_mirror_widening": mirror_widening(bayes_seen_std, bayes_mirrored_std),
               "outer_data": learner.outer_data,
               "train_seconds": train_seconds, "history": history, "config": config.to_dict()}
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(results, f, indent=1)
    return results


def main(argv):
    results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    print(f"{results['algorithm']}: query MSE {results['mse']['mean']:.4f} ± {results['mse']['ci95']:.4f}, "
          f"NLL {results['nll']['mean']:.4f} ± {results['nll']['ci95']:.4f} "
          f"({_CONFIG.value.eval_tasks} tasks); support only in {tuple(_CONFIG.value.seen_range)}: "
          f"predictive sd {results['predictive_sd_seen']:.3f} there, "
          f"{results['predictive_sd_unseen']:.3f} ≥ 1 beyond, ×{results['widening']:.2f} (exact Bayes "
          f"{results['bayes_sd_seen']:.3f}, {results['bayes_sd_unseen']:.3f}, ×{results['bayes_widening']:.2f}); "
          f"mirror image ×{results['mirror_widening']:.2f} (exact Bayes "
          f"×{results['bayes_mirror_widening']:.2f}); "
          f"training {results['train_seconds']:.0f} s; wrote {_WORKDIR.value}/metrics.json, sinusoid.png")


if __name__ == "__main__":  # flags exist only when run as a program, so modules import freely
    _CONFIG = config_flags.DEFINE_config_dict("config", get_config())
    _WORKDIR = flags.DEFINE_string("workdir", "runs/sinusoid", "Where metrics.json and sinusoid.png go.")
    run(main, _CONFIG)
