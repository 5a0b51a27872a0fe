r"""Side by side: the evaluations of several ``experiments.omniglot`` workdirs on the same tasks.

    python -m experiments.omniglot_compare --workdirs=runs/omniglot,runs/omniglot_maml \
        --entropy_cdf=runs/entropy_cdf.png

Prints one markdown table (accuracy ± 95% CI, NLL, Brier, ECE, MCE, out-of-episode AUROC,
steps, training time) and writes one entropy-CDF figure with every run's in- and out-of-episode
curves. Refuses runs that were not evaluated on the same test tasks.
"""
import json
import os

from absl import flags

from experiments.cli import run
from metabayes.errors import DataError
from metabayes.evaluation.plotting import plot_entropy_cdf

SAME_TASKS = ("seed", "split", "evaluate_on", "data_source", "data_dir", "ways", "shots", "query",
              "eval_tasks", "eval_meta_batch")   # config entries that fix the evaluated tasks


def load_run(workdir: str) -> dict:
    """A workdir's config.json, eval.json and entropies.json; a clear error if one is missing."""
    run = {}
    for name in ("config", "eval", "entropies"):
        path = os.path.join(workdir, f"{name}.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--workdirs: {path} is missing; is {workdir} a finished "
                                    "experiments.omniglot run?")
        try:
            with open(path) as f:
                run[name] = json.load(f)
        except ValueError as error:
            raise DataError(f"{path}: not valid JSON ({error}); rerun the experiment "
                            "(it rewrites the file)") from None
    return run


def check_same_tasks(runs: dict) -> None:
    """ValueError naming the config entry if the runs were evaluated on different tasks."""
    (first, reference), *others = runs.items()
    for workdir, run in others:
        for key in SAME_TASKS:
            if run["config"].get(key) != reference["config"].get(key):
                raise ValueError(f"--workdirs: {workdir} and {first} were evaluated on different "
                                 f"tasks: {key} = {run['config'].get(key)!r} vs "
                                 f"{reference['config'].get(key)!r}")


def comparison_table(runs: dict) -> str:
    """A markdown table with one row per run."""
    lines = ["| run | algorithm | outer data | accuracy | NLL | Brier | ECE | MCE | "
             "out-of-episode AUROC | steps | training |", "|---" * 11 + "|"]
    for workdir, run in runs.items():
        e = run["eval"]
        lines.append(f"| {os.path.basename(os.path.normpath(workdir))} | {e['algorithm']} | "
                     f"{e.get('outer_data', 'support_query').replace('_', ' ∪ ')} | "
                     f"{100 * e['accuracy']['mean']:.1f} ± {100 * e['accuracy']['ci95']:.1f}% | "
                     f"{e['nll']:.3f} | {e['brier']:.3f} | {e['ece']:.3f} | {e['mce']:.3f} | "
                     f"{e['out_of_episode_auroc']:.3f} | {e['steps']} | "
                     f"{e['train_seconds'] / 60:.0f} min |")
    return "\n".join(lines)


def write_entropy_cdf(path: str, runs: dict) -> None:
    """Every run's entropy CDFs in one PNG, labelled by algorithm (by workdir if two share one)."""
    algorithms = [run["eval"]["algorithm"].upper() for run in runs.values()]
    unique = len(set(algorithms)) == len(algorithms)
    config = next(iter(runs.values()))["config"]
    plot_entropy_cdf(path, {
        (algorithm if unique else os.path.basename(os.path.normpath(workdir))):
            (run["entropies"]["in_episode"], run["entropies"]["out_of_episode"])
        for algorithm, (workdir, run) in zip(algorithms, runs.items())},
        f"Omniglot {config['ways']}-way {config['shots']}-shot")


def main(argv):
    if len(_WORKDIRS.value) < 2:
        raise ValueError(f"--workdirs needs at least two runs, got {_WORKDIRS.value}")
    runs = {workdir: load_run(workdir) for workdir in _WORKDIRS.value}
    check_same_tasks(runs)
    print(comparison_table(runs))
    if _ENTROPY_CDF.value:
        write_entropy_cdf(_ENTROPY_CDF.value, runs)
        print(f"wrote {_ENTROPY_CDF.value}")


if __name__ == "__main__":
    _WORKDIRS = flags.DEFINE_list("workdirs", [], "Finished experiments.omniglot workdirs.")
    _ENTROPY_CDF = flags.DEFINE_string("entropy_cdf", "", "Where to write the joint entropy CDF "
                                       "PNG (none if empty).")
    run(main)
