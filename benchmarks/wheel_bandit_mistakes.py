r"""Where the wheel-bandit agents' regret comes from (issue 19), on the meta-learners a
``python -m experiments.wheel_bandit`` run has trained in ``--workdir``.

    python -m benchmarks.wheel_bandit_mistakes --workdir=runs/wheel_bandit --delta=0.5 \
        --n=20000 --out=benchmarks/results/wheel_bandit_mistakes.json

ABML and MAML each play one run at δ, with the key of Table 1's first trial at its first δ
(the table's own first run when ``--delta`` is that δ, 0.5 by default; a diagnosis of the
table's results), or with ``--problems=validation`` that of the validation problems' first
trial (``benchmarks.wheel_bandit_choices``; for diagnoses that inform a choice), at the
default play settings, or at those of ``--variant`` (``benchmarks.wheel_bandit_variants``;
e.g. "80 steps", Table 1's K for ABML). Over the second half of the pulls, the regret per pull
is split by where the context lies:

- inside the disc (‖x‖ ≤ δ): arm 0 (1.2) is optimal, any other arm costs 0.2. The share of
  wrong pulls is also given by the context's depth inside δ;
- outside: the quadrant's arm (50) is optimal; a wrong arm costs ~49. These mistakes are
  counted by the context's angle to the nearest quadrant axis and by its distance outside δ.

Each part is also given on Table 1's scale: in percent of the regret per pull that Uniform
is expected to have on the same contexts (``metabayes.bandit.agents.normalised_regret``), so
that the parts add up to a late-regret counterpart of a Table 1 entry.

A mistake close to an axis is a quadrant boundary the network cannot place finely; a mistake
close to the circle is δ not yet found. Inside, wrong pulls that gather just inside the circle
are a smooth fit of the quadrant arm's jump from 1 to 50 at δ: it already predicts more than
arm 0's 1.2 before the circle.
"""

import jax
import numpy as np
from absl import flags

from benchmarks.wheel_bandit_variants import PLAY_HEAD, VARIANTS, check_variants, with_variant
from experiments.cli import run, write_json
from experiments.wheel_bandit import (evaluation_key, make_agents, meta_train_all,
                                      finished_run_config, validation_key)
from metabayes.bandit.agents import normalised_regret, play, sample_problem
from metabayes.bandit.wheel import NUM_ARMS, uniform_regret

ANGLE_BINS = (0.0, 1.0, 2.0, 5.0, 10.0, 45.0)        # degrees to the nearest quadrant axis
DISTANCE_BINS = (0.0, 0.02, 0.05, 0.1, 0.2, 1.0)     # |‖x‖ − δ|, outside and inside the disc

def regret_sources(contexts: np.ndarray, arms: np.ndarray, regrets: np.ndarray,
                   delta: float) -> dict:
    """Regret per pull over ``contexts`` [n, 2] with pulled ``arms`` [n] and ``regrets`` [n],
    split inside/outside the disc of radius δ; the share of each arm among the inside pulls,
    and of wrong ones by depth inside δ (``DISTANCE_BINS``; None for a bin without pulls);
    the outside mistakes (regret > 1) binned by angle to the nearest axis (``ANGLE_BINS``,
    degrees) and distance outside δ (``DISTANCE_BINS``); the regret and its two parts in
    percent of Uniform's expected regret on these contexts (``normalised_*``)."""
    uniform_per_pull = float(np.mean(uniform_regret(contexts, delta)))
    radius = np.linalg.norm(contexts, axis=1)
    inside = radius <= delta
    mistakes = ~inside & (regrets > 1.0)
    angle = np.degrees(np.arctan2(contexts[:, 1], contexts[:, 0])) % 90.0
    to_axis = np.minimum(angle, 90.0 - angle)
    share = lambda mask, empty=0.0: float(mask.mean()) if mask.size else empty
    inside_wrong = regrets[inside] > 0
    depth_bin = np.digitize(delta - radius[inside], DISTANCE_BINS[1:-1])
    wrong_by_depth = [inside_wrong[depth_bin == b] for b in range(len(DISTANCE_BINS) - 1)]
    total_regret = float(regrets.mean())
    inside_regret = float(regrets[inside].sum() / regrets.size)
    outside_regret = float(regrets[~inside].sum() / regrets.size)
    return {
        "regret_per_pull": total_regret,
        "normalised_regret": normalised_regret(total_regret, uniform_per_pull),
        "inside_regret_per_pull": inside_regret,
        "inside_normalised_regret": normalised_regret(inside_regret, uniform_per_pull),
        "inside_wrong_share": share(inside_wrong),
        "inside_wrong_share_by_depth": [share(w, empty=None) for w in wrong_by_depth],
        "inside_arm_shares": (np.bincount(arms[inside], minlength=NUM_ARMS)
                              / max(inside.sum(), 1)).tolist(),
        "outside_regret_per_pull": outside_regret,
        "outside_normalised_regret": normalised_regret(outside_regret, uniform_per_pull),
        "outside_wrong_share": share(regrets[~inside] > 1.0),
        "outside_mistakes_by_angle": np.histogram(to_axis[mistakes], ANGLE_BINS)[0].tolist(),
        "outside_mistakes_by_distance": np.histogram(radius[mistakes] - delta,
                                                     DISTANCE_BINS)[0].tolist(),
    }


def main(argv):
    del argv
    check_variants([_VARIANT.value], "variant")
    config = with_variant(finished_run_config(_WORKDIR.value), _VARIANT.value, PLAY_HEAD.value)
    learners, _, _ = meta_train_all(config, _WORKDIR.value)
    agents = make_agents(config, learners)
    problems_key = (validation_key if _PROBLEMS.value == "validation" else evaluation_key)(config)
    run_key = jax.random.fold_in(jax.random.fold_in(problems_key, 0), 0)
    play_key, init_key = jax.random.split(run_key)       # as play_all's first trial
    contexts = np.asarray(sample_problem(play_key, _DELTA.value, _N.value)[0])
    late = slice(_N.value // 2, None)
    results = {}
    print(f"{_VARIANT.value} (K = {config.eval_inner_steps}), δ = {_DELTA.value}, n = {_N.value}, "
          f"pulls {_N.value // 2 + 1}-{_N.value}; inside, the share wrong by depth inside δ, and "
          f"outside, mistakes by angle to an axis {ANGLE_BINS} deg and by distance outside δ, "
          f"binned at {DISTANCE_BINS}")
    for name in (algorithm.upper() for algorithm in learners):   # the run's meta-learners
        agent, init = agents[name]
        arms, regrets = play(agent, init(init_key), play_key, _DELTA.value, _N.value)
        results[name] = regret_sources(contexts[late], np.asarray(arms)[late],
                                       np.asarray(regrets)[late], _DELTA.value)
        r = results[name]
        print(f"{name}: regret/pull {r['regret_per_pull']:.3f} (Uniform = 100: "
              f"{r['normalised_regret']:.2f} = {r['inside_normalised_regret']:.2f} inside + "
              f"{r['outside_normalised_regret']:.2f} outside) = inside "
              f"{r['inside_regret_per_pull']:.3f} (wrong {r['inside_wrong_share']:.1%}, arms "
              f"{np.round(r['inside_arm_shares'], 2).tolist()}; by depth "
              f"{[None if w is None else round(w, 3) for w in r['inside_wrong_share_by_depth']]}) "
              f"+ outside "
              f"{r['outside_regret_per_pull']:.3f} (wrong {r['outside_wrong_share']:.2%}); by "
              f"angle {r['outside_mistakes_by_angle']}, by distance "
              f"{r['outside_mistakes_by_distance']}", flush=True)
    write_json(_OUT.value, {"delta": _DELTA.value, "n": _N.value, "variant": _VARIANT.value,
                            "problems": _PROBLEMS.value,
                            "eval_inner_steps": config.eval_inner_steps, "agents": results})


if __name__ == "__main__":   # flags exist only when run as a program, so modules import freely
    _WORKDIR = flags.DEFINE_string("workdir", "runs/wheel_bandit",
                                   "A trained experiment's workdir.")
    _DELTA = flags.DEFINE_float("delta", 0.5, "δ of the problem.", lower_bound=0.0,
                                upper_bound=1.0)
    _N = flags.DEFINE_integer("n", 20_000, "Pulls.", lower_bound=2)
    _VARIANT = flags.DEFINE_string("variant", "default", "Play at this variant's settings "
                                   f"(one of {sorted(VARIANTS)}, or several joined by '+').")
    _PROBLEMS = flags.DEFINE_enum("problems", "table", ["table", "validation"],
                                  "Play the first trial of Table 1's problems or of the validation "
                                  "problems.")
    _OUT = flags.DEFINE_string("out", None, "Write the results here (JSON).")
    run(main)
