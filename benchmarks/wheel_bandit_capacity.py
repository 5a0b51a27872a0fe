r"""How well the wheel-bandit network can place the disc at all (issue 19): each architecture of
``--hidden`` is fitted by least squares to the wheel's expected rewards at one δ, with fresh
contexts every step (no history, no meta-learning, no prior), and its greedy arms are scored.

    python -m benchmarks.wheel_bandit_capacity \
        --hidden=100x100,200x200,400x400,100x100x100,100x100x100x100 \
        --out=benchmarks/results/wheel_bandit_capacity.json

An agent playing that network adapts its weights on noisy pulls of the arms it chose, so it is
not expected to fit the wheel better than a network trained on every arm's mean reward
everywhere. The loss is the mean squared error over the 5 arms at ``--batch`` contexts a step,
Adam with a cosine decay from ``--learning_rate``, ``--steps`` steps from ``ArmRewardMLP``'s
initialisation (LeCun normal). The fitted network is scored on 20,000 other contexts
(``wheel_bandit_fit.fit_scores``): the share inside the disc whose greedy arm is arm 0, and
the regret of acting greedily on the fit, normalised as Table 1 is, against which Table 1's
long-horizon columns are read (docs/wheel_bandit.md).
"""
import functools
import re
import time

import jax
import jax.numpy as jnp
import optax
from absl import flags

from benchmarks.wheel_bandit_fit import describe_fit, fit_scores
from experiments.cli import define_number_list, run, write_json
from metabayes.bandit.agents import arm_rewards
from metabayes.bandit.episodes import ArmRewardMLP
from metabayes.bandit.wheel import CONTEXT_DIM, mean_rewards, sample_contexts

ARCHITECTURE = re.compile(r"^[1-9]\d*(x[1-9]\d*)*$")   # "100x100": two hidden layers of 100
SCORE_CONTEXTS = 20_000


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def fit_wheel(model: ArmRewardMLP, delta: float, steps: int, batch: int, learning_rate: float,
              key: jax.Array):
    """``model``'s params fitted to the wheel's expected rewards at δ (contexts [batch, 2] ->
    [batch, 5], squared error), and the loss of each step [steps]."""
    init_key, data_key = jax.random.split(key)
    params = model.init(init_key, jnp.zeros((1, CONTEXT_DIM)), method=model.arm_rewards)["params"]
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))

    def loss(params, contexts):
        return jnp.mean(jnp.square(arm_rewards(model, params, contexts)
                                   - mean_rewards(contexts, delta)))

    def step(state, step_key):
        params, opt_state = state
        value, grads = jax.value_and_grad(loss)(params, sample_contexts(step_key, batch))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)),
                                       jax.random.split(data_key, steps))
    return params, losses


def main(argv):
    del argv
    contexts = sample_contexts(jax.random.PRNGKey(_SEED.value + 1), SCORE_CONTEXTS)
    print(f"{_STEPS.value} steps of {_BATCH.value} contexts; predicted reward of the quadrant arm "
          "inside (truth 1.0) / outside (50), arm 0 inside (1.2); share of greedy arms optimal "
          "inside / outside; the last 1% of steps' mean squared error", flush=True)
    rows = []
    for architecture in _HIDDEN.value:
        model = ArmRewardMLP(hidden=tuple(int(width) for width in architecture.split("x")))
        for delta in _DELTAS.value:
            start = time.perf_counter()
            params, losses = fit_wheel(model, delta, _STEPS.value, _BATCH.value,
                                       _LEARNING_RATE.value, jax.random.PRNGKey(_SEED.value))
            scores = fit_scores(arm_rewards(model, params, contexts), contexts, delta)
            row = {"hidden": architecture, "delta": delta, **scores,
                   "final_mse": float(losses[-max(1, _STEPS.value // 100):].mean()),
                   "seconds": time.perf_counter() - start}
            rows.append(row)
            print(f"{architecture:>15} δ = {delta:<5}: {describe_fit(row)}; "
                  f"MSE {row['final_mse']:.2f} ({row['seconds']:.0f} s)", flush=True)
    write_json(_OUT.value, {"steps": _STEPS.value, "batch": _BATCH.value,
                            "learning_rate": _LEARNING_RATE.value, "seed": _SEED.value,
                            "rows": rows})


if __name__ == "__main__":   # flags exist only when run as a program, so modules import freely
    _HIDDEN = flags.DEFINE_list("hidden", ["100x100", "100x100x100"],
                                "Architectures to fit: hidden widths joined by x.")
    flags.register_validator(
        "hidden", lambda value: bool(value) and all(ARCHITECTURE.match(a) for a in value),
        "--hidden expects architectures like 100x100,100x100x100 (hidden widths joined by x)")
    _DELTAS = define_number_list("deltas", [0.5, 0.7, 0.9, 0.95, 0.99], "δ of the wheels.",
                                 number=float, lower_bound=0.0, upper_bound=1.0)
    _STEPS = flags.DEFINE_integer("steps", 20_000, "Adam steps per fit.", lower_bound=1)
    _BATCH = flags.DEFINE_integer("batch", 512, "Contexts per step.", lower_bound=1)
    _LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Adam's first step size.",
                                        lower_bound=0.0)
    _SEED = flags.DEFINE_integer("seed", 0, "Key of the initialisation and the contexts.")
    _OUT = flags.DEFINE_string("out", None, "Write the results here (JSON).")
    run(main)
