"""End to end: ``experiments.sinusoid`` trains, evaluates and writes its outputs (short runs)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from experiments import sinusoid


def short_config(algorithm, **overrides):
    config = sinusoid.get_config()
    config.update(algorithm=algorithm, steps=80, meta_batch=8, hidden=(20, 20), eval_tasks=40,
                  plot_tasks=2, log_every=1, **overrides)
    return config


@pytest.mark.parametrize("algorithm", ["abml", "maml"])
def test_short_run_learns_and_writes_outputs(algorithm, tmp_path):
    results = sinusoid.train_and_evaluate(short_config(algorithm), str(tmp_path))
    losses = [row["outer_nll"] for row in results["history"]]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    with open(tmp_path / "metrics.json") as f:
        written = json.load(f)
    assert written["mse"]["mean"] == pytest.approx(results["mse"]["mean"])
    assert np.isfinite(written["nll"]["mean"]) and written["nll"]["ci95"] > 0
    assert os.path.getsize(tmp_path / "sinusoid.png") > 10_000
    for name in ("predictive_sd_seen", "predictive_sd_unseen", "bayes_sd_seen", "bayes_sd_unseen"):
        assert np.isfinite(written[name]) and written[name] >= 0.1 - 1e-6   # the noise sd is a floor
    assert written["widening"] == pytest.approx(written["predictive_sd_unseen"]
                                                / written["predictive_sd_seen"])
    assert 0.2 < written["mirror_widening"] < 5 and 0.2 < written["bayes_mirror_widening"] < 5
    assert written["outer_data"] == ("query" if algorithm == "maml" else "support_query")


def test_mirror_ratio_compares_the_mirror_image_with_the_seen_range():
    """Support on [−5, −3]: sd 1 there and 3 on [3, 5] gives 3, whatever lies in between; a band
    that only grows with |x| gives 1."""
    grid = np.linspace(-5.0, 5.0, 201)
    std = np.stack([np.where(grid <= -3, 1.0, np.where(grid >= 3, 3.0, 50.0)),
                    1.0 + np.abs(grid)])
    assert sinusoid.mirror_ratio(std[:1], grid, (-5.0, -3.0)) == pytest.approx(3.0)
    assert sinusoid.mirror_ratio(std[1:], grid, (-5.0, -3.0)) == pytest.approx(1.0)


def test_seen_unseen_sd_takes_the_seen_range_and_one_unit_beyond():
    grid = np.linspace(-5.0, 5.0, 201)
    std = np.stack([np.where(grid <= -3, 1.0, np.where(grid < -2, 7.0, 2.0)),
                    np.where(grid <= -3, 3.0, np.where(grid < -2, 7.0, 4.0)),
                    np.full(201, 100.0)])
    assert sinusoid.seen_unseen_sd(std, grid, (-5.0, -3.0)) == (3.0, 4.0)


def test_bad_flags_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="`algorithm` must be one of"):
        sinusoid.train_and_evaluate(short_config("reptile"), str(tmp_path))
    with pytest.raises(ValueError, match="`inner_optimizer` must be one of"):
        sinusoid.train_and_evaluate(short_config("abml", inner_optimizer="lbfgs"), str(tmp_path))
    for seen_range in [(-5.0, 4.5), (-3.0, -4.0), (-6.0, -3.0), (-5.0,)]:
        with pytest.raises(ValueError, match="`seen_range` must be"):
            sinusoid.train_and_evaluate(short_config("abml", seen_range=seen_range), str(tmp_path))


def test_bad_flag_ends_the_program_with_one_line(tmp_path):
    """From the command line a bad flag exits 1 with its message on stderr, no traceback."""
    run = subprocess.run([sys.executable, "-m", "experiments.sinusoid", "--config.seen_range=(-5,4.5)",
                          f"--workdir={tmp_path}"], capture_output=True, text=True, timeout=300,
                         cwd=os.path.join(os.path.dirname(__file__), ".."))
    assert run.returncode == 1
    assert "error: --config.seen_range must be" in run.stderr and "Traceback" not in run.stderr


def test_readme_example_runs():
    """The README's research-code example composing the three ELBO terms runs as printed."""
    with open(os.path.join(os.path.dirname(__file__), "..", "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks, "README.md has no python example"
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert np.isfinite(float(namespace["loss"]))
