"""The meta-gradient ∇_ψ loss(ψ) equals central finite differences (MATH.md §3, §6.5).

With a fixed key the reparameterised noise is fixed, so the meta-loss is a smooth deterministic
function of ψ (tanh network, float64); its exact gradient flows through all K inner steps.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metabayes as mb
from helpers import fast_jit, loss_and_grad, perturb, tiny_batch, tiny_learner, tree_axpy, tree_vdot

pytestmark = pytest.mark.usefixtures("x64")

STEP = 1e-5


def random_params(learner, batch, seed):
    """ψ at init, then every leaf moved randomly (μ, log σ_θ, the Meta-SGD step scales and, for
    the Gaussian family, the log scales of q(θ) all generic)."""
    params = learner.init_params(jax.random.PRNGKey(seed), batch.support[0][0])
    if learner.theta_family == "gaussian":   # a q(θ) scale large enough to matter
        params = params.replace(q_theta=params.q_theta.replace(log_sigma=jax.tree_util.tree_map(
            lambda l: jnp.full_like(l, -2.0), params.q_theta.log_sigma)))
    return perturb(params, 0.1, seed + 100)


def central_difference(learner, params, batch, key, direction):
    value = lambda p: float(loss_and_grad(learner, p, batch, key)[0][0])
    return (value(tree_axpy(STEP, direction, params))
            - value(tree_axpy(-STEP, direction, params))) / (2 * STEP)


def check_directions(learner, params, batch, key, unused=lambda path: False, atol=1e-8):
    """Random directions over all of ψ, and over each leaf alone; the leaves whose key path
    (``jax.tree_util.keystr``) ``unused`` names must have a zero gradient instead. ``atol``:
    the central differences' rounding error, which grows with the loss."""
    _, grad = loss_and_grad(learner, params, batch, key)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    directions = [perturb(zeros, 1.0, seed) for seed in range(2)]
    paths = [jax.tree_util.keystr(path) for path, _ in
             jax.tree_util.tree_flatten_with_path(zeros)[0]]
    leaves, treedef = jax.tree_util.tree_flatten(zeros)
    for i, gradient in enumerate(jax.tree_util.tree_leaves(grad)):
        if unused(paths[i]):
            assert not np.any(gradient), paths[i]
            continue
        one = list(leaves)
        one[i] = perturb(leaves[i], 1.0, 10 + i)
        directions.append(jax.tree_util.tree_unflatten(treedef, one))
    for direction in directions:
        analytic = float(tree_vdot(grad, direction))
        numeric = central_difference(learner, params, batch, key, direction)
        assert abs(analytic) > 1e-6
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=atol)


@pytest.mark.parametrize("theta_family", ["point", "gaussian"])
def test_meta_gradient_matches_finite_differences(theta_family):
    """Second-order (first_order=False) meta-gradient of MetaLearner.loss, through K = 2 inner
    SGD steps with learned Meta-SGD step scales, the local KL and the global term, == central
    differences, along random directions and along each leaf of ψ; q(θ) point and Gaussian."""
    learner = tiny_learner(theta_family)
    batch = tiny_batch()
    params = random_params(learner, batch, 0)
    check_directions(learner, params, batch, jax.random.PRNGKey(5))
    if theta_family == "gaussian":   # θ ~ q(θ; ψ) is sampled: the task losses depend on its scale
        _, grad = loss_and_grad(learner, params, batch, jax.random.PRNGKey(5))
        global_grad = jax.grad(lambda p: mb.global_kl(p.q_theta, learner.hyperprior))(params)
        task_part = jax.tree_util.tree_map(lambda g, h: g - h / learner.num_tasks,
                                           grad.q_theta.log_sigma, global_grad.q_theta.log_sigma)
        assert max(float(jnp.max(jnp.abs(l))) for l in jax.tree_util.tree_leaves(task_part)) > 1e-3


def test_meta_gradient_first_order_drops_inner_hessian():
    """first_order=True treats the inner gradients as constants (§3): with SGD and Meta-SGD
    step scales s, λ^K = θ + s ⊙ U with U = (λ^K − θ)/s frozen at ψ₀. Its meta-gradient is the
    gradient of that frozen loss, which is not the loss's gradient (central differences)."""
    learner = tiny_learner("point", first_order=True, model=mb.MLP(hidden=()))
    batch = tiny_batch()
    params = random_params(learner, batch, 1)
    key = jax.random.PRNGKey(6)
    task_keys = jax.random.split(key, batch.support[0].shape[0])

    tasks, frozen_updates, outer_keys = [], [], []
    for i, task_key in enumerate(task_keys):
        task = jax.tree_util.tree_map(lambda a: a[i], batch)
        _, adapt_key, outer_key = jax.random.split(task_key, 3)
        theta0 = params.q_theta.mean
        adapted = learner.adapt(params, theta0, task.support, adapt_key)
        frozen_updates.append(jax.tree_util.tree_map(lambda lam, th, s: (lam - th) / s,
                                                     adapted, theta0, params.step_scale))
        tasks.append(jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), *task))
        outer_keys.append(outer_key)

    def frozen_loss(p):
        """(1/M) Σ_i [−ELL(λ_i; S_i ∪ Q_i) + β KL(λ_i || θ)] − (1/N) log p(θ), λ_i = θ + s ⊙ U_i."""
        theta = p.q_theta.mean
        total = 0.0
        for data, update, outer_key in zip(tasks, frozen_updates, outer_keys):
            local = jax.tree_util.tree_map(lambda th, s, u: th + s * u, theta, p.step_scale, update)
            nll = -mb.expected_log_likelihood(learner.model.apply, local, data, outer_key,
                                              learner.outer_samples, likelihood=learner.likelihood)
            total = total + nll + learner.kl_weight * mb.local_kl(local, theta)
        return total / len(tasks) - learner.hyperprior.log_prob(theta) / learner.num_tasks

    (loss, _), grad = loss_and_grad(learner, params, batch, key)
    np.testing.assert_allclose(float(loss), float(fast_jit(frozen_loss)(params)), rtol=1e-12)
    frozen_grad = fast_jit(jax.grad(frozen_loss))(params)
    for a, b in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(frozen_grad)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)
    # the loss value is the true loss; its derivative keeps the Hessian terms first order drops
    direction = perturb(jax.tree_util.tree_map(jnp.zeros_like, params), 1.0, 0)
    numeric = central_difference(learner, params, batch, key, direction)
    assert abs(float(tree_vdot(grad, direction)) - numeric) > 1e-3 * abs(numeric)
