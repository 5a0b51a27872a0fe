"""The outer loop: finiteness checked without a host sync per step, the first non-finite step
named with no checkpoint after it, divergence caught, the training-query accuracy reported."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metabayes as mb
from metabayes.training.checkpointing import Checkpointer
from metabayes.training import check_divergence, fit, progress_fields
from helpers import tiny_batch, tiny_learner


def batches_with_nan_at(bad_step: int, start: int = 0):
    """tiny_batch() for every step, with NaN support targets at ``bad_step``."""
    batch = tiny_batch()
    nan = mb.Task((batch.support[0], jnp.full_like(batch.support[1], jnp.nan)), batch.query)
    for step in itertools.count(start):
        yield nan if step == bad_step else batch


def learner_and_state():
    learner = tiny_learner("point", inner_steps=1)
    return learner, learner.init(jax.random.PRNGKey(0), tiny_batch().support[0][0])


def test_the_first_non_finite_step_is_named_at_the_next_log_step():
    learner, state = learner_and_state()
    with pytest.raises(mb.NonFiniteLossError, match="not finite at step 3 "):
        fit(learner, state, batches_with_nan_at(3), jax.random.PRNGKey(1), 12, log_every=8,
            progress=False)


def test_no_checkpoint_is_written_after_a_non_finite_step(tmp_path):
    learner, state = learner_and_state()
    checkpointer = Checkpointer(str(tmp_path), every=2, keep=5)
    with pytest.raises(mb.NonFiniteLossError, match="step 5 "):
        fit(learner, state, batches_with_nan_at(5), jax.random.PRNGKey(1), 12, log_every=100,
            checkpointer=checkpointer, progress=False)
    checkpointer.close()
    assert Checkpointer(str(tmp_path)).latest_step() == 4   # state after steps 0..3, all finite


def test_steps_between_checks_do_not_wait_for_the_device(monkeypatch):
    """No array is read on the host (bool, int, float, np.asarray: each waits for the device)
    outside log steps. The old per-step bool(metrics["finite"]) read one every step (this test
    fails on it)."""
    learner, state = learner_and_state()
    log_every, num_steps = 4, 9
    reads, logging = [], [True]
    array_type = type(jnp.zeros(()))
    for method in ("__bool__", "__int__", "__float__", "__array__"):
        original = getattr(array_type, method)
        def counted(self, *args, _original=original, _method=method, **kwargs):
            if not logging[0]:
                reads.append(_method)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(array_type, method, counted)

    def batches():
        for step, batch in zip(itertools.count(), batches_with_nan_at(-1)):
            logging[0] = step % log_every == 0 or step == num_steps - 1
            yield batch

    _, history = fit(learner, state, batches(), jax.random.PRNGKey(1), num_steps,
                     log_every=log_every, progress=False)
    assert [row["step"] for row in history] == [0, 4, 8] and reads == []


def test_divergence_is_a_loss_grown_by_orders_of_magnitude_or_far_worse_than_chance():
    check_divergence([{"step": 0, "loss": 120.0}, {"step": 100, "loss": 1.1e5}])
    with pytest.raises(mb.DivergenceError, match="grew from 120 at step 0 to 1.3e\\+06"):
        check_divergence([{"step": 0, "loss": 120.0}, {"step": 100, "loss": 1.3e6}])
    check_divergence([{"step": 0, "loss": 9.0, "query_nll_over_chance": 50.0}])
    with pytest.raises(mb.DivergenceError, match="step 0 .* 500 times a uniform guess"):
        check_divergence([{"step": 0, "loss": 9.0, "query_nll_over_chance": 500.0}])


def classification_batch(num_tasks=3, ways=3, shots=2, query=4):
    """Random inputs [M, N, 5] with labels 0..ways-1, support and query."""
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    part = lambda key, per_class: (jax.random.normal(key, (num_tasks, ways * per_class, 5)),
                                   jnp.tile(jnp.arange(ways), (num_tasks, per_class)))
    return mb.Task(part(keys[0], shots), part(keys[1], query))


def test_train_step_reports_the_training_query_accuracy_shown_in_the_progress_bar():
    """MAML adapts deterministically and scores the query set alone, so the train step's
    query_accuracy is exactly the adapted network's accuracy on the query set."""
    learner = mb.maml(mb.MLP(hidden=(16,), outputs=3), likelihood=mb.Categorical(),
                      inner_lr=0.05, inner_steps=2)
    batch = classification_batch()
    state = learner.init(jax.random.PRNGKey(0), batch.support[0][0])
    _, metrics = learner.train_step(state, batch, jax.random.PRNGKey(1))
    probs = learner.predict_tasks(state.params, batch.support, batch.query[0],
                                  jax.random.split(jax.random.PRNGKey(2), 3), 1)
    expected = np.mean(np.argmax(np.asarray(probs), -1) == np.asarray(batch.query[1]))
    assert float(metrics["query_accuracy"]) == pytest.approx(expected)
    fields = progress_fields({name: float(value) for name, value in metrics.items()})
    assert set(fields) == {"loss", "nll", "acc"} and float(fields["acc"]) == pytest.approx(expected, abs=1e-3)
