"""End to end on the shipped Omniglot data: a short run learns, writes eval.json and its
figures, resumes from a checkpoint to the same parameters, and serves predictions."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import classification as omniglot
from experiments.configs.omniglot import get_config, resolve
from metabayes.data.omniglot import load_omniglot
from metabayes.training.predictor import load_predictor


def tiny_config(**overrides):
    config = get_config("cpu_demo")
    config.update({**dict(filters=8, meta_batch=2, steps=4, eval_every=4, eval_tasks=2,
                          eval_meta_batch=2, checkpoint_every=2, log_every=1, eval_samples=2,
                          num_tasks=100),   # N fixed: a run extended from 2 to 4 steps keeps it
                   **overrides})
    return config


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("omniglot_cache")
    os.environ["METABAYES_CACHE"] = str(path)
    yield path
    os.environ.pop("METABAYES_CACHE")


def leaves(workdir):
    return jax.tree_util.tree_leaves(load_predictor(str(workdir)).params)


def test_resumed_run_ends_with_the_same_parameters(tmp_path, cache):
    """MATH.md §6.8: stop at step 2, start the same command again, end bit-identical (with a
    training query size of its own). The reported training time adds up over the parts, and
    a run restarted after its last step reports the time its checkpoint recorded."""
    config = lambda **kw: tiny_config(train_query=3, **kw)
    omniglot.train_and_evaluate(config(), str(tmp_path / "straight"), progress=False)
    first = omniglot.train_and_evaluate(config(steps=2), str(tmp_path / "resumed"), progress=False)
    second = omniglot.train_and_evaluate(config(), str(tmp_path / "resumed"), progress=False)
    for a, b in zip(leaves(tmp_path / "straight"), leaves(tmp_path / "resumed")):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    lines = [json.loads(line) for line in open(tmp_path / "resumed" / "metrics.jsonl")]
    assert [r["step"] for r in lines if r["split"] == "train"] == [0, 1, 2, 3]
    again = omniglot.train_and_evaluate(config(), str(tmp_path / "resumed"), progress=False)
    with pytest.raises(ValueError, match="`inner_lr` 0.04 -> 0.01"):   # and β that follows it
        omniglot.train_and_evaluate(config(inner_lr=0.01), str(tmp_path / "resumed"))
    with pytest.raises(ValueError, match=r"^`steps` = 3: the run in .* was trained further"):
        omniglot.train_and_evaluate(config(steps=3), str(tmp_path / "resumed"), progress=False)
    rerun = omniglot.train_and_evaluate(config(), str(tmp_path / "resumed"), progress=False)
    assert 0 < first["train_seconds"] < second["train_seconds"]
    assert 0 < again["train_seconds"] <= second["train_seconds"]   # saved before the run ended
    assert rerun["train_seconds"] == again["train_seconds"]   # the checkpoint's, to the digit


def test_out_of_memory_names_the_flags(tmp_path, cache, monkeypatch):
    """XLA's RESOURCE_EXHAUSTED in training or evaluation becomes a MemoryError naming the
    flags that size that stage; other runtime errors pass through unchanged."""
    def raises(message):
        def run(*args, **kwargs):
            raise jax.errors.JaxRuntimeError(message)
        return run

    exhausted = "RESOURCE_EXHAUSTED: Out of memory allocating 27122515928 bytes."
    monkeypatch.setattr(omniglot, "fit", lambda learner, state, *args, **kwargs: (state, []))
    monkeypatch.setattr(omniglot, "classification_evaluation", raises(exhausted))
    with pytest.raises(MemoryError, match=r"^evaluation ran out of memory \(RESOURCE_EXHAUSTED.*"
                                          r"--config.task_chunk.*--config.eval_meta_batch"):
        omniglot.train_and_evaluate(tiny_config(), str(tmp_path / "eval"), progress=False)
    monkeypatch.setattr(omniglot, "fit", raises(exhausted))
    with pytest.raises(MemoryError, match=r"^meta-training ran out of memory.*--config.meta_batch"):
        omniglot.train_and_evaluate(tiny_config(), str(tmp_path / "train"), progress=False)
    monkeypatch.setattr(omniglot, "fit", raises("INTERNAL: something else"))
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        omniglot.train_and_evaluate(tiny_config(), str(tmp_path / "other"), progress=False)


def test_short_run_learns_and_writes_outputs(tmp_path, cache):
    config = tiny_config(steps=40, eval_every=40, checkpoint_every=20, meta_batch=4, filters=16,
                         inner_lr=0.08, log_every=1, eval_tasks=10)
    report = omniglot.train_and_evaluate(config, str(tmp_path), progress=False)
    history = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    losses = [row["outer_nll"] for row in history if row["split"] == "train"]
    assert np.mean(losses[-8:]) < 0.9 * np.mean(losses[:8])  # 158.6 -> 139.5 when written
    written = json.load(open(tmp_path / "eval.json"))
    for name in ("nll", "brier", "ece", "mce", "out_of_episode_auroc"):
        assert np.isfinite(written[name]), name
    assert written["accuracy"]["mean"] == pytest.approx(report["accuracy"]["mean"])
    for figure in ("reliability.png", "entropy_cdf.png"):
        assert os.path.getsize(tmp_path / figure) > 5_000
    assert any(name.startswith("events") for name in os.listdir(tmp_path / "tb"))

    predictor = load_predictor(str(tmp_path))
    images = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    probs = predictor.predict(images, np.arange(5), images)
    assert probs.shape == (5, 5)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="support_labels"):
        predictor.predict(images, np.arange(5) + 3, images)
    with pytest.raises(ValueError, match="query_images"):
        predictor.predict(images, np.arange(5), images[..., 0])


def test_bad_config_names_the_flag(tmp_path, cache):
    """Each bad flag is named before any training (no checkpoint is written)."""
    with pytest.raises(ValueError, match="--config.ways .* validation split.* up to ways more"):
        omniglot.train_and_evaluate(tiny_config(ways=300), str(tmp_path))
    with pytest.raises(ValueError, match="--config.ways .* training split"):
        omniglot.train_and_evaluate(tiny_config(ways=5000), str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()
    with pytest.raises(ValueError, match="`conv` must be one of"):
        omniglot.train_and_evaluate(tiny_config(conv="cudnn"), str(tmp_path))
    with pytest.raises(ValueError, match="`train_query` must be an integer >= 1"):
        omniglot.train_and_evaluate(tiny_config(train_query=0), str(tmp_path))
    with pytest.raises(ValueError, match="`algorithm` must be one of"):
        omniglot.train_and_evaluate(tiny_config(algorithm="reptile"), str(tmp_path))


@pytest.mark.parametrize("evaluate_on", ["test", "validation"])
def test_intervals_score_validation_tasks_and_test_tasks_only_once_at_the_end(
        evaluate_on, tmp_path, cache, monkeypatch):
    """Interval evaluations (step 2) score validation tasks; the final one scores the
    ``evaluate_on`` split, so a search run (validation) never sees a test task."""
    data = load_omniglot("small", rotate_train=False)
    parts = {"validation": data.validation.images[..., None].shape,
             "test": data.test.images[..., None].shape}
    assert parts["validation"] != parts["test"]
    scored = []
    real_evaluate = omniglot.evaluate

    def recording_evaluate(evaluator, params, sampler, *args):
        scored.append(next(name for name, shape in parts.items()
                           if shape == sampler.images.shape))
        return real_evaluate(evaluator, params, sampler, *args)

    monkeypatch.setattr(omniglot, "evaluate", recording_evaluate)
    report = omniglot.train_and_evaluate(tiny_config(eval_every=2, evaluate_on=evaluate_on),
                                         str(tmp_path), progress=False)
    assert scored == ["validation", evaluate_on]
    assert report["evaluated_on"] == evaluate_on and report["outer_data"] == "support_query"
    logged = {json.loads(line)["split"] for line in open(tmp_path / "metrics.jsonl")}
    assert logged == {"train", "validation", "scales"} | {evaluate_on}
    scales = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")
              if '"scales"' in line]
    assert [row["step"] for row in scales] == [0, 2, 4]
    assert os.path.getsize(tmp_path / "posterior_scales.png") > 5_000
    with pytest.raises(ValueError, match="`evaluate_on` must be one of"):
        omniglot.train_and_evaluate(tiny_config(evaluate_on="train"), str(tmp_path / "bad"))


def test_each_algorithm_gets_its_validation_selected_settings():
    abml, maml = get_config("5w1s"), get_config("5w1s,maml")
    assert (abml.algorithm, maml.algorithm) == ("abml", "maml")
    assert abml.inner_lr == maml.inner_lr == pytest.approx(0.5 * 0.4 / 5)   # half the published
    assert resolve(abml).kl_weight == pytest.approx(0.05 * np.exp(-9.0) / 0.08)   # β at the published
    assert (abml.eval_inner_steps, maml.eval_inner_steps) == (5, 3)
    abml, maml = get_config("20w1s"), get_config("20w1s,maml")   # 20-way's own selection
    assert abml.inner_lr == maml.inner_lr == pytest.approx(0.1 / 20)   # the published
    assert resolve(abml).kl_weight == pytest.approx(0.05 * np.exp(-9.0) / 0.005)
    assert (abml.eval_inner_steps, maml.eval_inner_steps) == (5, 10)
    named, default = get_config("cpu_demo,abml").to_dict(), get_config("cpu_demo").to_dict()
    assert (named.pop("name"), default.pop("name")) == ("cpu_demo,abml", "cpu_demo")
    assert named == default
    for bad in ("5w2s", "cpu_demo,reptile"):
        with pytest.raises(ValueError, match="unknown omniglot config"):
            get_config(bad)


def test_an_unknown_config_name_ends_the_program_with_one_line(tmp_path):
    """From the command line: exit 1, the flag and the config's own reason, no traceback."""
    run = subprocess.run([sys.executable, "-m", "experiments.omniglot",
                          "--config=experiments/configs/omniglot.py:cpu_demo,reptile",
                          f"--workdir={tmp_path}"], capture_output=True, text=True, timeout=300,
                         cwd=os.path.join(os.path.dirname(__file__), ".."))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "--config=" in run.stderr and "unknown omniglot config 'cpu_demo,reptile'" in run.stderr
