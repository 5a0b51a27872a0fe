"""Shared test helpers: tiny models, random pytrees, and hand-written closed forms.

Everything here is independent reference code (numpy/scipy or plain JAX) that the tests compare
metabayes against; nothing here calls the metabayes function it is used to check.
"""
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import metabayes as mb

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Constant(nn.Module):
    """The conjugate-Gaussian "network": one scalar parameter φ broadcast to [N, 1]."""

    @nn.compact
    def __call__(self, x):
        phi = self.param("phi", nn.initializers.zeros, ())
        return jnp.broadcast_to(phi, (x.shape[0], 1))


def to_np(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def flat_np(tree):
    """Every leaf of a pytree, raveled and concatenated into one float64 numpy vector."""
    return np.concatenate([np.ravel(l) for l in jax.tree_util.tree_leaves(to_np(tree))])


def assert_trees_close(actual, expected, rtol=1e-10, atol=1e-12):
    """Same structure, and every leaf allclose."""
    a_leaves, a_def = jax.tree_util.tree_flatten(actual)
    e_leaves, e_def = jax.tree_util.tree_flatten(expected)
    assert a_def == e_def, f"tree structures differ:\n{a_def}\n{e_def}"
    for a, e in zip(a_leaves, e_leaves):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)


def random_tree(key, shapes, scale=1.0, offset=0.0):
    """A nested dict of float64 normal leaves: ``shapes`` maps names to shapes or sub-dicts."""
    leaves, treedef = jax.tree_util.tree_flatten(shapes, is_leaf=lambda s: isinstance(s, tuple))
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(treedef, [
        offset + scale * jax.random.normal(k, s, jnp.float64) for k, s in zip(keys, leaves)])


TREE_SHAPES = {"layer": {"kernel": (3, 2), "bias": (2,)}, "scalar": (), "conv": (2, 2, 1, 3)}


def random_posterior(key, params, log_sigma_mean=-1.0, log_sigma_scale=0.3, mean_scale=0.5):
    """A MeanFieldGaussian shaped like ``params`` with random means and log σ."""
    k1, k2 = jax.random.split(key)
    shapes = jax.tree_util.tree_map(jnp.shape, params)
    is_shape = lambda s: isinstance(s, tuple)
    leaves, treedef = jax.tree_util.tree_flatten(shapes, is_leaf=is_shape)
    means = jax.tree_util.tree_unflatten(treedef, [
        mean_scale * jax.random.normal(k, s, jnp.float64)
        for k, s in zip(jax.random.split(k1, len(leaves)), leaves)])
    log_sigmas = jax.tree_util.tree_unflatten(treedef, [
        log_sigma_mean + log_sigma_scale * jax.random.normal(k, s, jnp.float64)
        for k, s in zip(jax.random.split(k2, len(leaves)), leaves)])
    return mb.MeanFieldGaussian(means, log_sigmas)


def perturb(tree, scale, key):
    """tree + scale · N(0, I) leafwise (a random direction when tree is zeros)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(treedef, [
        l + scale * jax.random.normal(k, jnp.shape(l), jnp.result_type(l))
        for l, k in zip(leaves, keys)])


def tree_vdot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                              jax.tree_util.tree_leaves(b)))


def tree_axpy(alpha, x, y):
    return jax.tree_util.tree_map(lambda u, v: alpha * u + v, x, y)


# ---------------------------------------------------------------------------------------------
# Closed forms (numpy).


def diag_gauss_kl(mu_q, sigma_q, mu_p, sigma_p):
    """Σ KL(N(μ_q, σ_q²) || N(μ_p, σ_p²)), by hand."""
    mu_q, sigma_q, mu_p, sigma_p = map(np.asarray, (mu_q, sigma_q, mu_p, sigma_p))
    return float(np.sum(np.log(sigma_p / sigma_q)
                        + (sigma_q ** 2 + (mu_q - mu_p) ** 2) / (2 * sigma_p ** 2) - 0.5))


def gauss_kl_full(m_q, cov_q, m_p, cov_p):
    """KL(N(m_q, Σ_q) || N(m_p, Σ_p)) for full covariances, by hand."""
    k = len(m_q)
    prec_p = np.linalg.inv(cov_p)
    diff = m_p - m_q
    return 0.5 * (np.trace(prec_p @ cov_q) + diff @ prec_p @ diff - k
                  + np.linalg.slogdet(cov_p)[1] - np.linalg.slogdet(cov_q)[1])


def linear_gaussian_ell(x, y, kernel_mean, bias_mean, kernel_std, bias_std, noise_std):
    """E_q[Σ_n log N(y_n; x_n W + b, s²)] for W, b ~ independent Normals, and its gradients.

    Returns (value, d/d kernel_mean, d/d bias_mean, d/d log kernel_std, d/d log bias_std):
    E[(y − xW − b)²] = (y − x m_W − m_b)² + Σ_j x_j² σ_Wj² + σ_b² per output.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    s2 = noise_std ** 2
    resid = y - x @ kernel_mean - bias_mean                       # [N, O]
    var = (x ** 2) @ (kernel_std ** 2) + bias_std ** 2            # [N, O]
    n, o = y.shape
    value = (-n * o * (HALF_LOG_2PI + math.log(noise_std))
             - np.sum(resid ** 2 + var) / (2 * s2))
    d_kernel = x.T @ resid / s2
    d_bias = resid.sum(0) / s2
    d_log_kernel_std = -(x ** 2).sum(0)[:, None] * kernel_std ** 2 / s2
    d_log_bias_std = -n * bias_std ** 2 / s2
    return value, d_kernel, d_bias, d_log_kernel_std, d_log_bias_std


def hyperprior_log_prob_np(mu, log_sigma, s0, a0, b0):
    """log N(μ; 0, s0²) + log Gamma(τ; a0, rate b0) + log |dτ/d log σ|, τ = σ⁻², summed
    (scipy densities)."""
    mu, log_sigma = np.asarray(mu, np.float64), np.asarray(log_sigma, np.float64)
    tau = np.exp(-2.0 * log_sigma)
    return float(np.sum(stats.norm.logpdf(mu, 0.0, s0))
                 + np.sum(stats.gamma.logpdf(tau, a0, scale=1.0 / b0) + np.log(2.0 * tau)))


def theta_log_hyperprior_np(theta, hyper):
    """hyperprior_log_prob_np for θ = MeanFieldGaussian(μ tree, log σ tree) and a Hyperprior."""
    return hyperprior_log_prob_np(flat_np(theta.mean), flat_np(theta.log_sigma),
                                  hyper.s0, hyper.a0, hyper.b0)


def mc_mean_and_se(samples):
    """Mean and standard error over the leading axis."""
    samples = np.asarray(samples, np.float64)
    return samples.mean(0), samples.std(0, ddof=1) / math.sqrt(samples.shape[0])


def mc_batches(estimate, key, num_batches=50):
    """Mean and standard error of a Monte-Carlo ``estimate(key)`` over independent keys.

    A Python loop over one compiled function (vmapping over keys compiles far more slowly on
    XLA:CPU); ``estimate`` should average many samples itself. Works leafwise on pytrees.
    """
    values = [jax.tree_util.tree_map(np.asarray, estimate(k))
              for k in jax.random.split(key, num_batches)]
    stacked = jax.tree_util.tree_map(lambda *v: np.stack(v), *values)
    means = jax.tree_util.tree_map(lambda v: mc_mean_and_se(v)[0], stacked)
    ses = jax.tree_util.tree_map(lambda v: mc_mean_and_se(v)[1], stacked)
    return means, ses


# ---------------------------------------------------------------------------------------------
# Tiny meta-learning problems.


def regression_batch(key, num_tasks=3, num_support=4, num_query=5, dim=1, dtype=jnp.float64):
    """A meta-batch of random sinusoid-like regression tasks, Task of [M, N, dim] / [M, N, 1]."""
    ka, kp, ks, kq, kn = jax.random.split(key, 5)
    amp = jax.random.uniform(ka, (num_tasks, 1, 1), dtype, 0.5, 2.0)
    phase = jax.random.uniform(kp, (num_tasks, 1, 1), dtype, 0.0, 3.0)

    def make(k, n):
        x = jax.random.uniform(k, (num_tasks, n, dim), dtype, -2.0, 2.0)
        y = amp * jnp.sin(x[..., :1] + phase) + 0.1 * jax.random.normal(kn, (num_tasks, n, 1), dtype)
        return x, y

    return mb.Task(make(ks, num_support), make(kq, num_query))


def classification_batch(key, num_tasks=2, ways=3, shots=2, queries=2, dim=4, dtype=jnp.float64):
    """A meta-batch of random Gaussian-blob classification tasks: inputs [M, N, dim], labels [M, N]."""
    kc, ks, kq = jax.random.split(key, 3)
    centres = jax.random.normal(kc, (num_tasks, ways, dim), dtype)

    def make(k, per_class):
        labels = jnp.tile(jnp.repeat(jnp.arange(ways), per_class), (num_tasks, 1))
        x = jnp.take_along_axis(centres, labels[..., None], axis=1)
        return x + 0.5 * jax.random.normal(k, x.shape, dtype), labels

    return mb.Task(make(ks, shots), make(kq, queries))


def task_slice(batch, i):
    return jax.tree_util.tree_map(lambda a: a[i], batch)


TINY_HYPERPRIOR = mb.Hyperprior(s0=1.0, a0=2.0, b0=0.3)


def tiny_learner(theta_family="point", **overrides):
    """The small ABML learner most meta-level tests share (one compile per distinct config):
    a 1-3-1 tanh MLP, Gaussian likelihood, K = 2 inner steps, 2 inner and 2 outer samples, β = 0.8."""
    options = dict(likelihood=mb.Gaussian(0.5), inner_lr=0.05, inner_steps=2, inner_samples=2,
                   outer_samples=2, num_tasks=7, hyperprior=TINY_HYPERPRIOR, init_log_sigma=-1.0,
                   kl_weight=0.8,
                   init_theta_log_scale=-25.0, theta_family=theta_family)
    options.update(overrides)
    model = options.pop("model", mb.MLP(hidden=(3,), activation="tanh"))
    return mb.abml(model, **options)


def tiny_batch(seed=0):
    """Two regression tasks with 3 support and 3 query points (float64 under x64)."""
    return regression_batch(jax.random.PRNGKey(seed), num_tasks=2, num_support=3, num_query=3)


@functools.partial(jax.jit, static_argnums=0)
def loss_and_grad(learner, params, batch, key):
    """jit(value_and_grad(learner.loss)), cached per (learner, shapes): shared across tests."""
    return jax.value_and_grad(learner.loss, has_aux=True)(params, batch, key)
