"""How much a step computes and how fast the machine can compute: XLA's own flop count of a
compiled function, and the machine's f32 matmul peak under jax (``benchmarks.step_time``'s
GFLOP/s and % of peak columns)."""
import dataclasses
import math
import os
import time
from unittest import mock

import jax
import jax.numpy as jnp

from metabayes.noise import NOISE_VARIABLE


def cost_analysis(compiled) -> dict:
    """XLA's own count of one run of ``compiled``: flops, bytes accessed, ... ({} where the
    backend gives none; older jax returned a list of one dict per device)."""
    cost = compiled.cost_analysis() or {}
    return cost[0] if isinstance(cost, list) else dict(cost)


def matmul_peak(size: int, repeats: int = 5) -> dict:
    """The machine's f32 matmul throughput under jax: the best of ``repeats`` jitted
    [size, size] @ [size, size] products, 2·size³ flops each (all cores, XLA's own kernel), and
    the devices it ran on."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    product = jax.jit(jnp.matmul).lower(a, a).compile()
    jax.block_until_ready(product(a, a))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(product(a, a))
        best = min(best, time.perf_counter() - start)
    return {"matmul_size": size, "matmul_s": best, "peak_gflops_per_s": 2 * size ** 3 / best / 1e9,
            "devices": str(jax.devices())}


def reference_flops(learner, make_batch, meta_batch: int) -> float:
    """XLA's flop count of ``learner``'s step in one loop-free reference form, the same for
    every variant of a row: im2col convolutions (where the model has a ``conv``), all tasks and
    outer samples vmapped, the inner loop unrolled, counted for one task and times
    ``meta_batch``. XLA counts a loop's body once, so the chunked (``lax.map``) and
    sequential-draw forms, and the inner loop's ``lax.scan`` (once for K steps, forward and
    backward), would otherwise be undercounted: MAML Conv4-64 5w1s K = 5, 5.6 GFLOP a task with
    the scan against 9.2 unrolled (BENCHMARKS.md, "Issue 20, seventh pass"). The weight noise ε
    is counted once per draw, in ``metabayes.noise``'s "stored" form: drawn directly, XLA
    counts its erf⁻¹ in each of the hundreds of fusions that read it (18.3 GFLOP a task for
    ABML S=1 against 9.9)."""
    model = learner.model
    if "conv" in {field.name for field in dataclasses.fields(model)}:
        model = model.clone(conv="im2col")
    reference = dataclasses.replace(learner, model=model, task_chunk=None, inner_unroll=True,
                                    outer_draws="vmap")
    key = jax.random.PRNGKey(0)
    batch = make_batch(key, 1)
    state = reference.init(key, jax.tree_util.tree_map(lambda a: a[0], batch.support[0]))
    with mock.patch.dict(os.environ, {NOISE_VARIABLE: "stored"}):   # read when traced
        compiled = jax.jit(reference.train_step).lower(state, batch, key).compile()
    return meta_batch * cost_analysis(compiled).get("flops", 0.0)

