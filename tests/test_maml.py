"""MAML is ABML with σ_θ = 0, β = 0 and no hyperprior; K = 0 gives λ = θ (MATH.md §4, §6.6).

The reference is an independent plain-JAX MAML (its own network forward, likelihood and inner
SGD), compared with metabayes.maml and with metabayes.abml in the σ_θ → 0 limit, in float64.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metabayes as mb
from helpers import (assert_trees_close, classification_batch, fast_jit, loss_and_grad, perturb,
                     task_slice, tiny_batch, tiny_learner)

pytestmark = pytest.mark.usefixtures("x64")

INNER_LR, INNER_STEPS, NOISE = 0.1, 2, 0.5


def forward(params, x):
    """The 1-hidden-layer tanh MLP, written out: tanh(x W0 + b0) W1 + b1."""
    hidden = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    return hidden @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]


def summed_nll(params, x, y, likelihood):
    """−Σ_n log p(y_n | x_n): Gaussian(NOISE) on [N, 1] targets or categorical on labels [N]."""
    out = forward(params, x)
    if likelihood == "gaussian":
        return jnp.sum(0.5 * ((y - out) / NOISE) ** 2 + math.log(NOISE) + 0.5 * math.log(2 * math.pi))
    log_probs = out - jax.scipy.special.logsumexp(out, axis=-1, keepdims=True)
    return -jnp.sum(jnp.take_along_axis(log_probs, y[:, None], axis=-1))


def reference_maml_loss(params, batch, likelihood, first_order, outer_data, steps=INNER_STEPS):
    """(1/M) Σ_i L_outer(φ_i^K), φ^{k+1} = φ^k − α ∇ L_support(φ^k), φ⁰ = θ (Finn et al.,
    2017); L is the summed negative log-likelihood."""
    total = 0.0
    num_tasks = batch.support[0].shape[0]
    for i in range(num_tasks):
        (xs, ys), (xq, yq) = task_slice(batch, i)
        phi = params
        for _ in range(steps):
            grads = jax.grad(summed_nll)(phi, xs, ys, likelihood)
            if first_order:
                grads = jax.lax.stop_gradient(grads)
            phi = jax.tree_util.tree_map(lambda p, g: p - INNER_LR * g, phi, grads)
        if outer_data == "support_query":
            xq, yq = jnp.concatenate([xs, xq]), jnp.concatenate([ys, yq])
        total = total + summed_nll(phi, xq, yq, likelihood)
    return total / num_tasks


reference_value_and_grad = fast_jit(jax.value_and_grad(reference_maml_loss), static_argnums=(2, 3, 4, 5))


def problem(likelihood):
    if likelihood == "gaussian":
        return tiny_batch(5), mb.MLP(hidden=(3,), activation="tanh"), mb.Gaussian(NOISE)
    return (classification_batch(5, num_tasks=2, ways=3, dim=2),
            mb.MLP(hidden=(3,), outputs=3, activation="tanh"), mb.Categorical())


CASES = [("gaussian", False, "support_query"), ("gaussian", True, "query"),
         ("categorical", False, "query")]


@pytest.mark.parametrize("likelihood,first_order,outer_data", CASES)
def test_maml_matches_independent_implementation(likelihood, first_order, outer_data):
    """metabayes.maml loss and meta-gradient == the plain-JAX MAML, second and first order."""
    batch, model, lik = problem(likelihood)
    learner = mb.maml(model, first_order=first_order, inner_lr=INNER_LR, inner_steps=INNER_STEPS,
                      likelihood=lik, outer_data=outer_data)
    params = learner.init_params(jax.random.PRNGKey(0), batch.support[0][0])
    (loss, metrics), grad = loss_and_grad(learner, params, batch, jax.random.PRNGKey(1))
    theta = params.q_theta.mean.mean
    ref_loss, ref_grad = reference_value_and_grad(theta, batch, likelihood, first_order, outer_data,
                                                  INNER_STEPS)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-12)
    assert float(metrics["local_kl"]) == 0.0 and float(metrics["global_kl"]) == 0.0
    assert grad.q_theta.mean.log_sigma is None
    assert_trees_close(grad.q_theta.mean.mean, ref_grad, rtol=1e-10, atol=1e-13)


def test_first_order_maml_differs_from_second_order():
    """The first-order gradient drops the inner Hessian: a real difference, so the above can fail."""
    batch, _, _ = problem("gaussian")
    model = mb.MLP(hidden=(3,), activation="tanh")
    theta = model.init(jax.random.PRNGKey(0), batch.support[0][0])["params"]
    _, second = reference_value_and_grad(theta, batch, "gaussian", False, "query", INNER_STEPS)
    _, first = reference_value_and_grad(theta, batch, "gaussian", True, "query", INNER_STEPS)
    assert not np.allclose(np.asarray(first["Dense_0"]["kernel"]),
                           np.asarray(second["Dense_0"]["kernel"]), rtol=1e-3)


def test_abml_with_vanishing_sigma_equals_maml():
    """abml with σ_θ = e^-40 (no effective sampling), β = 0, no hyperprior: its loss and
    μ-gradient equal MAML's (and the plain-JAX MAML's) to float precision (§4)."""
    first_order = False
    batch, model, lik = problem("gaussian")
    options = dict(first_order=first_order, inner_lr=INNER_LR, inner_steps=INNER_STEPS,
                   likelihood=lik, outer_data="support_query")
    abml = mb.abml(model, init_log_sigma=-40.0, kl_weight=0.0, hyperprior=None, **options)
    params = perturb(abml.init_params(jax.random.PRNGKey(0), batch.support[0][0]), 0.1, 3)
    key = jax.random.PRNGKey(4)
    (loss, _), grad = loss_and_grad(abml, params, batch, key)
    maml = mb.maml(model, **options)
    maml_params = mb.MetaParams(mb.MeanFieldGaussian(mb.MeanFieldGaussian(params.q_theta.mean.mean)))
    (maml_loss, _), maml_grad = loss_and_grad(maml, maml_params, batch, key)
    np.testing.assert_allclose(float(loss), float(maml_loss), rtol=1e-12)
    assert_trees_close(grad.q_theta.mean.mean, maml_grad.q_theta.mean.mean, rtol=1e-10, atol=1e-13)
    _, ref = reference_value_and_grad(params.q_theta.mean.mean, batch, "gaussian", first_order,
                                      "support_query", INNER_STEPS)
    assert_trees_close(grad.q_theta.mean.mean, ref, rtol=1e-10, atol=1e-13)


def test_zero_inner_steps_is_bnn_across_tasks():
    """K = 0: adapt returns θ itself, the local KL is exactly 0, and the loss is the Bayesian
    neural net's (1/M) Σ_i −E_q(φ;θ)[log p(S_i ∪ Q_i | φ)] + (1/N) (−log p(θ)) (§4)."""
    learner = tiny_learner("point", inner_steps=0, model=mb.MLP(hidden=()))
    batch = tiny_batch(6)
    params = learner.init_params(jax.random.PRNGKey(0), batch.support[0][0])
    theta = params.q_theta.mean
    objective = mb.LocalObjective(learner.model.apply, theta, task_slice(batch, 0).support,
                                  learner.likelihood)
    adapted = mb.adapt(objective, jax.random.PRNGKey(1), inner_optimizer=learner.inner,
                       num_steps=0)
    assert_trees_close(adapted, theta, rtol=0, atol=0)
    key = jax.random.PRNGKey(2)
    (loss, metrics), _ = loss_and_grad(learner, params, batch, key)
    assert float(metrics["local_kl"]) == 0.0

    @fast_jit
    def bnn_loss(theta, batch, key):
        total = 0.0
        for i, task_key in enumerate(jax.random.split(key, 2)):
            task = task_slice(batch, i)
            outer = tuple(jnp.concatenate([s, q]) for s, q in zip(task.support, task.query))
            total -= mb.expected_log_likelihood(learner.model.apply, theta, outer,
                                                jax.random.split(task_key, 3)[2],
                                                learner.outer_samples, likelihood=learner.likelihood)
        return total / 2 - learner.hyperprior.log_prob(theta) / learner.num_tasks

    np.testing.assert_allclose(float(loss), float(bnn_loss(theta, batch, key)), rtol=1e-12)


def test_zero_inner_steps_maml_is_plain_multitask_loss():
    """MAML with K = 0: the loss is the mean summed NLL at θ itself, no adaptation (§4)."""
    batch, model, lik = problem("gaussian")
    learner = mb.maml(model, inner_steps=0, likelihood=lik, outer_data="query")
    params = learner.init_params(jax.random.PRNGKey(0), batch.support[0][0])
    (loss, _), grad = loss_and_grad(learner, params, batch, jax.random.PRNGKey(1))
    theta = params.q_theta.mean.mean
    ref_loss, ref_grad = reference_value_and_grad(theta, batch, "gaussian", False, "query", 0)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-12)
    assert_trees_close(grad.q_theta.mean.mean, ref_grad, rtol=1e-10, atol=1e-13)
