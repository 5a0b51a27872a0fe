r"""Time one jitted meta-training step (inner loops + outer gradient + optax update).

    python -m benchmarks.step_time --suite=omniglot --out=benchmarks/results/step_time.json

Prints a table and writes JSON: per configuration the compile time, the median / min / max
seconds of a step after compilation (``block_until_ready``), tasks per second and the peak RSS
of the process so far. Data are random arrays of the configured shapes. Machines are noisy:
compare ratios measured in one run, not absolute seconds across runs.
"""
import json
import os
import platform
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from absl import app, flags

import metabayes as mb
from metabayes.tasks import Task

_SUITE = flags.DEFINE_enum("suite", "omniglot", ["omniglot", "sinusoid", "smoke"],
                           "omniglot: Conv4 5-way 1-shot Q=15 K=5 at M=4 and 32; sinusoid: "
                           "the MLP of experiments.sinusoid; smoke: one tiny step.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after the compiling one (>= 1).")
_OUT = flags.DEFINE_string("out", "", "Where to write the JSON results (none if empty).")


def omniglot_batch(key, meta_batch, ways=5, shots=1, query=15, size=28):
    """Random images and labels shaped like an Omniglot meta-batch [M, N·K, 28, 28, 1]."""
    keys = jax.random.split(key, 2)
    labels = lambda n: jnp.tile(jnp.arange(ways), (meta_batch, n))
    images = lambda k, n: jax.random.uniform(k, (meta_batch, ways * n, size, size, 1))
    return Task((images(keys[0], shots), labels(shots)), (images(keys[1], query), labels(query)))


def sinusoid_batch(key, meta_batch):
    from metabayes.data.sinusoid import SinusoidTasks
    return SinusoidTasks().sample(key, meta_batch)[0]


def configurations(suite):
    """(name, learner, batch function, meta_batch) rows of one suite."""
    conv = lambda filters=64: mb.Conv4(num_classes=5, filters=filters)
    common = dict(inner_lr=0.4, inner_steps=5, outer_optimizer=optax.adam(1e-3))
    abml = lambda samples, **kw: mb.abml(conv(), outer_samples=samples, kl_weight=0.1,
                                         init_log_sigma=-4.0, **common, **kw)
    if suite == "smoke":
        yield "abml smoke", mb.abml(conv(8), inner_lr=0.1, inner_steps=1), omniglot_batch, 2
        return
    if suite == "sinusoid":
        mlp, gauss = mb.MLP(), mb.Gaussian(0.1)
        for m in (25,):
            yield f"abml M={m}", mb.abml(mlp, likelihood=gauss, inner_lr=2e-5), sinusoid_batch, m
            yield f"maml M={m}", mb.maml(mlp, likelihood=gauss, inner_lr=2e-5), sinusoid_batch, m
        return
    for m in (4, 32):
        yield f"abml S=1 M={m}", abml(1), omniglot_batch, m
        yield f"abml S=5 M={m}", abml(5), omniglot_batch, m
        yield f"abml FO S=1 M={m}", abml(1, first_order=True), omniglot_batch, m
        yield f"maml M={m}", mb.maml(conv(), **common), omniglot_batch, m
        yield f"maml FO M={m}", mb.maml(conv(), first_order=True, **common), omniglot_batch, m


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_step(learner, make_batch, meta_batch, steps):
    key = jax.random.PRNGKey(0)
    batch = make_batch(key, meta_batch)
    state = learner.init(key, jax.tree_util.tree_map(lambda a: a[0], batch.support[0]))
    start = time.perf_counter()
    state, metrics = learner.train_step(state, batch, key)
    jax.block_until_ready((state, metrics))
    compile_s = time.perf_counter() - start
    times = []
    for step in range(steps):
        step_key = jax.random.fold_in(key, step)
        start = time.perf_counter()
        state, metrics = learner.train_step(state, batch, step_key)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"compile_s": compile_s, "median_s": median, "min_s": min(times), "max_s": max(times),
            "times_s": times, "tasks_per_s": meta_batch / median, "peak_rss_mb": peak_rss_mb(),
            "loss": float(metrics["loss"])}


def main(argv):
    del argv
    if _STEPS.value < 1:
        raise app.UsageError(f"--steps must be >= 1, got {_STEPS.value}")
    rows = []
    header = f"{'config':<22}{'compile s':>10}{'median s':>10}{'min':>8}{'max':>8}{'tasks/s':>9}{'RSS MB':>8}"
    print(header)
    for name, learner, make_batch, meta_batch in configurations(_SUITE.value):
        result = {"config": name, "meta_batch": meta_batch, **time_step(learner, make_batch,
                                                                         meta_batch, _STEPS.value)}
        rows.append(result)
        print(f"{name:<22}{result['compile_s']:>10.2f}{result['median_s']:>10.4f}"
              f"{result['min_s']:>8.4f}{result['max_s']:>8.4f}{result['tasks_per_s']:>9.1f}"
              f"{result['peak_rss_mb']:>8.0f}", flush=True)
    if _OUT.value:
        os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
        with open(_OUT.value, "w") as f:
            json.dump({"suite": _SUITE.value, "jax": jax.__version__, "devices": str(jax.devices()),
                       "machine": platform.processor() or platform.machine(),
                       "cpu_count": os.cpu_count(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
