"""Multi-host data parallelism on one machine: two JAX processes with two CPU devices each,
joined by ``jax.distributed`` (gloo collectives), as on a Cloud TPU pod or a GPU cluster."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

WORKER = textwrap.dedent("""
    import json, os, sys
    import jax, numpy as np
    from metabayes.training.sharding import host_local, initialize_multihost, replicate, shard_tasks, task_mesh

    process, port, workdir, part = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    initialize_multihost(f"localhost:{port}", num_processes=2, process_id=process)
    sys.path.insert(0, "tests")
    from helpers import sinusoid_step_reference
    assert (jax.device_count(), jax.local_device_count()) == (4, 2), jax.devices()

    # The step on a global meta-batch, each host holding half of it, equals the step that one
    # host computes alone on the whole batch.
    learner, batch, state, key, (alone_state, alone) = sinusoid_step_reference(8)
    mesh = task_mesh()
    half = jax.tree_util.tree_map(lambda a: np.asarray(a)[4 * process:4 * process + 4], batch)
    global_batch = shard_tasks(half, mesh)
    assert global_batch.support[0].shape[0] == 8
    shared_state, shared = learner.train_step(replicate(state, mesh), global_batch, key)
    np.testing.assert_allclose(host_local(shared)["loss"], alone["loss"], rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(host_local(shared_state.params)),
                    jax.tree_util.tree_leaves(alone_state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    print("HOST", process, json.dumps({"loss": float(host_local(shared)["loss"])}))
    if part == "step":
        sys.exit()

    # The Omniglot experiment: each host samples its own tasks, both write one checkpoint
    # together, process 0 alone writes the logs, and a second command resumes on both hosts.
    from experiments import classification as omniglot
    from test_omniglot_experiment import tiny_config
    for steps in (2, 4):
        report = omniglot.train_and_evaluate(
            tiny_config(meta_batch=4, steps=steps, eval_every=steps, checkpoint_every=2),
            workdir, progress=False)
    print("HOST", process, json.dumps({"accuracy": report["accuracy"]["mean"], "nll": report["nll"]}))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_two_hosts(tmp_path, part: str):
    """Run WORKER as processes 0 and 1; their stdouts and the JSON of their last HOST lines."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", METABAYES_CACHE=str(tmp_path / "cache"))
    root = os.path.join(os.path.dirname(__file__), "..")
    port, workdir = str(free_port()), str(tmp_path / "run")
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(p), port, workdir, part],
                                env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
               for p in (0, 1)]
    outputs = [w.communicate(timeout=900) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    reports = [json.loads(out.rsplit("HOST", 1)[1].split(None, 1)[1]) for out, _ in outputs]
    assert reports[0] == reports[1]        # both hosts hold the same replicated results
    return [out for out, _ in outputs], workdir


def test_two_hosts_step_equals_one_host_step(tmp_path):
    run_two_hosts(tmp_path, "step")


@pytest.mark.slow
def test_two_hosts_share_one_omniglot_run_and_its_checkpoints(tmp_path):
    outputs, workdir = run_two_hosts(tmp_path, "experiment")
    assert "resumed from step 2" in outputs[0] and "resumed from step 2" in outputs[1]
    assert "on 2 host(s)" in outputs[0]
    assert {"2", "4"} <= set(os.listdir(os.path.join(workdir, "checkpoints")))
    train_lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))
                   if '"train"' in line]
    assert [r["step"] for r in train_lines] == [0, 1, 2, 3]   # one writer: no line twice
