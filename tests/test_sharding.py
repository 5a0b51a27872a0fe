"""MATH.md §6.7: the train step with tasks sharded over 8 host devices equals the one-device step."""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, optax
    import metabayes as mb
    from metabayes.sharding import replicate, shard_tasks, task_mesh
    from metabayes.data.sinusoid import SinusoidTasks

    assert jax.device_count() == 8, jax.devices()
    learner = mb.abml(mb.MLP(hidden=(16, 16)), likelihood=mb.Gaussian(0.1), inner_lr=2e-5,
                      inner_steps=3, outer_optimizer=optax.adam(1e-3), num_tasks=100)
    key = jax.random.PRNGKey(0)
    batch = SinusoidTasks().sample(key, 16)[0]
    state = learner.init(key, batch.support[0][0])
    single_state, single = learner.train_step(state, batch, key)

    mesh = task_mesh()
    sharded_batch = shard_tasks(batch, mesh)
    assert len(sharded_batch.support[0].sharding.device_set) == 8
    sharded_state, sharded = learner.train_step(replicate(state, mesh), sharded_batch, key)
    np.testing.assert_allclose(sharded["loss"], single["loss"], rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(sharded_state.params),
                    jax.tree_util.tree_leaves(single_state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    try:
        shard_tasks(SinusoidTasks().sample(key, 12)[0], mesh)
        raise AssertionError("M=12 on 8 devices was accepted")
    except ValueError as error:
        assert "meta_batch" in str(error)
    print("SHARDED == SINGLE")
""")


def test_sharded_step_equals_single_device_step():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SHARDED == SINGLE" in result.stdout
