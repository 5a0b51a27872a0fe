"""The three ELBO terms of MATH.md §2 and the hyperprior of §1 (checks §6.2 and §6.3)."""
import dataclasses
import math

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import metabayes as mb
from metabayes import layers
from helpers import (TREE_SHAPES, assert_trees_close, diag_gauss_kl, fast_jit, flat_np,
                     linear_gaussian_ell, loss_and_grad, mc_batches, random_posterior, random_tree,
                     task_slice, theta_log_hyperprior_np, tiny_batch, tiny_learner, to_np)

pytestmark = pytest.mark.usefixtures("x64")

NOISE = 0.7
DENSE = layers.Dense(2)


def linear_problem(seed=0):
    """Dense(2) on 3 inputs, 6 examples, and a random q over its (kernel, bias)."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    params = DENSE.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))["params"]
    q = random_posterior(seed, params, log_sigma_mean=-0.7)
    return jnp.asarray(x), jnp.asarray(y), q


def closed_form_ell(x, y, q):
    m, s = to_np(q.mean), to_np(q.std)
    return linear_gaussian_ell(x, y, m["kernel"], m["bias"], s["kernel"], s["bias"], NOISE)


def ell_2000(q, data, key):
    return mb.expected_log_likelihood(DENSE.apply, q, data, key, 2000, likelihood=mb.Gaussian(NOISE))


_ell = fast_jit(ell_2000)


@pytest.mark.parametrize("seed", range(2))
def test_expected_log_likelihood_unbiased(seed):
    """Mean of the reparameterised estimate over many seeds → E_q[log p(D|φ)] in closed form
    (§6.2)."""
    x, y, q = linear_problem(seed)
    mean, se = mc_batches(lambda k: _ell(q, (x, y), k), jax.random.PRNGKey(seed))
    expected = closed_form_ell(x, y, q)[0]
    assert se < 0.02 * abs(expected)
    assert abs(mean - expected) < 5 * se


def test_expected_log_likelihood_point_mass_is_exact():
    """A point mass q = δ(φ − μ) gives log p(D | μ) exactly, with no sampling (§2)."""
    x, y, q = linear_problem()
    m = to_np(q.mean)
    value = _ell(mb.MeanFieldGaussian(q.mean), (x, y), jax.random.PRNGKey(0))
    expected = np.sum(stats.norm.logpdf(y, x @ m["kernel"] + m["bias"], NOISE))
    np.testing.assert_allclose(float(value), expected, rtol=1e-13)


def test_expected_log_likelihood_gradient_unbiased():
    """The reparameterisation gradient w.r.t. (mean, log σ) → the closed-form gradient (§6.2)."""
    x, y, q = linear_problem(3)
    grad = fast_jit(jax.grad(ell_2000))
    mean, se = mc_batches(lambda k: grad(q, (x, y), k), jax.random.PRNGKey(7))
    _, d_kernel, d_bias, d_log_kernel_std, d_log_bias_std = closed_form_ell(x, y, q)
    for got, err, want in [(mean.mean["kernel"], se.mean["kernel"], d_kernel),
                           (mean.mean["bias"], se.mean["bias"], d_bias),
                           (mean.log_sigma["kernel"], se.log_sigma["kernel"], d_log_kernel_std),
                           (mean.log_sigma["bias"], se.log_sigma["bias"], d_log_bias_std)]:
        assert np.all(np.abs(got - want) < 5 * err + 1e-12), (got, want, err)


# ---------------------------------------------------------------------------------------------
# local_kl (§6.3)


@pytest.mark.parametrize("seed", range(3))
def test_local_kl_matches_hand_formula_and_distrax(seed):
    """local_kl = Σ_w [log σ_p/σ_q + (σ_q² + (μ_q − μ_p)²)/(2σ_p²) − ½] on a random pytree,
    and = distrax's MultivariateNormalDiag KL on the flattened vectors."""
    params = random_tree(seed, TREE_SHAPES)
    q = random_posterior(seed + 10, params, log_sigma_scale=0.5)
    p = random_posterior(seed + 20, params, log_sigma_scale=0.5)
    expected = diag_gauss_kl(flat_np(q.mean), flat_np(q.std), flat_np(p.mean), flat_np(p.std))
    np.testing.assert_allclose(float(mb.local_kl(q, p)), expected, rtol=1e-12)
    mvn = lambda d: distrax.MultivariateNormalDiag(jnp.asarray(flat_np(d.mean)),
                                                   jnp.asarray(flat_np(d.std)))
    np.testing.assert_allclose(float(mb.local_kl(q, p)), float(mvn(q).kl_divergence(mvn(p))),
                               rtol=1e-12)


def test_local_kl_zero_iff_equal():
    """KL(q || p) = 0 at q = p and > 0 when any single mean or log σ differs (§6.3)."""
    params = random_tree(0, TREE_SHAPES)
    p = random_posterior(1, params)
    assert abs(float(mb.local_kl(p, p))) < 1e-14
    leaves, treedef = jax.tree_util.tree_flatten(p)   # the mean leaves, then the log σ leaves
    sigmas = [np.ravel(s) for s in jax.tree_util.tree_leaves(to_np(p.std))]
    kl_fn = fast_jit(mb.local_kl)
    delta = 1e-2
    for i, leaf in enumerate(leaves):
        is_mean = i < len(sigmas)
        for j in range(leaf.size):
            moved = list(leaves)
            moved[i] = leaf.ravel().at[j].add(delta).reshape(leaf.shape)
            kl = float(kl_fn(jax.tree_util.tree_unflatten(treedef, moved), p))
            sigma = sigmas[i % len(sigmas)][j]
            # KL of a moved mean is δ²/(2σ²); of a moved log σ, (e^{2δ} − 1 − 2δ)/2.
            if is_mean:
                expected = delta ** 2 / (2 * sigma ** 2)
            else:
                expected = (math.expm1(2 * delta) - 2 * delta) / 2
            assert kl > 0
            np.testing.assert_allclose(kl, expected, rtol=1e-8)


# ---------------------------------------------------------------------------------------------
# Hyperprior (§1)

HYPERS = [mb.Hyperprior(), mb.Hyperprior(s0=0.5, a0=2.0, b0=0.3), mb.Hyperprior(s0=2.0, a0=0.7, b0=3.0)]


@pytest.mark.parametrize("hyper", HYPERS)
def test_hyperprior_log_prob_matches_scipy(hyper):
    """log p(θ) = log N(μ; 0, s0²) + log Gamma(σ⁻²; a0, rate b0) + log 2σ⁻² (the Jacobian of
    τ = σ⁻² w.r.t. log σ), vs scipy (§1)."""
    theta = mb.MeanFieldGaussian(random_tree(0, TREE_SHAPES),
                                 random_tree(1, TREE_SHAPES, scale=1.0, offset=-1.0))
    np.testing.assert_allclose(float(hyper.log_prob(theta)), theta_log_hyperprior_np(theta, hyper),
                               rtol=1e-12)


@pytest.mark.parametrize("hyper", HYPERS)
def test_hyperprior_densities_normalised_in_optimised_coordinates(hyper):
    """exp(log_prob_mean) and exp(log_prob_log_sigma) each integrate to 1 over the real line:
    the density of log σ includes the Jacobian |dτ/d log σ| = 2τ (hyperprior.py)."""
    density_mu = lambda m: float(jnp.exp(hyper.log_prob_mean(jnp.float64(m))))
    density_l = lambda l: float(jnp.exp(hyper.log_prob_log_sigma(jnp.float64(l))))
    np.testing.assert_allclose(integrate.quad(density_mu, -np.inf, np.inf)[0], 1.0, rtol=1e-7)
    grid = np.linspace(-30.0, 40.0, 200001)
    values = np.exp(np.asarray(hyper.log_prob_log_sigma(jnp.asarray(grid))))
    np.testing.assert_allclose(np.trapezoid(values, grid), 1.0, rtol=1e-6)


@pytest.mark.parametrize("hyper", HYPERS)
def test_expected_log_prob_log_sigma_matches_quadrature(hyper):
    """E_{l ~ N(m, s²)}[log p(l)] closed form = Gauss-Hermite quadrature of the scipy density."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    for m, s in [(-1.0, 0.3), (0.5, 0.05), (-3.0, 0.6)]:
        l = m + s * nodes
        tau = np.exp(-2 * l)
        log_p = stats.gamma.logpdf(tau, hyper.a0, scale=1 / hyper.b0) + np.log(2 * tau)
        expected = np.sum(weights * log_p) / np.sqrt(2 * np.pi)
        got = float(hyper.expected_log_prob_log_sigma(jnp.float64(m), jnp.float64(s)))
        np.testing.assert_allclose(got, expected, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# global_kl (§2)


def theta_tree(seed=0):
    return mb.MeanFieldGaussian(random_tree(seed, TREE_SHAPES, scale=0.5),
                                random_tree(seed + 1, TREE_SHAPES, scale=0.5, offset=-1.0))


@pytest.mark.parametrize("hyper", HYPERS[:2])
def test_global_kl_point_family_is_neg_log_hyperprior(hyper):
    """q(θ) = δ(θ − ψ): the global term is −log p(ψ) (a MAP penalty), §2."""
    theta = theta_tree()
    got = float(mb.global_kl(mb.MeanFieldGaussian(theta), hyper))
    np.testing.assert_allclose(got, -theta_log_hyperprior_np(theta, hyper), rtol=1e-12)


def gaussian_q_theta(scale_offset, seed=0):
    """A Gaussian q(θ) over (μ, log σ): location theta_tree, log-scales around scale_offset."""
    loc = theta_tree(seed)
    scale = mb.MeanFieldGaussian(random_tree(seed + 10, TREE_SHAPES, 0.2, scale_offset),
                                 random_tree(seed + 11, TREE_SHAPES, 0.2, scale_offset))
    return mb.MeanFieldGaussian(loc, scale)


@pytest.mark.parametrize("hyper", HYPERS[:2])
def test_global_kl_gaussian_family_matches_monte_carlo(hyper):
    """Closed-form KL(q(θ) || p(θ)) = E_q[log q(θ) − log p(θ)], estimated with the library's
    MeanFieldGaussian.log_prob and Hyperprior.log_prob over sampled θ (§2)."""
    q_theta = gaussian_q_theta(-1.2)
    closed = float(mb.global_kl(q_theta, hyper))

    @fast_jit
    def estimate(key):
        thetas = jax.vmap(q_theta.sample)(jax.random.split(key, 2000))
        return jnp.mean(jax.vmap(lambda t: q_theta.log_prob(t) - hyper.log_prob(t))(thetas))

    mean, se = mc_batches(estimate, jax.random.PRNGKey(1))
    assert abs(mean - closed) < 5 * se, (mean, closed, se)


def test_global_kl_gaussian_family_matches_numpy_closed_form():
    """KL = Σ KL(N(m_μ, s_μ²) || N(0, s0²)) − H[N(m_l, s_l²)] − E[log p(l)], the expectation
    by Gauss-Hermite quadrature of scipy's Gamma density (§2)."""
    hyper = HYPERS[1]
    q_theta = gaussian_q_theta(-1.0)
    loc, scale = q_theta.mean, q_theta.std
    m_mu, s_mu = flat_np(loc.mean), flat_np(scale.mean)
    m_l, s_l = flat_np(loc.log_sigma), flat_np(scale.log_sigma)
    kl_mu = diag_gauss_kl(m_mu, s_mu, 0.0, hyper.s0)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    l = m_l[:, None] + s_l[:, None] * nodes
    tau = np.exp(-2 * l)
    log_p = stats.gamma.logpdf(tau, hyper.a0, scale=1 / hyper.b0) + np.log(2 * tau)
    expected_log_p = (log_p @ weights) / np.sqrt(2 * np.pi)
    entropy = 0.5 * np.log(2 * np.pi * np.e * s_l ** 2)
    expected = kl_mu + np.sum(-entropy - expected_log_p)
    np.testing.assert_allclose(float(mb.global_kl(q_theta, hyper)), expected, rtol=1e-10)


def test_global_kl_gaussian_reduces_to_point_estimate():
    """As the scale of q(θ) → 0, the Gaussian-family KL minus its (ψ-free) negative entropy →
    −log p(ψ), and its gradient w.r.t. the location → the point family's gradient (§2)."""
    hyper = HYPERS[1]
    point_grad = jax.grad(lambda loc: mb.global_kl(mb.MeanFieldGaussian(loc), hyper))(theta_tree())
    point_value = float(mb.global_kl(mb.MeanFieldGaussian(theta_tree()), hyper))
    gauss_grad = fast_jit(jax.grad(lambda loc, scale: mb.global_kl(mb.MeanFieldGaussian(loc, scale),
                                                                  hyper)))
    errors = []
    for log_scale in [-1.0, -3.0, -6.0, -20.0]:
        q_theta = gaussian_q_theta(log_scale)
        neg_entropy = -float(q_theta.entropy())
        grad = gauss_grad(q_theta.mean, q_theta.log_sigma)
        errors.append(max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
            jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(point_grad))))
        value_error = abs(float(mb.global_kl(q_theta, hyper)) - neg_entropy - point_value)
    assert errors == sorted(errors, reverse=True) and errors[0] > 1e-3
    assert errors[-1] < 1e-12 and value_error < 1e-10


def test_meta_loss_gaussian_family_reduces_to_point_family():
    """MetaLearner with theta_family="gaussian" and a vanishing q(θ) scale (e^-25): the same
    meta-gradient w.r.t. the location as the point family, and a loss differing only by the
    ψ-free −H[q(θ)]/N (§2)."""
    batch = tiny_batch()
    gauss, point = tiny_learner("gaussian"), tiny_learner("point")
    params_g = gauss.init_params(jax.random.PRNGKey(1), batch.support[0][0])
    params_p = mb.MetaParams(mb.MeanFieldGaussian(params_g.q_theta.mean), params_g.step_scale)
    key = jax.random.PRNGKey(2)
    (loss_g, _), grad_g = loss_and_grad(gauss, params_g, batch, key)
    (loss_p, _), grad_p = loss_and_grad(point, params_p, batch, key)
    neg_entropy = -float(params_g.q_theta.entropy())
    np.testing.assert_allclose(float(loss_g) - neg_entropy / gauss.num_tasks, float(loss_p), rtol=1e-10)
    assert_trees_close(grad_g.q_theta.mean, grad_p.q_theta.mean, rtol=1e-8, atol=1e-10)


def test_defaults_are_the_real_elbo_and_the_papers_choices():
    """β = 1 (the real ELBO), q(θ) a point estimate, λ⁰ = θ with second-order meta-gradients,
    support ∪ query outer data (MAML: query only), one inner sample, hyperprior s0 = 1, a0 = 1, b0 = 0.01 (§2-3)."""
    learner = mb.abml(mb.MLP())
    assert learner.kl_weight == 1.0 and learner.theta_family == "point"
    assert learner.first_order is False and learner.outer_data == "support_query"
    assert learner.inner_samples == 1 and learner.estimator == "weights"
    assert learner.hyperprior == mb.Hyperprior(s0=1.0, a0=1.0, b0=0.01)
    maml = mb.maml(mb.MLP())
    assert maml.kl_weight == 0.0 and maml.hyperprior is None and maml.theta_family == "deterministic"
    assert maml.outer_data == "query"   # Finn et al.'s outer loss: the query set only
    assert mb.maml(mb.MLP(), outer_data="support_query").outer_data == "support_query"
    assert learner.batch_norm == maml.batch_norm == "transductive"


def test_per_point_kl_makes_the_query_loss_the_tasks_per_point_elbo():
    """With ``outer_kl_scale=per_point_kl()`` the query-only outer loss is N_Q × the whole task's
    ELBO per point, −E log p(S ∪ Q) / (N_S + N_Q) + β KL / (N_S + N_Q), when the support's
    likelihood is the query's (here S = Q: the same λ, the same φ draws); without the scale it
    is not."""
    batch = tiny_batch()
    task = task_slice(batch, 0)
    task = mb.Task(task.query, task.query)                     # S = Q: N_S = N_Q = 3
    learner = tiny_learner("point", outer_samples=1)
    params = learner.init_params(jax.random.PRNGKey(0), task.support[0])
    key = jax.random.PRNGKey(1)
    whole, _ = mb.task_loss(learner, params, task, key)      # outer data S ∪ Q
    query_only = lambda **options: mb.task_loss(
        dataclasses.replace(learner, outer_data="query", **options), params, task, key)[0]
    points = 2 * task.query[1].shape[0]
    np.testing.assert_allclose(query_only(outer_kl_scale=mb.per_point_kl()),
                               task.query[1].shape[0] * whole / points, rtol=1e-12)
    assert abs(float(query_only()) - task.query[1].shape[0] * float(whole) / points) > 1e-3
