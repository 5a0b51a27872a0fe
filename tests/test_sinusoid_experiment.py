"""End to end: ``experiments.sinusoid`` trains, evaluates and writes its outputs (short runs)."""
import json
import os
import re

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


def test_bad_flags_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--config.algorithm"):
        sinusoid.train_and_evaluate(short_config("reptile"), str(tmp_path))
    with pytest.raises(ValueError, match="--config.inner_optimizer"):
        sinusoid.train_and_evaluate(short_config("abml", inner_optimizer="lbfgs"), str(tmp_path))


def test_readme_example_runs():
    """The README's research-code example composing the three ELBO terms runs as printed."""
    with open(os.path.join(os.path.dirname(__file__), "..", "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks, "README.md has no python example"
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert np.isfinite(float(namespace["loss"]))
