"""Checkpointer: a restored TrainState equals the saved one and lowers to the same program."""
import jax
import jax.numpy as jnp
import numpy as np

import metabayes as mb
from metabayes.training.checkpointing import Checkpointer


def test_restored_state_equals_saved_and_lowers_to_the_same_program(tmp_path):
    learner = mb.abml(mb.MLP(hidden=(4,)), likelihood=mb.Gaussian(0.1), inner_lr=1e-3)
    state = learner.init(jax.random.PRNGKey(0), jnp.zeros((3, 1)))
    checkpointer = Checkpointer(str(tmp_path), every=1)
    assert checkpointer.restore(state) is None
    checkpointer.save(1, state, {"train_seconds": 1.5}, force=True)
    checkpointer.close()
    restored, metadata = Checkpointer(str(tmp_path)).restore(state)
    assert metadata == {"train_seconds": 1.5}
    for saved, loaded in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored)):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded))
    step = jax.jit(lambda s: jax.tree_util.tree_map(lambda x: x + 1, s))
    assert step.lower(restored).as_text() == step.lower(state).as_text()   # no recompile on resume
