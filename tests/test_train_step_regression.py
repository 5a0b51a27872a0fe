"""The train step's meta-loss and meta-gradient on fixed tasks equal values recorded from the
code before the core refactor (issue 17: the inner loop rebuilt from optax-style pieces,
MetaLearner split into pure functions), for ABML with gradient and with Fisher σ_λ, ABML with
σ_θ²-preconditioning and local reparameterisation, MAML, Meta-SGD, and a batch-norm Conv4 scored
with support statistics.

The values in ``data/train_step_regression.npz`` were recorded by running this file as a
script (``python tests/test_train_step_regression.py``) on commit 9884c2e, jaxlib 0.10.2,
XLA:CPU: the MLP cases in float64 (MAML's in float32 too), the Conv4 case in float32, each with
the jitted train step.
float64 must agree to 1e-9 (any change to the mathematics shows far above that); float32 to
2e-5 of each gradient leaf's scale, the rounding noise of reordered float32 sums through a
second-order inner loop. A leaf that is zero but for rounding (below 1e-5 of the largest
gradient entry: the Conv4's biases in front of batch norm) is held to the whole gradient's
scale: on an Intel Xeon host its float32 noise differed from the recorded AMD EPYC values by
2.6e-7 of that scale, over the 2e-7 its own floor allowed. Rerecording is for a deliberate
change of the mathematics, said so in its commit.
"""
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metabayes as mb

from helpers import capture_gradient, train_step_loss_and_gradient, two_task_batch

RECORDED = pathlib.Path(__file__).parent / "data" / "train_step_regression.npz"
TOLERANCE = {"float64": 1e-9, "float32": 2e-5}
ROUNDING_ZERO = 1e-5   # a leaf below this share of the gradient's scale is zero but for rounding


def _mlp_learner(algorithm, **options):
    common = dict(likelihood=mb.Gaussian(0.5), inner_lr=0.05, inner_steps=2,
                  outer_optimizer=capture_gradient())
    if algorithm == "maml":
        return mb.maml(mb.MLP(hidden=(8, 8)), **common, **options)
    # inner_lr·β/σ_θ² = 0.37: a stable inner loop (MATH.md §3), so rounding is not amplified.
    options = {"kl_weight": 0.1, **options}
    return mb.abml(mb.MLP(hidden=(8, 8)), init_log_sigma=-2.0, num_tasks=10, **common,
                   **options)


CASES = {   # name: (learner factory, model, precisions)
    "abml-gradient": (lambda: _mlp_learner("abml", inner_samples=2, outer_samples=2), "mlp",
                      ("float64",)),
    "abml-fisher": (lambda: _mlp_learner("abml", local_variance="fisher"),
                    "mlp", ("float64",)),
    "abml-preconditioned-local-reparam": (
        lambda: _mlp_learner("abml", scale_by_prior_variance=True, estimator="local_reparam",
                             inner_optimizer=optax.chain(optax.clip(1.0), optax.sgd(0.05))),
        "mlp", ("float64",)),
    "maml": (lambda: _mlp_learner("maml"), "mlp", ("float64", "float32")),
    "meta-sgd": (lambda: _mlp_learner("maml", meta_sgd=True), "mlp", ("float64",)),
    "abml-meta-sgd-first-order": (lambda: _mlp_learner("abml", meta_sgd=True, first_order=True),
                                  "mlp", ("float64",)),
    "abml-conv4-support-batch-norm": (
        lambda: mb.abml(mb.Conv4(num_classes=3, filters=4, blocks=3), inner_lr=0.05,
                        inner_steps=1, init_log_sigma=-2.0, kl_weight=0.1, num_tasks=10,
                        batch_norm="support",
                        outer_optimizer=capture_gradient()),
        "conv4", ("float32",)),
}


def run_case(name, precision):
    """(loss, gradient leaves) of one jitted train step: ψ from PRNGKey(0), step key 1."""
    factory, model, _ = CASES[name]
    dtype = np.float64 if precision == "float64" else np.float32
    with jax.enable_x64(precision == "float64"):
        learner, batch = factory(), two_task_batch(model, dtype)
        state = learner.init(jax.random.PRNGKey(0), batch.support[0][0])
        state = jax.tree_util.tree_map(
            lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, state)
        return train_step_loss_and_gradient(learner, state, batch, jax.random.PRNGKey(1))


PARAMS = [pytest.param(name, precision, id=f"{name}-{precision}")
          for name, (_, _, precisions) in CASES.items() for precision in precisions]


@pytest.mark.parametrize("name, precision", PARAMS)
def test_train_step_equals_the_recorded_values(name, precision):
    recorded = np.load(RECORDED)
    loss, grads = run_case(name, precision)
    expected = [recorded[f"{name}/{precision}/grad{i}"] for i in range(len(grads))]
    assert f"{name}/{precision}/grad{len(grads)}" not in recorded, "fewer gradient leaves"
    tolerance = TOLERANCE[precision]
    np.testing.assert_allclose(loss, recorded[f"{name}/{precision}/loss"], rtol=tolerance)
    scale = max(np.max(np.abs(e)) for e in expected)
    for i, (actual, want) in enumerate(zip(grads, expected)):
        assert actual.shape == want.shape, f"leaf {i}: shape {actual.shape} != {want.shape}"
        leaf_scale = np.max(np.abs(want))
        # A leaf zero but for rounding (a bias in front of batch norm, whose gradient vanishes
        # analytically) has no scale of its own: its entries are the rounding noise of sums of
        # the step's magnitudes, which differs between CPUs, so the whole gradient's scale.
        leaf_scale = scale if leaf_scale < ROUNDING_ZERO * scale else max(leaf_scale,
                                                                           1e-2 * scale)
        np.testing.assert_allclose(actual, want, rtol=tolerance, atol=tolerance * leaf_scale,
                                   err_msg=f"gradient leaf {i}")


def record() -> None:
    values = {}
    for name, precision in [(p.values[0], p.values[1]) for p in PARAMS]:
        start = time.perf_counter()
        loss, grads = run_case(name, precision)
        values[f"{name}/{precision}/loss"] = loss
        values.update({f"{name}/{precision}/grad{i}": g for i, g in enumerate(grads)})
        print(f"{name} {precision}: loss {loss:.10g}, {len(grads)} gradient leaves, "
              f"{time.perf_counter() - start:.1f} s")
    RECORDED.parent.mkdir(exist_ok=True)
    np.savez_compressed(RECORDED, **values)


if __name__ == "__main__":
    record()
