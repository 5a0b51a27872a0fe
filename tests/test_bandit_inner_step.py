"""The inner loop at play on long histories (issue 19), against a linear-Gaussian model's exact
posterior: the per-point step makes the step independent of the history size, inner Adam needs
no such scaling, the Fisher σ_λ narrows with the history, and a warm start continues the loop."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metabayes as mb
from metabayes.bandit.history import weighted_support
from metabayes.bandit.wheel import NUM_ARMS, sample_contexts
from helpers import fast_jit
from metabayes.training.config import INNER_OPTIMIZERS


def linear_data(num_points, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_points, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.5 * rng.normal(size=num_points)
    return jnp.asarray(x, jnp.float32), jnp.asarray(y[:, None], jnp.float32)


def linear_learner(inner_lr, steps, step_scale):
    """MAML on a linear-Gaussian model (noise sd 1): w = [kernel; bias]."""
    return mb.maml(mb.MLP(hidden=()), likelihood=mb.Gaussian(1.0), inner_lr=inner_lr,
                   inner_steps=steps, inner_step_scale=step_scale)


def least_squares(x, y):
    """(Φ = [x, 1], w* = the exact posterior mean under a flat prior) in float64."""
    design = np.concatenate([np.asarray(x, np.float64), np.ones((x.shape[0], 1))], 1)
    return design, np.linalg.lstsq(design, np.asarray(y, np.float64)[:, 0], rcond=None)[0]


def weights(posterior):
    """A linear model's mean weights as one vector [kernel; bias]."""
    return np.concatenate([np.ravel(posterior.mean["Dense_0"]["kernel"]),
                           np.ravel(posterior.mean["Dense_0"]["bias"])])


def remaining_error(num_points, step_scale, inner_lr=0.4 / 64, steps=5):
    """‖w_K − w*‖ / ‖w_0 − w*‖ after K inner steps of a linear-Gaussian model (noise sd 1) from
    θ, with w* the exact posterior mean (flat prior: least squares); and the same ratio
    predicted by K steps of (I − η c ΦᵀΦ) on w_0 − w*, Φ = [x, 1], c the step scale."""
    x, y = linear_data(num_points)
    learner = linear_learner(inner_lr, steps, step_scale)
    params = learner.init_params(jax.random.PRNGKey(0), x)
    theta = params.q_theta.mean
    adapted = fast_jit(lambda p, t, d: learner.adapt(p, t, d, jax.random.PRNGKey(1)))(
        params, theta, (x, y))
    design, exact = least_squares(x, y)
    scale = 1.0 if step_scale is None else float(step_scale((x, y)))
    contraction = np.eye(4) - inner_lr * scale * design.T @ design
    start = weights(theta) - exact
    predicted = np.linalg.matrix_power(contraction, steps) @ start
    norm = np.linalg.norm
    return norm(weights(adapted) - exact) / norm(start), norm(predicted) / norm(start)


def test_per_point_step_makes_the_inner_step_independent_of_the_history_size():
    """On a Bayesian linear model the summed likelihood's curvature is ΦᵀΦ, N times its
    per-point one. With per_point_step(64) each step is η (64/N) ΦᵀΦ: the error left after 5
    steps is as predicted, and it tends to (1 − 0.4)^5 (x ~ N(0, I), η · 64 = 0.4) whatever
    N; with the summed objective the same step size diverges (|1 − 0.4 N/64| > 1)."""
    scale = mb.per_point_step(64.0)
    for n in (640, 6_400, 64_000):
        error, predicted = remaining_error(n, scale)
        assert error == pytest.approx(predicted, rel=1e-3)
        if n > 640:
            assert error == pytest.approx(0.6 ** 5, rel=0.05)
    assert remaining_error(640, None)[0] > 100.0
    assert remaining_error(32, scale)[0] == pytest.approx(remaining_error(32, None)[0])


def test_inner_adam_steps_do_not_depend_on_the_history_size():
    """Adam's update m / √v does not change when the objective is scaled: on a linear-Gaussian
    model, 5 inner Adam steps (the bandit config's ``inner_optimizer="adam"``) on a history
    repeated 10 times (its summed likelihood × 10) give the λ of the history itself, with no
    ``per_point_step``; each weight moves at most K · η. SGD's first step on the repeated
    history is 10 times as long."""
    x, y = linear_data(640)
    repeated = (jnp.tile(x, (10, 1)), jnp.tile(y, (10, 1)))

    def moved(inner_optimizer, data, steps=5):
        learner = dataclasses.replace(linear_learner(0.05, steps, None),
                                      inner_optimizer=inner_optimizer)
        params = learner.init_params(jax.random.PRNGKey(0), x)
        theta = params.q_theta.mean
        return weights(learner.adapt(params, theta, data, jax.random.PRNGKey(1))) - weights(theta)

    adam = INNER_OPTIMIZERS["adam"](0.05)
    np.testing.assert_allclose(moved(adam, repeated), moved(adam, (x, y)), rtol=1e-4, atol=1e-6)
    assert np.abs(moved(adam, (x, y))).max() <= 5 * 0.05 * 1.01
    sgd = optax.sgd(1e-5)
    np.testing.assert_allclose(moved(sgd, repeated, 1), 10 * moved(sgd, (x, y), 1), rtol=1e-3)


def test_fisher_posterior_narrows_with_the_history_and_the_gradient_rule_does_not():
    """The play learner's σ_λ after one inner step on the same 50 slots standing for 1,000 or
    100,000 pulls. Under the gradient rule, ``per_point_step`` scales the step by 1/N as the
    likelihood's gradient grows with N, so σ_λ is the same (Thompson sampling would keep
    sampling at that width forever). Under ``eval_local_variance="fisher"`` σ_λ⁻² − σ_θ⁻² =
    ρ F/β, and F of the weighted slots grows with the pulls they stand for: 100× here."""
    from experiments.configs.wheel_bandit import get_config
    from experiments.wheel_bandit import bandit_learner
    from metabayes.training.config import make_evaluator

    contexts = sample_contexts(jax.random.PRNGKey(0), 50)
    arms, rewards = jnp.arange(50) % NUM_ARMS, jnp.linspace(1.0, 50.0, 50)

    def log_sigmas(rule, pulls_per_slot):
        config = get_config()
        config.update(hidden=(8,), eval_inner_steps=1, eval_local_variance=rule)
        learner = make_evaluator(config, bandit_learner(config, "abml"))
        support = weighted_support(contexts, arms, rewards, jnp.full(50, pulls_per_slot))
        params = learner.init_params(jax.random.PRNGKey(1), support[0])
        local = learner.adapt(params, params.q_theta.mean, support, jax.random.PRNGKey(2))
        return (jax.tree_util.tree_leaves(local.log_sigma),
                jax.tree_util.tree_leaves(params.q_theta.mean.log_sigma))

    for short, long in zip(log_sigmas("gradient", 20.0)[0], log_sigmas("gradient", 2000.0)[0]):
        np.testing.assert_allclose(short, long, rtol=1e-5, atol=1e-7)
    (short, prior), (long, _) = log_sigmas("fisher", 20.0), log_sigmas("fisher", 2000.0)
    added = lambda local, theta: np.exp(-2.0 * local) - np.exp(-2.0 * theta)
    for s, l, p in zip(short, long, prior):
        assert np.all(added(s, p) > 0)
        # float32: σ⁻² = e^6 ≈ 403 holds the short history's F/β to ~1e-4, × 100 here
        np.testing.assert_allclose(added(l, p), 100.0 * added(s, p), rtol=1e-3, atol=0.02)


def test_warm_start_continues_the_inner_loop():
    """K steps from a warm start λ^K are steps K+1..2K of one 2K-step loop (MAML with SGD is
    deterministic), so on a linear-Gaussian model the error to the exact posterior mean after
    R warm re-adaptations is (I − η c ΦᵀΦ)^(K R) of the start, where cold ones stay at the K-th
    power. Guards ``start`` being ignored (the warm error would stay at 0.6^5)."""
    x, y = linear_data(640)
    make = lambda steps: linear_learner(0.4 / 64, steps, mb.per_point_step(64.0))
    learner = make(5)
    params = learner.init_params(jax.random.PRNGKey(0), x)
    theta = params.q_theta.mean
    adapt = fast_jit(lambda t, s: learner.adapt(params, theta, (x, y), jax.random.PRNGKey(1), s))
    once = adapt(theta, None)
    twice = adapt(theta, once)
    ten_steps = make(10).adapt(params, theta, (x, y), jax.random.PRNGKey(1))
    for got, want in zip(jax.tree_util.tree_leaves(twice), jax.tree_util.tree_leaves(ten_steps)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    _, exact = least_squares(x, y)
    error = lambda t: np.linalg.norm(weights(t) - exact)
    local = once
    for _ in range(3):
        local = adapt(theta, local)
    assert error(local) < 0.6 ** 15 * error(theta) < error(once)
