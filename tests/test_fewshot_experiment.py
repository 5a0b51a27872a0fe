"""experiments.fewshot end to end on synthetic miniImageNet and CIFAR-FS files: a short run
learns, writes eval.json, and serves predictions of the set's shape; bad settings and missing
data end the program with one line."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fewshot_files as ff
from experiments import classification
from experiments.configs.fewshot import SETTINGS, get_config
from metabayes.training.predictor import load_predictor

ROOT = os.path.join(os.path.dirname(__file__), "..")


# A few steps of a small network on synthetic files (4 test tasks; the step size that learns).
TINY = dict(filters=8, meta_batch=2, steps=30, eval_every=30, checkpoint_every=15, log_every=1,
            eval_tasks=4, eval_meta_batch=2, eval_samples=2, query=2, inner_steps=1,
            eval_inner_steps=1, inner_lr=0.08, num_tasks=100, verify_md5=False)


def tiny_config(name, data_dir, **overrides):
    config = get_config(name)
    config.update({**TINY, "data_dir": str(data_dir), **overrides})
    return config


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("METABAYES_CACHE", str(tmp_path / "cache"))


def assert_learned(workdir, report=None):
    """The training loss fell and eval.json holds the final test evaluation."""
    history = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    losses = [row["outer_nll"] for row in history if row["split"] == "train"]
    assert np.mean(losses[-6:]) < 0.9 * np.mean(losses[:6])
    written = json.load(open(workdir / "eval.json"))
    assert written["evaluated_on"] == "test" and np.isfinite(written["nll"])
    if report is not None:
        assert written["accuracy"]["mean"] == pytest.approx(report["accuracy"]["mean"])


def test_short_miniimagenet_run_learns_and_serves_predictions(tmp_path, cache):
    data_dir = ff.write_cache_layout(tmp_path / "data", ff.mini_pools(images=10))
    workdir = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # a synthetic subset of miniImageNet's classes
        report = classification.train_and_evaluate(tiny_config("miniimagenet_5w1s", data_dir),
                                                    str(workdir), progress=False)
    assert_learned(workdir, report)
    assert json.load(open(workdir / "config.json"))["dataset"] == "miniimagenet"
    predictor = load_predictor(str(workdir))
    images = np.random.default_rng(0).random((5, 84, 84, 3), dtype=np.float32)
    assert predictor.input_shape == (84, 84, 3)
    assert predictor.predict(images, np.arange(5), images).shape == (5, 5)


def test_the_fewshot_program_learns_cifarfs(tmp_path):
    """``python -m experiments.fewshot`` itself, on a synthetic CIFAR-100 archive."""
    data_dir = ff.write_cifar(tmp_path / "data", ff.cifar_batches(), archive=True)
    flags = [f"--config.{key}={value}" for key, value in {**TINY, "data_dir": data_dir}.items()]
    run = run_program(tmp_path, "--config=experiments/configs/fewshot.py:cifarfs_5w1s", *flags)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "abml cifarfs 5-way 1-shot, 4 test tasks: accuracy" in run.stdout
    assert_learned(tmp_path / "run")


def test_ten_way_validation_takes_the_out_of_episode_classes_it_has(tmp_path, cache):
    """CIFAR-FS's 16 validation classes hold 10-way episodes and 6 out-of-episode classes."""
    data_dir = ff.write_cifar(tmp_path / "data", ff.cifar_batches(), archive=False)
    config = tiny_config("cifarfs_10w1s", data_dir, steps=1, evaluate_on="validation")
    report = classification.train_and_evaluate(config, str(tmp_path / "run"), progress=False)
    assert report["evaluated_on"] == "validation"
    assert 0.0 <= report["out_of_episode_auroc"] <= 1.0


def test_configs_follow_the_papers_table_2_settings():
    assert set(SETTINGS) == {"miniimagenet_5w1s", "miniimagenet_5w5s", "cifarfs_5w1s",
                             "cifarfs_5w5s", "cifarfs_10w1s", "cifarfs_10w5s", "fc100_5w1s",
                             "fc100_5w5s"}
    one_shot, five_shot = get_config("miniimagenet_5w1s"), get_config("cifarfs_10w5s,maml")
    assert (one_shot.filters, one_shot.query, one_shot.eval_tasks) == (32, 15, 1000)
    assert (one_shot.meta_batch, one_shot.inner_steps, one_shot.eval_inner_steps) == (4, 5, 10)
    assert one_shot.inner_lr == pytest.approx(0.01 / 5)
    assert five_shot.algorithm == "maml" and five_shot.meta_batch == 2
    assert five_shot.inner_lr == pytest.approx(0.01 / 50) and five_shot.dataset == "cifarfs"
    with pytest.raises(ValueError, match="unknown fewshot config"):
        get_config("miniimagenet_10w1s")


def run_program(tmp_path, *flags):
    return subprocess.run([sys.executable, "-m", "experiments.fewshot", *flags,
                           f"--workdir={tmp_path / 'run'}"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT,
                          env={**os.environ, "METABAYES_CACHE": str(tmp_path / "cache")})


def test_missing_data_ends_the_program_with_one_line_listing_the_layouts(tmp_path):
    run = run_program(tmp_path, "--config=experiments/configs/fewshot.py:miniimagenet_5w1s",
                      f"--config.data_dir={tmp_path / 'nowhere'}")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("error: miniImageNet: no complete layout in")
    for layout in ("mini-imagenet-cache-train.pkl", "miniImageNet_category_split_val.pickle",
                   "train.csv"):
        assert layout in line
