"""Table 1's protocol: every agent plays the same (δ, trial) problems, all at once
(``play_trials``), and its cumulative regret is normalised per trial so that Uniform = 100."""
import itertools
import math
import time
from typing import Callable, Dict, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from metabayes.bandit.agents import normalised_regret, play_trials

Agents = Dict[str, Tuple[object, Callable]]   # name -> (agent, init(key) -> state)


def play_all(agents: Agents, deltas: Sequence[float], trials: int, num_steps: int,
             key: jax.Array, progress: bool = False):
    """Every agent plays ``trials`` runs of ``num_steps`` pulls at every δ, vmapped over the
    len(deltas) · trials runs; trial t at δ_d uses the key fold_in(fold_in(key, d), t) for
    every agent, so all meet the same contexts and rewards.

    Returns the final cumulative regrets [agent][δ index] -> [trials], the mean cumulative
    regret curves [agent][δ index] -> [num_steps], and per agent its compile and play seconds
    and the play seconds per 1,000 pulls of one run (``per_1000_pulls``).
    """
    pairs = list(itertools.product(range(len(deltas)), range(trials)))
    run_keys = jnp.stack([jax.random.fold_in(jax.random.fold_in(key, d), t) for d, t in pairs])
    play_keys, init_keys = jax.vmap(jax.random.split, out_axes=1)(run_keys)
    run_deltas = jnp.asarray([deltas[d] for d, _ in pairs], jnp.float32)
    final = {name: [[] for _ in deltas] for name in agents}
    curves = {name: [np.zeros(num_steps) for _ in deltas] for name in agents}
    seconds = {}
    for name, (agent, init) in tqdm.tqdm(agents.items(), desc="play", disable=not progress):
        states = jax.vmap(init)(init_keys)
        start = time.perf_counter()
        compiled = play_trials.lower(agent, states, play_keys, run_deltas, num_steps).compile()
        compiled_at = time.perf_counter()
        _, regrets = compiled(states, play_keys, run_deltas)
        regrets = np.asarray(regrets, np.float64)
        played = time.perf_counter() - compiled_at
        seconds[name] = {"compile": compiled_at - start, "play": played,
                         "per_1000_pulls": played / (len(pairs) * num_steps / 1000)}
        cumulative = np.cumsum(regrets, axis=1)                               # [runs, n]
        for (d, _), row in zip(pairs, cumulative):
            final[name][d].append(row[-1])
            curves[name][d] += row / trials
    return final, curves, seconds


def mean_se(values) -> dict:
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else None
    return {"mean": float(values.mean()), "se": None if se is None else float(se),
            "trials": values.tolist()}


def summarise(deltas: Sequence[float], final) -> dict:
    """Per agent and δ: normalised (Uniform = 100, per trial) and raw cumulative regret."""
    uniform = final["Uniform"]
    return {name: {str(delta): {"normalised": mean_se(normalised_regret(
                                    np.asarray(per_delta[d]), np.asarray(uniform[d]))),
                                "cumulative_regret": mean_se(per_delta[d])}
                   for d, delta in enumerate(deltas)}
            for name, per_delta in final.items()}


def cell(stats: dict) -> str:
    """``mean_se``'s mean ± standard error (the mean alone for one trial)."""
    return (f"{stats['mean']:.2f} ± {stats['se']:.2f}" if stats["se"] is not None
            else f"{stats['mean']:.2f}")


def table(deltas: Sequence[float], num_steps: int, trials: int, summary) -> str:
    """The normalised regret as Table 1: one row per agent, one column per δ."""
    lines = [f"normalised cumulative regret (Uniform = 100), n = {num_steps}, {trials} "
             "trial(s), mean ± standard error",
             f"{'agent':<14}" + "".join(f"{'δ = ' + str(delta):>18}" for delta in deltas)]
    for name, per_delta in summary.items():
        lines.append(f"{name:<14}" + "".join(f"{cell(per_delta[str(delta)]['normalised']):>18}"
                                            for delta in deltas))
    return "\n".join(lines)


def variant_rows(variant: str, summary: dict, seconds: dict) -> str:
    """One line per meta-learner the run trained (ABML, MAML or both; Uniform is the
    normalisation): its normalised regret per δ, mean ± standard error, and play seconds."""
    lines = []
    for agent in [name for name in summary if name != "Uniform"]:
        cells = "".join(f"{cell(s['normalised']):>15}" for s in summary[agent].values())
        lines.append(f"{variant:<18} {agent:<5} {cells}   "
                     f"{seconds[agent]['per_1000_pulls']:.3f} s")
    return "\n".join(lines)


def kept_curves(deltas: Sequence[float], num_steps: int, points: int, curves) -> dict:
    """``play_all``'s mean regret curves at about ``points`` pull counts spaced evenly on a log
    axis from 1 to ``num_steps``, as results.json keeps them: {"steps": [pull counts],
    agent: {str(δ): [mean cumulative regret at those pulls]}}."""
    steps = np.unique(np.geomspace(1, num_steps, points).round().astype(int))
    return {"steps": steps.tolist(),
            **{name: {str(delta): np.asarray(c)[steps - 1].tolist()
                      for delta, c in zip(deltas, per_delta)}
               for name, per_delta in curves.items()}}


def regret_per_pull(steps: list, cumulative: list, marks: list) -> list:
    """[(first pull, last pull, mean regret per pull)] over the windows that end at ``marks``,
    the first from pull 1; each mark is moved to the nearest of ``steps``, the pull counts at
    which ``cumulative`` (the cumulative regret) was kept."""
    ends = sorted({min(range(len(steps)), key=lambda i: abs(steps[i] - mark)) for mark in marks})
    windows, pulls, regret = [], 0, 0.0
    for end in ends:
        windows.append((pulls + 1, steps[end], (cumulative[end] - regret) / (steps[end] - pulls)))
        pulls, regret = steps[end], cumulative[end]
    return windows


def per_pull_table(steps: list, curves: dict, deltas: Sequence, marks: list) -> str:
    """One row per agent and δ: its regret per pull in each window of ``regret_per_pull``;
    ``curves`` as ``kept_curves`` keeps them, {agent: {str(δ): cumulative regret at steps}}."""
    rows = {(name, delta): regret_per_pull(steps, per_delta[str(delta)], marks)
            for name, per_delta in curves.items() for delta in deltas}
    windows = next(iter(rows.values()))
    lines = ["mean regret per pull, pulls " + ", ".join(f"{a:,}-{b:,}" for a, b, _ in windows)]
    for (name, delta), row in rows.items():
        lines.append(f"{name:<24} δ = {delta:<5}"
                     + "".join(f"{rate:>10.3f}" for _, _, rate in row))
    return "\n".join(lines)
