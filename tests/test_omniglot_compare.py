"""experiments.omniglot_compare: one table and one entropy CDF for runs on the same test tasks."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import omniglot_compare
from experiments.configs.omniglot import get_config


def fake_run(folder, algorithm, accuracy, **config_overrides):
    os.makedirs(folder)
    config = get_config("cpu_demo")
    config.update(config_overrides)
    entropy = np.random.default_rng(len(algorithm)).random(20)
    files = {"config": json.loads(config.to_json()),
             "eval": {"algorithm": algorithm, "accuracy": {"mean": accuracy, "ci95": 0.02},
                      "nll": 0.5, "brier": 0.25, "ece": 0.03, "mce": 0.1,
                      "out_of_episode_auroc": 0.7, "steps": 300, "train_seconds": 600.0,
                      "outer_data": "query" if algorithm == "maml" else "support_query"},
             "entropies": {"in_episode": entropy.tolist(), "out_of_episode": (entropy + 0.5).tolist()}}
    for name, content in files.items():
        with open(os.path.join(folder, f"{name}.json"), "w") as f:
            json.dump(content, f)
    return str(folder)


def test_table_and_entropy_cdf(tmp_path):
    runs = {w: omniglot_compare.load_run(w) for w in (fake_run(tmp_path / "a", "abml", 0.8123),
                                                      fake_run(tmp_path / "m", "maml", 0.85))}
    omniglot_compare.check_same_tasks(runs)
    table = omniglot_compare.comparison_table(runs).splitlines()
    assert len(table) == 4
    assert table[2].startswith("| a | abml | support ∪ query | 81.2 ± 2.0% | 0.500 |")
    assert table[3].startswith("| m | maml | query | 85.0 ± 2.0% |") and "| 10 min |" in table[2]
    omniglot_compare.write_entropy_cdf(str(tmp_path / "cdf.png"), runs)
    assert os.path.getsize(tmp_path / "cdf.png") > 5_000


def test_refuses_runs_on_different_tasks_or_unfinished(tmp_path):
    runs = {w: omniglot_compare.load_run(w) for w in (fake_run(tmp_path / "a", "abml", 0.8),
                                                      fake_run(tmp_path / "b", "maml", 0.8, seed=3))}
    with pytest.raises(ValueError, match="different tasks: seed"):
        omniglot_compare.check_same_tasks(runs)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="eval.json is missing|config.json is missing"):
        omniglot_compare.load_run(str(tmp_path / "empty"))


@pytest.mark.parametrize("problem", ["different tasks", "unfinished", "damaged"])
def test_command_line_errors_end_with_one_line(tmp_path, problem):
    first = fake_run(tmp_path / "a", "abml", 0.8)
    second = {"different tasks": lambda: fake_run(tmp_path / "b", "maml", 0.8, seed=3),
              "unfinished": lambda: str(tmp_path / "a" / "missing"),
              "damaged": lambda: fake_run(tmp_path / "b", "maml", 0.8)}[problem]()
    if problem == "damaged":
        (tmp_path / "b" / "eval.json").write_text('{"algorithm": "ma')   # cut short
    run = subprocess.run([sys.executable, "-m", "experiments.omniglot_compare",
                          f"--workdirs={first},{second}"], capture_output=True, text=True,
                         timeout=300, cwd=os.path.join(os.path.dirname(__file__), ".."))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert {"different tasks": "seed = 3 vs 0", "unfinished": "config.json is missing",
            "damaged": "eval.json: not valid JSON"}[problem] in lines[0]
