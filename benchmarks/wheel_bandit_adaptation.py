r"""What K inner steps from θ gain on meta-training's own episodes (issue 19), for the
meta-learners a ``python -m experiments.wheel_bandit`` run has trained in ``--workdir``.

    python -m benchmarks.wheel_bandit_adaptation --workdir=runs/wheel_bandit \
        --out=benchmarks/results/wheel_bandit_adaptation.json

``--episodes`` episodes of ``sample_episodes`` with the run's settings (``per_arm``,
``max_pulls``, ``pool``) and 200 query pulls each, on a key of their own (not the training
batches'). Each learner adapts on each support set with K of ``--steps`` inner steps at
meta-training's step size (K = 0 is θ itself), and its adapted mean network is scored by the
query pulls' mean squared error, overall and by the history length T the support stands for
(``LENGTH_BINS``). An inner loop that uses the history lowers the error as T grows; one that
does not leaves it where θ has it.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from benchmarks.wheel_bandit_fit import define_flags
from experiments.cli import run, write_json
from experiments.wheel_bandit import finished_run_config, meta_train_all, validation_key
from metabayes.bandit.episodes import sample_episodes
from metabayes.bandit.history import support_pulls

LENGTH_BINS = (1, 30, 300, 3_000, 80_001)   # T in [1, 30), [30, 300), [300, 3,000), [3,000, ...]
QUERY = 200


def query_errors(learner, params, tasks, key: jax.Array) -> jax.Array:
    """The query MSE [M] of the mean network adapted (``learner.inner_steps`` steps from θ) on
    each of ``tasks``' support sets."""
    def one(support, query, task_key):
        adapted = learner.adapt(params, params.q_theta.mean, support, task_key)
        predicted = learner.model.apply({"params": adapted.mean}, query[0])
        return jnp.mean(jnp.square(predicted - query[1]))
    keys = jax.random.split(key, tasks.support[0].shape[0])
    return jax.jit(jax.vmap(one))(tasks.support, tasks.query, keys)


def by_length(errors, lengths, bins=LENGTH_BINS) -> dict:
    """Mean of ``errors`` [M] overall and per bin of ``lengths`` [M] (bins [lo, hi))."""
    errors, lengths = np.asarray(errors), np.asarray(lengths)
    means = {"all": float(errors.mean())}
    for lo, hi in zip(bins[:-1], bins[1:]):
        inside = (lengths >= lo) & (lengths < hi)
        means[f"T in [{lo}, {hi})"] = float(errors[inside].mean()) if inside.any() else None
    return means


def main(argv):
    del argv
    steps = _STEPS.value
    config = finished_run_config(_WORKDIR.value)
    with config.unlocked():
        config.eval_inner_lr = None                          # meta-training's step size
    episode_key, adapt_key = jax.random.split(jax.random.fold_in(validation_key(config), 1))
    tasks, _ = jax.jit(lambda key: sample_episodes(
        key, _EPISODES.value, per_arm=config.per_arm, num_query=QUERY,
        max_pulls=config.max_pulls, pool=config.pool))(episode_key)
    lengths = jax.vmap(support_pulls)(tasks.support)
    rows = []
    for algorithm, (learner, params) in meta_train_all(config, _WORKDIR.value)[0].items():
        for k in steps:
            errors = query_errors(learner.replace_inner_steps(k), params, tasks, adapt_key)
            rows.append({"algorithm": algorithm, "inner_steps": k, **by_length(errors, lengths)})
            print(f"{algorithm} K = {k:3d}: " + "  ".join(
                f"{name} {value:6.1f}" for name, value in rows[-1].items()
                if isinstance(value, float)), flush=True)
    write_json(_OUT.value, {"workdir": _WORKDIR.value, "episodes": _EPISODES.value, "query": QUERY,
                            "rows": rows})


if __name__ == "__main__":   # flags exist only when run as a program, so modules import freely
    _WORKDIR, _STEPS, _OUT = define_flags([0, 5, 20, 100])
    _EPISODES = flags.DEFINE_integer("episodes", 512, "Episodes to score.", lower_bound=1)
    run(main)
