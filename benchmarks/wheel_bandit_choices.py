r"""What each play-time choice of the wheel-bandit agents costs and gains (issue 19), on the
meta-learners a ``python -m experiments.wheel_bandit`` run has trained in ``--workdir``.

    python -m benchmarks.wheel_bandit_choices --workdir=runs/wheel_bandit --n=2000 --trials=10 \
        --out=benchmarks/results/wheel_bandit_choices_2000.json

Every variant plays ABML and MAML (and Uniform, for the normalisation) on the same validation
problems (``validation_key``: other contexts and rewards than Table 1's, which are played only
once a setting is chosen), changing one setting of the default config:

- ``window``: condition on the last 5 · play_per_arm pulls instead of the whole history's
  reservoir;
- ``summed steps``: inner steps on the summed objective (no ``per_point_step``) at play;
- ``every pull``: re-adapt after every pull (``readapt_growth=0``) instead of the thinning
  schedule;
- ``training step``: adapt at play as in meta-training, at the training step size instead of
  the default's (K = 5 either way); ``half training step``, ``quarter training step``: at half
  or a quarter of it (of the run's ``inner_lr``);
- ``10 steps``, ``20 steps``, ``40 steps``, ``80 steps``: K = 10, 20, 40 or 80 at play, at the
  default step size;
- ``training reservoir``, ``reservoir 512``: reservoirs of meta-training's ``per_arm`` or of 512
  pulls per arm at play instead of the default ``play_per_arm``; ``whole reservoir``: every
  re-adaptation on all its slots, filled or not, instead of the smallest of the
  ``support_sizes`` that holds the pulls so far (the same function, at its full cost);
- ``warm start``: each re-adaptation starts from the last λ instead of θ (``MetaAgent``);
  ``warm training step``: the same, with K = 5 at the training step size;
- ``gradient variance``: σ_λ at play by meta-training's rule (σ_λ takes the inner steps)
  instead of the default ``eval_local_variance="fisher"`` (σ_λ⁻² → F/β + σ_θ⁻², F the weighted
  history's, which narrows Thompson sampling's posterior as the history grows); MAML, a point
  mass, is unchanged;
- ``greedy``: ABML acts on the mean of q(φ; λ) instead of a sample of it (Thompson sampling, the
  paper's and the default), as MAML acts: what the sampling costs or gains.

``--meta_steps`` plays the models saved at those meta-training steps (checkpoints of the run in
``--workdir``) instead of its last, each variant once per step: the number of meta-training
steps chosen on the validation problems.

Prints normalised regret (Uniform = 100, mean ± standard error) and play seconds per 1,000
pulls of one run, and writes them to ``--out``.
"""
import json
import os

import ml_collections
from absl import app, flags

from experiments.wheel_bandit import (finished_run_config, make_agents, meta_train_all,
                                      validation_key)
from metabayes.bandit.trials import play_all, summarise, variant_rows
from metabayes.training.checkpointing import Checkpointer

VARIANTS = {
    "default": {},
    "window": {"memory": "window"},
    "summed steps": {"step_reference": None},
    "every pull": {"readapt_growth": 0.0},
    "training step": {"eval_inner_steps": 5, "eval_inner_lr": None},
    "half training step": {"eval_inner_lr": lambda config: config.inner_lr / 2},
    "quarter training step": {"eval_inner_lr": lambda config: config.inner_lr / 4},
    "warm start": {"warm_start": True},
    "10 steps": {"eval_inner_steps": 10},
    "20 steps": {"eval_inner_steps": 20},
    "40 steps": {"eval_inner_steps": 40},
    "80 steps": {"eval_inner_steps": 80},
    "training reservoir": {"play_per_arm": None},
    "reservoir 512": {"play_per_arm": 512},
    "whole reservoir": {"smallest_support": None},
    "warm training step": {"warm_start": True, "eval_inner_steps": 5, "eval_inner_lr": None},
    "gradient variance": {"eval_local_variance": "gradient"},
    "greedy": {"policy": lambda config: ml_collections.ConfigDict(
        dict(config.policy.to_dict(), abml="greedy"))},
}

_WORKDIR = flags.DEFINE_string("workdir", "runs/wheel_bandit", "A trained experiment's workdir.")
_N = flags.DEFINE_integer("n", 2_000, "Pulls per run.")
_TRIALS = flags.DEFINE_integer("trials", 10, "Runs per δ.")
_DELTAS = flags.DEFINE_list("deltas", ["0.5", "0.7", "0.9", "0.95", "0.99"], "δ values.")
_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS), "Which variants to play.")
_META_STEPS = flags.DEFINE_list("meta_steps", [], "Play the models saved at these meta-training "
                                "steps instead of the run's last (each must have a checkpoint).")
_OUT = flags.DEFINE_string("out", None, "Write the results here (JSON).")


def variant_config(name: str):
    config = finished_run_config(_WORKDIR.value)
    with config.unlocked():
        for key, value in VARIANTS[name].items():
            config[key] = value(config) if callable(value) else value
        config.update(n=_N.value, trials=_TRIALS.value,
                      deltas=tuple(float(d) for d in _DELTAS.value))
    return config


def meta_steps(config) -> list:
    """--meta_steps as integers, each saved for every algorithm of the run ([config.steps], the
    run's last, if unset)."""
    if not _META_STEPS.value:
        return [config.steps]
    try:
        steps = [int(step) for step in _META_STEPS.value]
    except ValueError:
        raise app.UsageError(f"--meta_steps must be integers, got {','.join(_META_STEPS.value)}")
    for algorithm in config.algorithms:
        checkpointer = Checkpointer(os.path.join(_WORKDIR.value, "checkpoints", algorithm))
        saved = checkpointer.saved_steps()
        checkpointer.close()
        if missing := sorted(set(steps) - set(saved)):
            raise app.UsageError(f"--meta_steps {missing}: no checkpoint of {algorithm} in "
                                 f"{_WORKDIR.value} (saved: {saved})")
    return steps


def at_steps(config, steps: int):
    """A copy of ``config`` that plays the checkpoint of meta-training step ``steps``."""
    config = config.copy_and_resolve_references()
    config.steps = steps
    return config


def main(argv):
    del argv
    unknown = sorted(set(_VARIANTS.value) - set(VARIANTS))
    if unknown:
        raise app.UsageError(f"--variants must be among {sorted(VARIANTS)}, got {unknown}")
    configs = {name: variant_config(name) for name in _VARIANTS.value}   # refuses a bad workdir
    if _META_STEPS.value:
        configs = {f"{name}, {steps} steps": at_steps(config, steps)
                   for name, config in configs.items() for steps in meta_steps(config)}
    results = {}
    print(f"normalised regret (Uniform = 100), n = {_N.value}, {_TRIALS.value} trials; "
          "s / 1,000 pulls of one run")
    for name, config in configs.items():
        learners, _, _ = meta_train_all(config, _WORKDIR.value)
        final, _, seconds = play_all(make_agents(config, learners), config.deltas,
                                     config.trials, config.n, validation_key(config))
        summary = summarise(config.deltas, final)
        results[name] = {"agents": summary, "seconds": seconds}
        print(variant_rows(name, summary, seconds), flush=True)
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump({"n": _N.value, "trials": _TRIALS.value, "deltas": _DELTAS.value,
                       "variants": results}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
