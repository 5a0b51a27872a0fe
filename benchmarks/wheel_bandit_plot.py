r"""One regret-versus-pulls figure from several ``python -m experiments.wheel_bandit`` runs played
on the same problems (the same n, trials and δ), e.g. one workdir per meta-learner, each played at
its own number of meta-training steps.

    python -m benchmarks.wheel_bandit_plot --out=docs/wheel_bandit_regret.png \
        --results=runs/abml/results.json,runs/maml/results.json,runs/maml_msgd/results.json \
        --labels=",,MAML + Meta-SGD"

``--labels`` renames each run's meta-learner (empty: keep its name); Uniform and NeuralLinear
keep theirs, and an agent in several runs is drawn once (the same problems give it the same
curve). ``--per_pull=1000,5000,20000,80000`` also prints each agent's mean regret per pull
between those pulls (each moved to the nearest point of the curves): whether an agent is still
learning late in the run or has reached its floor.
"""
import json

from absl import flags

from experiments.cli import define_number_list, run
from metabayes.bandit.trials import per_pull_table
from metabayes.evaluation.plotting import plot_regret

BASELINES = ("Uniform", "NeuralLinear")
RESULT_KEYS = {"n", "trials", "deltas", "curves"}


def merge_curves(runs: list, labels: list) -> dict:
    """{agent: {δ: mean cumulative regret at ``runs[0]["curves"]["steps"]``}} over ``runs``
    (results.json contents), meta-learners renamed by ``labels``; ValueError for runs not played
    alike or two agents of one name."""
    first = runs[0]
    for run in runs[1:]:
        if any(run[key] != first[key] for key in ("n", "trials", "deltas")) or (
                run["curves"]["steps"] != first["curves"]["steps"]):
            raise ValueError("--results must be runs played alike (n, trials, δ, curve points)")
    curves = {}
    for run, label in zip(runs, labels + [""] * (len(runs) - len(labels))):
        for name, per_delta in run["curves"].items():
            if name == "steps" or (name in BASELINES and name in curves):
                continue
            name = name if name in BASELINES or not label else label
            if name in curves:
                raise ValueError(f"--labels: two runs' agents are both called {name!r}")
            curves[name] = per_delta
    return curves


def check_per_pull(marks: list, num_steps: int):
    """ValueError unless ``marks`` (--per_pull) ascend within 1..``num_steps``."""
    if marks and (marks != sorted(set(marks)) or marks[0] < 1 or marks[-1] > num_steps):
        raise ValueError(f"--per_pull must ascend within 1..{num_steps} (the pulls per run), "
                         f"got {','.join(map(str, marks))}")


def main(argv):
    del argv
    if not _RESULTS.value:
        raise ValueError("--results must name at least one results.json")
    runs = []
    for path in _RESULTS.value:
        try:
            with open(path) as f:
                runs.append(json.load(f))
        except (OSError, ValueError) as error:   # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"--results: cannot read {path}: {error}")
        if not (isinstance(runs[-1], dict) and RESULT_KEYS <= runs[-1].keys()):
            raise ValueError(f"--results: {path} is not a wheel-bandit run's results.json")
    curves = merge_curves(runs, _LABELS.value)
    deltas = runs[0]["deltas"]
    check_per_pull(_PER_PULL.value, runs[0]["n"])
    plot_regret(_OUT.value, deltas, runs[0]["trials"], runs[0]["curves"]["steps"], curves)
    print(f"wrote {_OUT.value}: {', '.join(curves)}")
    if _PER_PULL.value:
        print(per_pull_table(runs[0]["curves"]["steps"], curves, deltas, _PER_PULL.value))


def define_per_pull() -> flags.FlagHolder:
    """--per_pull, here and in ``benchmarks.wheel_bandit_choices``."""
    return define_number_list("per_pull", [], "Also print the regret per pull between these "
                              "pull counts (ascending).", lower_bound=1)


if __name__ == "__main__":   # flags exist only when run as a program, so modules import freely
    _RESULTS = flags.DEFINE_list("results", None, "results.json files of wheel-bandit runs.")
    _LABELS = flags.DEFINE_list("labels", [], "A name for each run's meta-learner ('' keeps it).")
    _OUT = flags.DEFINE_string("out", "regret.png", "The figure (PNG).")
    _PER_PULL = define_per_pull()
    run(main)
