"""MATH.md §6.7: the train step with tasks sharded over 8 host devices equals the one-device step."""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    import jax, numpy as np
    from metabayes.training.sharding import replicate, shard_tasks, task_mesh
    from metabayes.data.sinusoid import SinusoidTasks
    sys.path.insert(0, "tests")
    from helpers import sinusoid_step_reference

    assert jax.device_count() == 8, jax.devices()
    learner, batch, state, key, (single_state, single) = sinusoid_step_reference(16)

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
                            text=True, timeout=600, cwd=os.path.join(os.path.dirname(__file__), ".."))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SHARDED == SINGLE" in result.stdout


EXPERIMENT_SCRIPT = textwrap.dedent("""
    import json, sys, jax, numpy as np
    sys.path.insert(0, "tests")
    from experiments import classification as omniglot
    from test_omniglot_experiment import tiny_config

    assert jax.device_count() == 4, jax.devices()
    losses = []
    for shard in (False, True):
        workdir = f"{sys.argv[1]}/{shard}"
        omniglot.train_and_evaluate(tiny_config(algorithm="maml", meta_batch=4, steps=1,
                                                eval_every=1, shard_tasks=shard),
                                    workdir, progress=False)
        lines = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]
        losses.append([r["loss"] for r in lines if r["split"] == "train"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    print("EXPERIMENT SHARDED == SINGLE")
""")


def test_omniglot_experiment_shards_tasks_over_local_devices(tmp_path):
    """With several devices the experiment splits each meta-batch over them (shard_tasks, on by
    default) and computes the same meta-loss as on one device (MAML here: the sharding is the
    same code for both algorithms, and MAML compiles faster). (Parameters are not compared:
    Adam turns the round-off gradients of biases before batch norm, zero in exact arithmetic,
    into ±lr steps whose signs differ between the two reduction orders.)"""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu", METABAYES_CACHE=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-c", EXPERIMENT_SCRIPT, str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=600,
                            cwd=os.path.join(os.path.dirname(__file__), ".."))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "meta-batch sharded over 4 devices" in result.stdout
    assert "EXPERIMENT SHARDED == SINGLE" in result.stdout
