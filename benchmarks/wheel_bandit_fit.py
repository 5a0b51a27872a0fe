r"""How far K inner steps from θ take the wheel-bandit network towards a long history (issue 19),
on the meta-learners a ``python -m experiments.wheel_bandit`` run has trained in ``--workdir``.

    python -m benchmarks.wheel_bandit_fit --workdir=runs/wheel_bandit --delta=0.99 \
        --out=benchmarks/results/wheel_bandit_fit_099.json

The history is the one the agents build at large δ (``benchmarks.wheel_bandit_mistakes``: they
pull each context's quadrant arm, inside the disc and out): ``--pulls`` pulls, each of the
context's quadrant arm or, with probability ``--exploration`` (0.05), of a random arm, on the
validation problems' key, held in the play reservoir (``play_per_arm`` slots per arm). ABML's
and MAML's play learners adapt on it with K of ``--steps`` inner steps, at the play step size
(``eval_inner_lr``) and at meta-training's (``inner_lr``). The adapted mean network is scored
on 4,000 fresh contexts (``fit_scores``): its predicted reward of the quadrant arm inside the
disc (truth 1.0) and outside (50), of arm 0 inside (1.2), and the share of contexts, inside and
outside, whose greedy arm is the optimal one, and the expected regret per pull of acting
greedily on it. ABML's rows are scored with the head as the K steps leave it and at its
closed-form optimum after them (``+ exact head``; ``eval_head="exact"``, at
β = ``eval_head_kl_weight``: 1 since 2026-12-06, the learner's ``kl_weight`` before),
whichever head the model was meta-trained with.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from experiments.cli import define_number_list, run, write_json
from experiments.wheel_bandit import (finished_run_config, meta_train_all, play_memory,
                                      validation_key, with_head)
from metabayes.bandit.agents import arm_rewards, normalised_regret
from metabayes.bandit.episodes import pulled_rewards
from metabayes.bandit.history import subsample_pulls
from metabayes.bandit.wheel import (NUM_ARMS, mean_rewards, optimal_arms, quadrant_arms,
                                    sample_contexts, uniform_regret)


def fit_scores(rewards: jax.Array, contexts: jax.Array, delta: float) -> dict:
    """A network's predicted ``rewards`` [B, 5] at ``contexts`` [B, 2] against the wheel at δ:
    the mean predicted reward of the quadrant arm inside (‖x‖ ≤ δ) and outside, of arm 0
    inside, the share of contexts inside and outside whose greedy arm is optimal, and the
    expected regret per pull of acting greedily on ``rewards`` (all of it, and the part from
    contexts inside the disc), also normalised so that Uniform's = 100, as Table 1 is."""
    rewards, contexts = np.asarray(rewards), np.asarray(contexts)
    inside = np.linalg.norm(contexts, axis=1) <= delta
    quadrant = np.take_along_axis(rewards, np.asarray(quadrant_arms(contexts))[:, None], 1)[:, 0]
    greedy = np.argmax(rewards, axis=1)
    right = greedy == np.asarray(optimal_arms(contexts, delta))
    means = np.asarray(mean_rewards(contexts, delta))
    regret = means.max(axis=1) - np.take_along_axis(means, greedy[:, None], 1)[:, 0]
    uniform = np.asarray(uniform_regret(contexts, delta))
    mean = lambda values: float(values.mean()) if values.size else float("nan")
    return {"quadrant_inside": mean(quadrant[inside]), "quadrant_outside": mean(quadrant[~inside]),
            "arm0_inside": mean(rewards[inside, 0]), "right_inside": mean(right[inside]),
            "right_outside": mean(right[~inside]), "regret_per_pull": mean(regret),
            "inside_regret_per_pull": mean(regret * inside),
            "normalised_regret": normalised_regret(mean(regret), mean(uniform))}


def describe_fit(scores: dict) -> str:
    """``fit_scores`` in one line: the quadrant arm's predicted reward inside / outside, arm 0's
    inside, the shares of greedy arms right inside / outside, and the greedy regret per pull
    (the part from inside; normalised)."""
    return (f"quadrant {scores['quadrant_inside']:6.2f} / {scores['quadrant_outside']:5.1f}, "
            f"arm 0 {scores['arm0_inside']:.2f}; right {scores['right_inside']:6.1%} / "
            f"{scores['right_outside']:6.2%}; regret a pull {scores['regret_per_pull']:.3f} "
            f"({scores['inside_regret_per_pull']:.3f} inside; {scores['normalised_regret']:.2f})")


def agent_history(key: jax.Array, delta: float, pulls: int, per_arm: int,
                  exploration: float = 0.05):
    """The reservoirs (``per_arm`` per arm) of ``pulls`` pulls of the quadrant arm, or of a
    random arm with probability ``exploration`` (1: every arm at random, a uniform design)."""
    context_key, explore_key, arm_key, reward_key = jax.random.split(key, 4)
    contexts = sample_contexts(context_key, pulls)
    arms = jnp.where(jax.random.uniform(explore_key, (pulls,)) < exploration,
                     jax.random.randint(arm_key, (pulls,), 0, NUM_ARMS), quadrant_arms(contexts))
    return subsample_pulls(contexts, arms, pulled_rewards(reward_key, contexts, arms, delta),
                           pulls, per_arm)


def define_flags(default_steps):
    """The flags of the fit benchmarks: (--workdir, --steps, --out)."""
    workdir = flags.DEFINE_string("workdir", "runs/wheel_bandit", "A trained experiment's workdir.")
    steps = define_number_list("steps", default_steps, "Inner steps K to adapt with.",
                               lower_bound=0)
    flags.register_validator("steps", bool, "--steps must name at least one K, e.g. 5,20,100")
    out = flags.DEFINE_string("out", None, "Write the results here (JSON).")
    return workdir, steps, out


def main(argv):
    del argv
    steps = _STEPS.value
    config = finished_run_config(_WORKDIR.value)
    history_key, adapt_key, test_key = jax.random.split(validation_key(config), 3)
    learners = {"play step": meta_train_all(config, _WORKDIR.value)[0]}
    with config.unlocked():
        config.eval_inner_lr = None
    learners["training step"] = meta_train_all(config, _WORKDIR.value)[0]
    memory = play_memory(config)
    support = memory.support(agent_history(history_key, _DELTA.value, _PULLS.value,
                                           memory.per_arm, _EXPLORATION.value))
    contexts = sample_contexts(test_key, 4_000)
    print(f"δ = {_DELTA.value}, {_PULLS.value} agent-like pulls ({_EXPLORATION.value:.0%} of "
          f"random arms), {memory.per_arm} slots per arm; "
          "predicted reward of the quadrant arm inside (truth 1.0) / outside (50), arm 0 inside "
          "(1.2); share of greedy arms optimal inside / outside", flush=True)
    results = []
    for step_size, per_algorithm in learners.items():
        for algorithm, (learner, params) in per_algorithm.items():
            theta = params.q_theta.mean
            heads = {"": lambda local: local}
            exact = with_head(learner, algorithm, "exact",   # ABML's only
                              config.eval_head_kl_weight, config.eval_head_anchor).refit
            if exact is not None:
                heads[" + exact head"] = lambda local: exact(learner.model, theta, local, support)
            inner_steps = with_head(learner, algorithm, "inner_steps")   # the heads are the rows'
            for k in steps:
                adapted = jax.jit(inner_steps.replace_inner_steps(k).adapt)(params, theta,
                                                                            support, adapt_key)
                for head, refit in heads.items():
                    row = {"algorithm": algorithm, "step_size": step_size + head,
                           "inner_steps": k, **fit_scores(arm_rewards(
                               learner.model, refit(adapted).mean, contexts), contexts,
                               _DELTA.value)}
                    results.append(row)
                    print(f"{algorithm} {row['step_size']:>13} K = {k:3d}: "
                          f"{describe_fit(row)}", flush=True)
    write_json(_OUT.value, {"delta": _DELTA.value, "pulls": _PULLS.value,
                            "exploration": _EXPLORATION.value, "per_arm": memory.per_arm,
                            "rows": results})


if __name__ == "__main__":   # flags exist only when run as a program, so modules import freely
    _WORKDIR, _STEPS, _OUT = define_flags([5, 20, 100, 400])
    _DELTA = flags.DEFINE_float("delta", 0.99, "δ of the problem.", lower_bound=0.0,
                                upper_bound=1.0)
    _PULLS = flags.DEFINE_integer("pulls", 20_000, "Pulls in the history.", lower_bound=1)
    _EXPLORATION = flags.DEFINE_float("exploration", 0.05, "Share of the history's pulls on a "
                                      "random arm.", lower_bound=0.0, upper_bound=1.0)
    run(main)
