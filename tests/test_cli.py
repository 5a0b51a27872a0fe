"""experiments.cli.run: a user's error (bad flags or data, divergence, memory) ends the program
with one line naming the --config flags to change, exit 1; a bug keeps its traceback."""
import subprocess
import sys
import types
import zipfile

import jax
import numpy as np
import pytest

import metabayes as mb
from experiments.cli import NumberListParser, explain_out_of_memory, run
from experiments.configs.omniglot import get_config
from metabayes.training.config import EVALUATION_KEYS
from metabayes.errors import options_set_by
from metabayes.data import omniglot
from metabayes.evaluation import check_finite_predictions
from metabayes.training import check_divergence
from helpers import tiny_batch, tiny_learner


def printed(make_error, monkeypatch, config=None):
    """What ``run`` prints when its main raises ``make_error()``: (exit code, stderr line)."""
    def main(argv):
        raise make_error()
    monkeypatch.setattr(sys, "argv", ["experiment"])
    holder = None if config is None else types.SimpleNamespace(value=config)
    with pytest.raises(SystemExit) as exit_info:
        run(main, holder)
    return exit_info.value.code


def non_finite_loss():
    learner = tiny_learner("point", model=mb.MLP(hidden=()), inner_lr=1e4, inner_steps=20,
                           init_log_sigma=-3.0, inner_samples=1, outer_samples=1)
    batch = tiny_batch()
    state = learner.init(jax.random.PRNGKey(0), batch.support[0][0])
    _, metrics = learner.train_step(state, batch, jax.random.PRNGKey(1))
    try:
        learner.check_finite(metrics, step=0)
    except mb.NonFiniteLossError as error:
        return error
    raise AssertionError("the divergent step was finite")


def divergence():
    try:
        check_divergence([{"step": 0, "loss": 120.0}, {"step": 100, "loss": 3e9}])
    except FloatingPointError as error:
        return error


def non_finite_predictions():
    try:
        with options_set_by(EVALUATION_KEYS):
            check_finite_predictions(np.array([[[0.5, np.nan]]]))
    except FloatingPointError as error:
        return error


def out_of_memory():
    try:
        with explain_out_of_memory("meta-training", "Lower --config.meta_batch."):
            raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9 GB")
    except MemoryError as error:
        return error


def damaged_archive(tmp_path):
    path = tmp_path / "images_background_small1.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images_background_small1/a/character01/0101_01.png", b"not a png")
    try:
        omniglot.load_archive(path, tmp_path / "cache")
    except ValueError as error:
        return error


def test_library_errors_end_with_one_line_naming_the_flags(monkeypatch, capsys, tmp_path):
    config = get_config("cpu_demo")
    cases = {
        non_finite_loss: ["--config.inner_lr", "--config.kl_weight", "--config.init_log_sigma",
                          "--config.scale_by_prior_variance"],
        divergence: ["grew from 120 at step 0 to 3e+09", "--config.inner_lr", "--config.outer_lr"],
        non_finite_predictions: ["--config.eval_inner_lr (unset: --config.inner_lr)",
                                 "--config.eval_inner_steps"],
        out_of_memory: ["meta-training ran out of memory", "--config.meta_batch"],
        lambda: damaged_archive(tmp_path): ["md5", "set --config.verify_md5 to False"],
    }
    for make_error, flags in cases.items():
        code = printed(make_error, monkeypatch, config)
        assert code.startswith("error: ") and "\n" not in code and "`" not in code, code
        for flag in flags:
            assert flag in code, (flag, code)


def test_options_outside_the_config_keep_their_names(monkeypatch):
    code = printed(lambda: ValueError("`every` and `keep` (checkpoints) must be >= 1"), monkeypatch)
    assert code == "error: every and keep (checkpoints) must be >= 1"


def test_other_errors_keep_their_traceback(monkeypatch):
    with pytest.raises(ValueError, match="a bug"):
        printed(lambda: ValueError("a bug"), monkeypatch)


def test_stray_arguments_are_rejected(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["experiment", "stray"])
    with pytest.raises(SystemExit) as exit_info:
        run(lambda argv: None)
    assert exit_info.value.code == 1 and "unexpected arguments: ['stray']" in capsys.readouterr().err


def run_program(tmp_path, *flags, module="experiments.omniglot", timeout=300):
    """(exit code, stderr) of ``python -m module --workdir=tmp_path/run flags``."""
    result = subprocess.run([sys.executable, "-m", module, f"--workdir={tmp_path / 'run'}", *flags],
                            capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stderr


@pytest.mark.parametrize("flag,message", [
    ("--config.prefetch=0", "error: --config.prefetch must be an integer >= 1; got 0"),
    ("--config.eval_inner_steps=-1", "error: --config.eval_inner_steps must be an integer >= 0"),
    ("--config.checkpoint_every=0", "error: --config.checkpoint_every must be an integer >= 1"),
])
def test_bad_flags_fail_before_any_work(tmp_path, flag, message):
    code, stderr = run_program(tmp_path, flag)
    assert code == 1 and stderr.strip().splitlines() == [stderr.strip()]
    assert stderr.strip().startswith(message), stderr
    assert not (tmp_path / "run").exists()   # nothing written: no data loaded, no training


def test_number_lists_parse_or_name_the_flag_in_one_line():
    """A list flag of numbers (``define_number_list``) parses each item, and a bad one ends the
    program at flag parsing with one line naming the flag, not a traceback from ``float(...)``
    inside main."""
    assert NumberListParser(float).parse("0.5, 1") == [0.5, 1.0]
    assert NumberListParser(lower_bound=1).parse([2, "3"]) == [2, 3]
    assert NumberListParser().parse("") == []
    with pytest.raises(ValueError, match="list of ints"):
        NumberListParser().parse("1.5")
    with pytest.raises(ValueError, match="at least 1"):
        NumberListParser(lower_bound=1).parse("2,0")
    with pytest.raises(ValueError, match="at most 1.0"):
        NumberListParser(float, 0.0, 1.0).parse("0.5,2")
    for module, flag, message in (
            ("benchmarks.wheel_bandit_choices", "--deltas=0.5,x",
             "expected a comma-separated list of floats"),
            ("benchmarks.wheel_bandit_choices", "--deltas=2", "expected each at most 1.0"),
            ("benchmarks.scaling", "--devices=a", "expected a comma-separated list of ints")):
        done = subprocess.run([sys.executable, "-m", module, flag], capture_output=True,
                              text=True, timeout=300)
        assert (done.returncode, done.stderr) == (
            1, f"error: flag {flag}: {message}\n")


def test_a_diverging_run_stops_at_its_first_log_with_one_line(tmp_path):
    """The issue's measurement: inner_lr=100 trained at loss 1e11, then evaluation raised a
    traceback from deep inside the metrics. Now the first logged step stops it."""
    code, stderr = run_program(tmp_path, "--config.inner_lr=100", "--config.steps=3",
                               "--config.filters=4")
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    assert "meta-training diverges" in lines[0] and "--config.inner_lr" in lines[0]
