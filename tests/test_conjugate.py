"""Conjugate models where the evidence and the posterior are closed form (MATH.md §4, §6.1).

For every q: ELBO(q) = log p(D|θ) − KL(q || p(φ|D, θ)) ≤ log p(D|θ), with equality iff q is the
exact posterior; the inner loop (``metabayes.adapt``) run long enough reaches it.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg
from scipy import stats

import metabayes as mb
from metabayes import layers
from helpers import (Constant, diag_gauss_kl, fast_jit, gauss_kl_full, hyperprior_log_prob_np,
                     mc_batches)

pytestmark = pytest.mark.usefixtures("x64")
CONSTANT, DENSE = Constant(), layers.Dense(1)


# ---------------------------------------------------------------------------------------------
# (a) y_n = φ + ε, ε ~ N(0, s²), p(φ | θ) = N(μ, σ²).

NOISE = 2.0
MU, SIGMA = 0.3, 1.0
Y = np.array([1.2, -0.4, 2.5, 0.9, 1.7, 0.1, 3.0, 1.1])  # N = 8: posterior precision 1 + 8/4 = 3


def conj_data(y=Y):
    y = jnp.asarray(y, jnp.float64)
    return jnp.zeros((y.shape[0], 1)), y[:, None]


def conj_prior(mu=MU, sigma=SIGMA):
    return mb.MeanFieldGaussian({"phi": jnp.asarray(mu, jnp.float64)},
                                {"phi": jnp.asarray(math.log(sigma), jnp.float64)})


def conj_evidence(y=Y, mu=MU, sigma=SIGMA, s=NOISE):
    """log N(y; μ 1, s² I + σ² 1 1ᵀ)."""
    n = len(y)
    return stats.multivariate_normal.logpdf(y, np.full(n, mu), s ** 2 * np.eye(n) + sigma ** 2)


def conj_posterior(y=Y, mu=MU, sigma=SIGMA, s=NOISE):
    """Exact posterior N(m*, v*²): precision 1/σ² + N/s², mean (μ/σ² + Σy/s²)/precision."""
    precision = 1 / sigma ** 2 + len(y) / s ** 2
    return (mu / sigma ** 2 + np.sum(y) / s ** 2) / precision, precision ** -0.5


def exact_elbo(apply_fn, q, prior, data, variance_term):
    """ELL at the point mass q.mean (the library's, exact) − the Gaussian variance correction
    (hand-written) − the library's local KL: the ELBO with the expectation taken exactly."""
    ell_at_mean = mb.expected_log_likelihood(apply_fn, mb.MeanFieldGaussian(q.mean), data,
                                             jax.random.PRNGKey(0), likelihood=mb.Gaussian(NOISE))
    return float(ell_at_mean) - variance_term - float(mb.local_kl(q, prior))


@functools.partial(fast_jit, static_argnums=0)
def _mc_ell(apply_fn, q, data, key):
    return mb.expected_log_likelihood(apply_fn, q, data, key, 1000, likelihood=mb.Gaussian(NOISE))


def mc_elbo(apply_fn, q, prior, data, key):
    """The library's Monte-Carlo ELL − local KL: mean and standard error over many seeds."""
    mean, se = mc_batches(lambda k: _mc_ell(apply_fn, q, data, k), key)
    return mean - float(mb.local_kl(q, prior)), se


@pytest.mark.parametrize("seed", range(4))
def test_conjugate_exact_elbo_is_evidence_minus_kl(seed):
    """ELBO(q) = log p(D|θ) − KL(q || posterior) ≤ log p(D|θ) for random q (§4)."""
    rng = np.random.default_rng(seed)
    m, v = rng.normal(0.0, 2.0), math.exp(rng.normal(-0.5, 0.7))
    q = mb.MeanFieldGaussian({"phi": jnp.float64(m)}, {"phi": jnp.float64(math.log(v))})
    elbo = exact_elbo(CONSTANT.apply, q, conj_prior(), conj_data(), len(Y) * v ** 2 / (2 * NOISE ** 2))
    m_star, v_star = conj_posterior()
    gap = diag_gauss_kl(m, v, m_star, v_star)
    assert gap > 1e-3
    np.testing.assert_allclose(elbo, conj_evidence() - gap, rtol=1e-12)
    assert elbo < conj_evidence()


def test_conjugate_exact_elbo_equals_evidence_at_posterior():
    """Equality in ELBO ≤ log p(D|θ) exactly at q = exact posterior (§4, §6.1)."""
    m_star, v_star = conj_posterior()
    q = mb.MeanFieldGaussian({"phi": jnp.float64(m_star)}, {"phi": jnp.float64(math.log(v_star))})
    elbo = exact_elbo(CONSTANT.apply, q, conj_prior(), conj_data(),
                      len(Y) * v_star ** 2 / (2 * NOISE ** 2))
    np.testing.assert_allclose(elbo, conj_evidence(), rtol=1e-13)


def test_conjugate_mc_elbo_bound_and_equality():
    """Monte-Carlo ELBO (library ELL − local KL) → evidence − KL(q||post): below the evidence
    for a wrong q by more than MC error, equal to it (within MC error) at the posterior (§6.1)."""
    m_star, v_star = conj_posterior()
    evidence = conj_evidence()
    key = jax.random.PRNGKey(1)
    for m, v in [(m_star, v_star), (m_star + 0.4, 0.7 * v_star), (-1.0, 2.0)]:
        q = mb.MeanFieldGaussian({"phi": jnp.float64(m)}, {"phi": jnp.float64(math.log(v))})
        elbo, se = mc_elbo(CONSTANT.apply, q, conj_prior(), conj_data(), key)
        gap = diag_gauss_kl(m, v, m_star, v_star)
        assert abs(elbo - (evidence - gap)) < 5 * se + 1e-12
        if gap > 1e-6:
            assert elbo + 5 * se < evidence


def test_composed_elbo_matches_closed_form_over_tasks():
    """mb.elbo (eq. 1, point q(θ)) = Σ_i [log p(D_i|θ) − KL(q_i || post_i)] + log p(θ), in
    Monte-Carlo mean (§2)."""
    ys = np.stack([Y, Y[::-1] * 0.5 - 1.0])
    hyper = mb.Hyperprior(s0=1.5, a0=2.0, b0=0.5)
    theta = conj_prior()
    q_theta = mb.MeanFieldGaussian(theta)
    locals_ = mb.MeanFieldGaussian({"phi": jnp.array([0.9, -0.6])},
                                   {"phi": jnp.log(jnp.array([0.5, 0.8]))})
    tasks = (jnp.zeros((2, len(Y), 1)), jnp.asarray(ys)[..., None])
    elbo = fast_jit(lambda k: mb.elbo(CONSTANT.apply, q_theta, locals_, tasks, hyper, k,
                                      num_samples=1000, likelihood=mb.Gaussian(NOISE)))
    mean, se = mc_batches(elbo, jax.random.PRNGKey(2))
    expected = hyperprior_log_prob_np(MU, math.log(SIGMA), 1.5, 2.0, 0.5)
    for y, m, v in zip(ys, [0.9, -0.6], [0.5, 0.8]):
        m_star, v_star = conj_posterior(y)
        expected += conj_evidence(y) - diag_gauss_kl(m, v, m_star, v_star)
    assert abs(mean - expected) < 5 * se


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_conjugate_adapt_reaches_exact_posterior(optimizer):
    """metabayes.adapt (λ⁰ = θ, K steps on −ELBO) converges to the exact posterior (§3, §4)."""
    m_star, v_star = conj_posterior()
    if optimizer == "sgd":
        inner, steps = optax.sgd(0.25), 300   # curvatures: 3 in μ_λ, 2 in log σ_λ
    else:
        inner, steps = optax.adam(optax.exponential_decay(0.1, 100, 0.3)), 600
    objective = mb.LocalObjective(CONSTANT.apply, conj_prior(), conj_data(), mb.Gaussian(NOISE),
                                  num_samples=1000)
    local = fast_jit(lambda k: mb.adapt(objective, k, inner_optimizer=inner, num_steps=steps))(
        jax.random.PRNGKey(3))
    assert abs(float(local.mean["phi"]) - m_star) < 0.1 * v_star
    assert abs(math.exp(float(local.log_sigma["phi"])) / v_star - 1) < 0.05


# ---------------------------------------------------------------------------------------------
# (b) Bayesian linear regression y = x W + b + ε with a Dense(1) layer; Φ = [X, 1].

LIN_NOISE = 2.0
PRIOR_SIGMA = np.array([0.8, 1.2, 1.0, 1.0])   # kernel rows 0..2, then the bias


def orthogonal_design():
    """X [8, 3] whose columns are orthogonal to each other and to the bias column of ones."""
    return scipy.linalg.hadamard(8)[:, 1:4] * np.array([1.0, 0.8, 0.6])


def random_design(seed=0):
    return np.random.default_rng(seed).normal(0.4, 0.5, size=(8, 3))


def lin_problem(x, seed=0):
    rng = np.random.default_rng(seed + 100)
    prior_mean = rng.normal(0.0, 0.5, size=4)
    phi = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    y = phi @ rng.normal(0.0, 1.0, size=4) + LIN_NOISE * rng.normal(size=len(x))
    return phi, y, prior_mean


def to_tree(vec):
    vec = jnp.asarray(vec, jnp.float64)
    return {"kernel": vec[:3, None], "bias": vec[3:]}


def to_vec(tree):
    return np.concatenate([np.asarray(tree["kernel"])[:, 0], np.asarray(tree["bias"])])


def lin_evidence(phi, y, prior_mean):
    cov = LIN_NOISE ** 2 * np.eye(len(y)) + phi @ np.diag(PRIOR_SIGMA ** 2) @ phi.T
    return stats.multivariate_normal.logpdf(y, phi @ prior_mean, cov)


def lin_posterior(phi, y, prior_mean):
    """Exact posterior N(m, A⁻¹), A = diag(σ⁻²) + ΦᵀΦ/s²."""
    precision = np.diag(PRIOR_SIGMA ** -2) + phi.T @ phi / LIN_NOISE ** 2
    cov = np.linalg.inv(precision)
    return cov @ (prior_mean / PRIOR_SIGMA ** 2 + phi.T @ y / LIN_NOISE ** 2), cov, precision


def lin_setup(x, seed=0):
    phi, y, prior_mean = lin_problem(x, seed)
    prior = mb.MeanFieldGaussian(to_tree(prior_mean), to_tree(np.log(PRIOR_SIGMA)))
    data = (jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)[:, None])
    return phi, y, prior_mean, prior, data


def lin_exact_elbo(q_mean, q_std, phi, prior, data):
    q = mb.MeanFieldGaussian(to_tree(q_mean), to_tree(np.log(q_std)))
    variance_term = np.sum(phi ** 2 @ q_std ** 2) / (2 * LIN_NOISE ** 2)
    return exact_elbo(DENSE.apply, q, prior, data, variance_term)


@pytest.mark.parametrize("seed", range(3))
def test_linear_regression_elbo_below_evidence(seed):
    """Correlated design: ELBO(q) = log p(D|θ) − KL(q || full-covariance posterior) < evidence."""
    x = random_design(seed)
    phi, y, prior_mean, prior, data = lin_setup(x, seed)
    m_post, cov_post, _ = lin_posterior(phi, y, prior_mean)
    rng = np.random.default_rng(seed)
    q_mean, q_std = m_post + rng.normal(0, 0.3, 4), np.exp(rng.normal(-0.7, 0.3, 4))
    elbo = lin_exact_elbo(q_mean, q_std, phi, prior, data)
    gap = gauss_kl_full(q_mean, np.diag(q_std ** 2), m_post, cov_post)
    np.testing.assert_allclose(elbo, lin_evidence(phi, y, prior_mean) - gap, rtol=1e-12)
    assert gap > 1e-3 and elbo < lin_evidence(phi, y, prior_mean)


def test_linear_regression_elbo_equals_evidence_orthogonal_design():
    """Orthogonal design: the posterior is diagonal, and the ELBO there equals the evidence,
    exactly (closed-form expectation) and within MC error (library's MC ELL)."""
    x = orthogonal_design()
    phi, y, prior_mean, prior, data = lin_setup(x)
    m_post, cov_post, _ = lin_posterior(phi, y, prior_mean)
    assert np.allclose(cov_post, np.diag(np.diag(cov_post)), atol=1e-14)
    q_std = np.sqrt(np.diag(cov_post))
    evidence = lin_evidence(phi, y, prior_mean)
    np.testing.assert_allclose(lin_exact_elbo(m_post, q_std, phi, prior, data), evidence, rtol=1e-13)
    q = mb.MeanFieldGaussian(to_tree(m_post), to_tree(np.log(q_std)))
    elbo, se = mc_elbo(DENSE.apply, q, prior, data, jax.random.PRNGKey(4))
    assert abs(elbo - evidence) < 5 * se


@pytest.mark.parametrize("design", ["orthogonal", "correlated"])
def test_linear_regression_adapt_reaches_optimum(design):
    """adapt converges to the ELBO's mean-field optimum: the exact posterior for an orthogonal
    design; for a correlated one, mean = posterior mean and σ_j² = 1/A_jj (Bishop 2006, §10.1.2)."""
    x = orthogonal_design() if design == "orthogonal" else random_design(1)
    phi, y, prior_mean, prior, data = lin_setup(x)
    m_post, _, precision = lin_posterior(phi, y, prior_mean)
    v_opt = np.diag(precision) ** -0.5
    lr = 1.0 / max(np.linalg.eigvalsh(precision).max(), 2.0)
    objective = mb.LocalObjective(DENSE.apply, prior, data, mb.Gaussian(LIN_NOISE),
                                  num_samples=2000)
    local = fast_jit(lambda k: mb.adapt(objective, k, inner_optimizer=optax.sgd(lr),
                                        num_steps=400))(jax.random.PRNGKey(5))
    np.testing.assert_allclose(to_vec(local.mean), m_post, atol=0.1 * v_opt.min())
    np.testing.assert_allclose(np.exp(to_vec(local.log_sigma)), v_opt, rtol=0.05)
    if design == "correlated":   # the best mean-field q still has a gap: its KL to the posterior
        best = lin_exact_elbo(m_post, v_opt, phi, prior, data)
        assert best < lin_evidence(phi, y, prior_mean) - 1e-3


@pytest.mark.parametrize("kl_weight", [1.0, 0.25])
def test_fisher_local_variance_reaches_optimum(kl_weight):
    """local_variance="fisher" moves σ_λ to the optimum of ℓ, 1/√(N/s²/β + 1/σ_θ²) (the exact
    posterior sd at β = 1), whatever the likelihood's scale; μ_λ by SGD to its optimum."""
    curvature = len(Y) / NOISE ** 2
    v_star = (curvature / kl_weight + 1 / SIGMA ** 2) ** -0.5
    m_star = (kl_weight * MU / SIGMA ** 2 + np.sum(Y) / NOISE ** 2) / (kl_weight / SIGMA ** 2
                                                                      + curvature)
    inner = optax.sgd(1 / (curvature + kl_weight / SIGMA ** 2))
    objective = mb.LocalObjective(CONSTANT.apply, conj_prior(), conj_data(), mb.Gaussian(NOISE),
                                  kl_weight=kl_weight, num_samples=4000)
    local = fast_jit(lambda k: mb.adapt(objective, k, inner_optimizer=inner, num_steps=3,
                                        local_variance=mb.fisher_variance(damping=1.0)))(
        jax.random.PRNGKey(3))
    np.testing.assert_allclose(float(local.mean["phi"]), m_star, atol=0.05 * v_star)
    np.testing.assert_allclose(float(local.std["phi"]), v_star, rtol=0.02)


def test_fisher_diagonal_of_linear_regression():
    """fisher_diagonal of y = w·x + b + ε is Σ_n [x_n², 1] / s², for any q."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 1))
    data = (jnp.asarray(x), jnp.zeros((6, 1)))
    params = DENSE.init(jax.random.PRNGKey(0), data[0])["params"]
    q = mb.MeanFieldGaussian.from_params(params, -1.0)
    fisher = fast_jit(lambda k: mb.fisher_diagonal(DENSE.apply, q, data, k, num_samples=20000,
                                                   likelihood=mb.Gaussian(NOISE)))(
        jax.random.PRNGKey(1))
    np.testing.assert_allclose(np.asarray(fisher["kernel"]).ravel(),
                               np.sum(x ** 2) / NOISE ** 2, rtol=0.05)
    np.testing.assert_allclose(np.asarray(fisher["bias"]), 6 / NOISE ** 2, rtol=0.05)


def test_fisher_local_variance_contracts_only_where_the_data_inform():
    """Through MetaLearner.adapt: σ_λ shrinks for weights the support data move (x₀'s kernel
    row, the bias) and stays exactly σ_θ for a weight they cannot (x₁ ≡ 0 in the support)."""
    learner = mb.abml(DENSE, likelihood=mb.Gaussian(0.1), inner_lr=1e-3, inner_steps=3,
                      local_variance="fisher", init_log_sigma=-1.0)
    x = jnp.stack([jnp.linspace(-1.0, 1.0, 8), jnp.zeros(8)], axis=1)
    params = learner.init_params(jax.random.PRNGKey(0), x)
    theta = params.q_theta.mean
    local = learner.adapt(params, theta, (x, 2 * x[:, :1]), jax.random.PRNGKey(1))
    kernel_sigma = np.asarray(local.log_sigma["kernel"])[:, 0]
    assert kernel_sigma[1] == np.asarray(theta.log_sigma["kernel"])[1, 0]
    assert kernel_sigma[0] < -2.0 and float(local.log_sigma["bias"][0]) < -2.0


def test_fisher_band_grows_with_abs_x_not_with_the_distance_from_the_support():
    """y = w·x + b with support only in x ∈ [−1, −0.5]: MetaLearner.predict's sd is the
    mean-field optimum's √(σ_b² + x² σ_w² + s²), σ⁻² = Σ_n [x_n², 1] / s² + σ_θ⁻². That is
    symmetric in x: at the mirror images ±0.75 and ±3 of points near and far from the support
    the band is equally wide. The exact posterior, in which w and b are correlated, is 2.6×
    wider at +0.75 than at −0.75 beside the support; mean-field ABML cannot show that."""
    learner = mb.abml(DENSE, likelihood=mb.Gaussian(0.1), inner_lr=1e-3, inner_steps=2,
                      inner_samples=4000, local_variance="fisher", precision_damping=1.0,
                      init_log_sigma=-1.0)
    x = jnp.linspace(-1.0, -0.5, 8)[:, None]
    params = learner.init_params(jax.random.PRNGKey(0), x)
    query = np.asarray([-0.75, 0.75, -3.0, 3.0])
    sd = np.asarray(learner.predict(params, (x, 0.5 * x + 1.0), jnp.asarray(query[:, None]),
                                    jax.random.PRNGKey(1), num_samples=20000).std)[:, 0]
    prior_precision = math.exp(2.0)
    variance_w = 1 / (float(jnp.sum(x ** 2)) / 0.1 ** 2 + prior_precision)
    variance_b = 1 / (8 / 0.1 ** 2 + prior_precision)
    np.testing.assert_allclose(sd, np.sqrt(variance_b + query ** 2 * variance_w + 0.1 ** 2),
                               rtol=0.03)
    np.testing.assert_allclose(sd[1::2], sd[0::2], rtol=0.03)   # mirror images: the same band
    assert sd[2] > 1.4 * sd[0]                                  # wider only with |x|
    features = np.concatenate([np.asarray(x), np.ones_like(np.asarray(x))], axis=1)
    covariance = np.linalg.inv(features.T @ features / 0.1 ** 2 + prior_precision * np.eye(2))
    at = np.stack([query, np.ones_like(query)], axis=1)
    exact = np.sqrt(np.einsum("qi,ij,qj->q", at, covariance, at) + 0.1 ** 2)
    assert exact[1] > 2.5 * exact[0] and exact[3] > 1.5 * exact[2]
