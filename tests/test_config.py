"""Learners built from experiment configs: each algorithm's outer data, and the test-time learner
(eval_inner_steps, eval_inner_lr, eval_batch_norm, eval_local_variance)."""
import jax
import ml_collections
import numpy as np
import pytest

import metabayes as mb
from experiments.cli import flag_names
from metabayes.training.config import add_learner_defaults, make_evaluator, make_learner
from metabayes.data.sinusoid import SinusoidTasks


def config(**overrides) -> ml_collections.ConfigDict:
    c = add_learner_defaults(ml_collections.ConfigDict())
    c.update({**dict(inner_lr=1e-3, inner_steps=2, eval_inner_steps=4), **overrides})
    return c


def adapted_mean(learner, key):
    task = SinusoidTasks().sample(key, 1)[0]
    support = jax.tree_util.tree_map(lambda a: a[0], task.support)
    params = learner.init_params(key, support[0])
    return jax.tree_util.tree_leaves(learner.adapt(params, params.q_theta.mean, support, key).mean)


@pytest.mark.parametrize("algorithm", ["abml", "maml"])
def test_evaluator_adapts_like_a_learner_trained_at_the_eval_settings(algorithm):
    model, likelihood, key = mb.MLP(hidden=(8,)), mb.Gaussian(0.1), jax.random.PRNGKey(0)
    evaluator = make_evaluator(config(algorithm=algorithm, eval_inner_lr=3e-4),
                               make_learner(config(algorithm=algorithm), model, likelihood))
    expected = make_learner(config(algorithm=algorithm, inner_lr=3e-4, inner_steps=4), model,
                            likelihood)
    default = make_evaluator(config(algorithm=algorithm),
                             make_learner(config(algorithm=algorithm), model, likelihood))
    assert evaluator.inner_steps == default.inner_steps == 4
    for a, b in zip(adapted_mean(evaluator, key), adapted_mean(expected, key)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, b) for a, b in
               zip(adapted_mean(evaluator, key), adapted_mean(default, key)))


def command_line(error: Exception, config: ml_collections.ConfigDict) -> str:
    """What experiments.cli prints for ``error``: its options as the flags that set them."""
    return flag_names(str(error), config.keys(), getattr(error, "option_renames", {}))


@pytest.mark.parametrize("key,bad,flag", [
    ("eval_inner_lr", -1.0, "--config.eval_inner_lr (unset: --config.inner_lr) must be a positive"),
    ("eval_inner_steps", -1, "--config.eval_inner_steps must be an integer >= 0"),
    ("eval_batch_norm", "running", "--config.eval_batch_norm (unset: --config.batch_norm) must"),
    ("eval_local_variance", "laplace",
     "--config.eval_local_variance (unset: --config.local_variance) must be one of"),
])
def test_bad_test_time_settings_name_their_own_flags(key, bad, flag):
    """The test-time learner's `inner_lr` / `inner_steps` / `batch_norm` errors name the eval_*
    keys that set them, not the training ones."""
    learner = make_learner(config(), mb.Conv4(num_classes=2, filters=2), mb.Categorical())
    bad_config = config(**{key: bad})
    with pytest.raises(ValueError) as info:
        make_evaluator(bad_config, learner)
    assert command_line(info.value, bad_config).startswith(flag)


def test_outer_data_defaults_to_each_algorithms_own_and_can_be_set():
    model, likelihood = mb.MLP(hidden=(8,)), mb.Gaussian(0.1)
    assert make_learner(config(algorithm="maml"), model, likelihood).outer_data == "query"
    assert make_learner(config(algorithm="abml"), model, likelihood).outer_data == "support_query"
    for algorithm in ("abml", "maml"):
        chosen = make_learner(config(algorithm=algorithm, outer_data="query"), model, likelihood)
        assert chosen.outer_data == "query"
    with pytest.raises(ValueError) as info:
        make_learner(config(outer_data="support"), model, likelihood)
    assert command_line(info.value, config()).startswith("--config.outer_data must be one of")


def test_eval_batch_norm_changes_the_evaluator_only():
    learner = make_learner(config(), mb.Conv4(num_classes=2, filters=2), mb.Categorical())
    evaluator = make_evaluator(config(eval_batch_norm="support"), learner)
    assert (learner.batch_norm, evaluator.batch_norm) == ("transductive", "support")
    assert make_evaluator(config(), learner).batch_norm == "transductive"


def test_eval_local_variance_changes_the_evaluator_only():
    learner = make_learner(config(kl_weight=0.1), mb.MLP(hidden=(8,)), mb.Gaussian(0.1))
    evaluator = make_evaluator(config(kl_weight=0.1, eval_local_variance="fisher"), learner)
    assert (learner.local_variance, evaluator.local_variance) == ("gradient", "fisher")
    assert make_evaluator(config(), learner).local_variance == "gradient"
