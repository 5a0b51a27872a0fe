r"""What each play-time choice of the wheel-bandit agents costs and gains (issue 19), on the
meta-learners a ``python -m experiments.wheel_bandit`` run has trained in ``--workdir``.

    python -m benchmarks.wheel_bandit_choices --workdir=runs/wheel_bandit --n=2000 --trials=10 \
        --out=benchmarks/results/wheel_bandit_choices_2000.json

Every variant plays ABML and MAML (and Uniform, for the normalisation) on the same validation
problems (``validation_key``: other contexts and rewards than Table 1's, which are played only
once a setting is chosen), changing one setting of the default config
(``benchmarks.wheel_bandit_variants`` lists them).

``--meta_steps`` plays the models saved at those meta-training steps (checkpoints of the run in
``--workdir``) instead of its last, each variant once per step: the number of meta-training
steps chosen on the validation problems.

Prints normalised regret (Uniform = 100, mean ± standard error) and play seconds per 1,000
pulls of one run, and writes them to ``--out`` with the mean regret curves; ``--per_pull`` also
prints each variant's regret per pull between those pulls (as ``benchmarks.wheel_bandit_plot``).
"""
import os

from absl import flags

from benchmarks.wheel_bandit_plot import check_per_pull, define_per_pull
from benchmarks.wheel_bandit_variants import (PLAY_HEAD, PLAY_SETTINGS, VARIANTS, check_variants,
                                             with_variant)
from experiments.cli import define_number_list, run, write_json
from experiments.wheel_bandit import (finished_run_config, make_agents, meta_train_all,
                                      validation_key)
from metabayes.bandit.trials import (kept_curves, per_pull_table, play_all, summarise,
                                     variant_rows)
from metabayes.training.checkpointing import Checkpointer

_WORKDIR = flags.DEFINE_string("workdir", "runs/wheel_bandit", "A trained experiment's workdir.")
_N = flags.DEFINE_integer("n", 2_000, "Pulls per run.", lower_bound=1)
_TRIALS = flags.DEFINE_integer("trials", 10, "Runs per δ.", lower_bound=1)
_DELTAS = define_number_list("deltas", [0.5, 0.7, 0.9, 0.95, 0.99], "δ values.", number=float,
                             lower_bound=0.0, upper_bound=1.0)
_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS), "Which variants to play; "
                              "\"20 steps+greedy\" plays the two composed.")
_META_STEPS = define_number_list("meta_steps", [], "Play the models saved at these meta-training "
                                 "steps instead of the run's last (each must have a checkpoint).",
                                 lower_bound=0)
_PER_PULL = define_per_pull()
_OUT = flags.DEFINE_string("out", None, "Write the results here (JSON).")


def variant_config(name: str):
    config = with_variant(finished_run_config(_WORKDIR.value), name, PLAY_HEAD.value)
    with config.unlocked():
        config.update(n=_N.value, trials=_TRIALS.value,
                      deltas=tuple(_DELTAS.value))
    return config


def meta_steps(config) -> list:
    """--meta_steps as integers, each saved for every algorithm of the run ([config.steps], the
    run's last, if unset)."""
    if not _META_STEPS.value:
        return [config.steps]
    steps = _META_STEPS.value
    for algorithm in config.algorithms:
        checkpointer = Checkpointer(os.path.join(_WORKDIR.value, "checkpoints", algorithm))
        saved = checkpointer.saved_steps()
        checkpointer.close()
        if missing := sorted(set(steps) - set(saved)):
            raise ValueError(f"--meta_steps {missing}: no checkpoint of {algorithm} in "
                             f"{_WORKDIR.value} (saved: {saved})")
    return steps


def at_steps(config, steps: int):
    """A copy of ``config`` that plays the checkpoint of meta-training step ``steps``."""
    config = config.copy_and_resolve_references()
    config.steps = steps
    return config


def main(argv):
    del argv
    check_variants(_VARIANTS.value, "variants")
    check_per_pull(_PER_PULL.value, _N.value)
    configs = {name: variant_config(name) for name in _VARIANTS.value}   # refuses a bad workdir
    if _META_STEPS.value:
        configs = {f"{name}, {steps} steps": at_steps(config, steps)
                   for name, config in configs.items() for steps in meta_steps(config)}
    results = {}
    print(f"normalised regret (Uniform = 100), n = {_N.value}, {_TRIALS.value} trials; "
          "s / 1,000 pulls of one run")
    for name, config in configs.items():
        learners, _, _ = meta_train_all(config, _WORKDIR.value)
        final, curves, seconds = play_all(make_agents(config, learners), config.deltas,
                                          config.trials, config.n, validation_key(config))
        summary = summarise(config.deltas, final)
        kept = kept_curves(config.deltas, config.n, config.curve_points, curves)
        results[name] = {"agents": summary, "seconds": seconds, "curves": kept, "settings": {
            key: config[key].to_dict() if hasattr(config[key], "to_dict") else config[key]
            for key in PLAY_SETTINGS}}
        print(variant_rows(name, summary, seconds), flush=True)
        if _PER_PULL.value:
            print(per_pull_table(kept["steps"], {agent: kept[agent] for agent in curves},
                                 config.deltas, _PER_PULL.value), flush=True)
    write_json(_OUT.value, {"n": _N.value, "trials": _TRIALS.value,
                            "deltas": [str(delta) for delta in _DELTAS.value],
                            "variants": results})


if __name__ == "__main__":
    run(main)
