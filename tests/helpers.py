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
import optax
from scipy import stats

import metabayes as mb

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# The tests' own jitted programs are tiny and run for microseconds, so compiling them dominates
# the suite's time on CPU; XLA's backend optimisation level 0 cuts that by ~40% and changes
# results only by float rounding. (The library's own jits, e.g. train_step, are untouched.)
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


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


# Random test data comes from numpy (integer seeds): eager jax.random would compile a threefry
# kernel for every new shape, which costs more than the tests themselves.


def _normal_like(rng, shape):
    return jnp.asarray(rng.normal(size=shape), jnp.float64)


def random_tree(seed, shapes, scale=1.0, offset=0.0):
    """A nested dict of float64 normal leaves: ``shapes`` maps names to shapes or sub-dicts."""
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree_util.tree_flatten(shapes, is_leaf=lambda s: isinstance(s, tuple))
    return jax.tree_util.tree_unflatten(treedef, [offset + scale * _normal_like(rng, s)
                                                  for s in leaves])


TREE_SHAPES = {"layer": {"kernel": (3, 2), "bias": (2,)}, "scalar": (), "conv": (2, 2, 1, 3)}


def random_posterior(seed, params, log_sigma_mean=-1.0, log_sigma_scale=0.3, mean_scale=0.5):
    """A MeanFieldGaussian shaped like ``params`` with random means and log σ."""
    rng = np.random.default_rng(seed)
    means = jax.tree_util.tree_map(lambda p: mean_scale * _normal_like(rng, jnp.shape(p)), params)
    log_sigmas = jax.tree_util.tree_map(
        lambda p: log_sigma_mean + log_sigma_scale * _normal_like(rng, jnp.shape(p)), params)
    return mb.MeanFieldGaussian(means, log_sigmas)


def perturb(tree, scale, seed):
    """tree + scale · N(0, I) leafwise (a random direction when tree is zeros)."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda l: l + scale * jnp.asarray(rng.normal(size=jnp.shape(l)), jnp.result_type(l)), tree)


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


def regression_batch(seed, num_tasks=3, num_support=4, num_query=5, dim=1):
    """A meta-batch of random sinusoid-like regression tasks, Task of [M, N, dim] / [M, N, 1]."""
    rng = np.random.default_rng(seed)
    amp = rng.uniform(0.5, 2.0, (num_tasks, 1, 1))
    phase = rng.uniform(0.0, 3.0, (num_tasks, 1, 1))

    def make(n):
        x = rng.uniform(-2.0, 2.0, (num_tasks, n, dim))
        y = amp * np.sin(x[..., :1] + phase) + 0.1 * rng.normal(size=(num_tasks, n, 1))
        return jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)

    return mb.Task(make(num_support), make(num_query))


def classification_batch(seed, num_tasks=2, ways=3, shots=2, queries=2, dim=4):
    """A meta-batch of random Gaussian-blob classification tasks: inputs [M, N, dim], labels [M, N]."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_tasks, ways, dim))

    def make(per_class):
        labels = np.tile(np.repeat(np.arange(ways), per_class), (num_tasks, 1))
        x = np.take_along_axis(centres, labels[..., None], axis=1)
        return jnp.asarray(x + 0.5 * rng.normal(size=x.shape), jnp.float64), jnp.asarray(labels)

    return mb.Task(make(shots), make(queries))


def task_slice(batch, i):
    return jax.tree_util.tree_map(lambda a: a[i], batch)


TINY_HYPERPRIOR = mb.Hyperprior(s0=1.0, a0=2.0, b0=0.3)


def tiny_learner(theta_family="point", **overrides):
    """The small ABML learner most meta-level tests share (one compile per distinct config):
    a 1-3-1 tanh MLP, Gaussian likelihood, K = 2 inner steps, 2 inner and 2 outer samples,
    β = 0.8 (≠ 1, so a dropped β shows), Meta-SGD step scales in ψ, and q(θ) scale e^-25 for
    the Gaussian family."""
    options = dict(likelihood=mb.Gaussian(0.5), inner_lr=0.05, inner_steps=2, inner_samples=2,
                   outer_samples=2, num_tasks=7, hyperprior=TINY_HYPERPRIOR, init_log_sigma=-1.0,
                   kl_weight=0.8, meta_sgd=True, init_theta_log_scale=-25.0,
                   theta_family=theta_family)
    options.update(overrides)
    model = options.pop("model", mb.MLP(hidden=(3,), activation="tanh"))
    return mb.abml(model, **options)


def tiny_batch(seed=0):
    """Two regression tasks with 3 support and 3 query points (float64 under x64)."""
    return regression_batch(seed, num_tasks=2, num_support=3, num_query=3)


@functools.partial(fast_jit, static_argnums=0)
def loss_and_grad(learner, params, batch, key):
    """jit(value_and_grad(learner.loss)), cached per (learner, shapes): shared across tests."""
    return jax.value_and_grad(learner.loss, has_aux=True)(params, batch, key)


def sinusoid_step_reference(meta_batch):
    """The sharding tests' reference: a small ABML sine learner (MLP 1-16-16-1, K = 3), a
    meta-batch of ``meta_batch`` sine tasks, the initial state, a key, and the (state, metrics)
    of one train step computed on one device."""
    import optax
    from metabayes.data.sinusoid import SinusoidTasks
    learner = mb.abml(mb.MLP(hidden=(16, 16)), likelihood=mb.Gaussian(0.1), inner_lr=2e-5,
                      inner_steps=3, outer_optimizer=optax.adam(1e-3), num_tasks=100)
    key = jax.random.PRNGKey(0)
    batch = SinusoidTasks().sample(key, meta_batch)[0]
    state = learner.init(key, batch.support[0][0])
    return learner, batch, state, key, learner.train_step(state, batch, key)


def capture_gradient() -> optax.GradientTransformation:
    """An "optimiser" whose state after a step is the step's gradient and whose update is 0,
    so the state ``train_step`` returns holds exactly the gradient the step computed."""
    zeros = lambda tree: jax.tree_util.tree_map(jnp.zeros_like, tree)
    return optax.GradientTransformation(zeros, lambda grads, state, params=None: (zeros(grads),
                                                                                    grads))


def train_step_loss_and_gradient(learner, state, batch, key):
    """(loss, gradient leaves) as float64 numpy, from one ``learner.train_step`` of a learner
    whose outer optimiser is ``capture_gradient()``."""
    new_state, metrics = learner.train_step(state, batch, key)
    # A non-finite step keeps the old state (a zero "gradient" here), so it must fail itself.
    assert bool(metrics["finite"]), f"non-finite loss or gradient: {metrics}"
    return (np.float64(metrics["loss"]),
            [np.asarray(g, np.float64) for g in jax.tree_util.tree_leaves(new_state.opt_state)])


def two_task_batch(model_name, dtype=np.float32):
    """Two small tasks as numpy (floats ``dtype``, labels int32): for "mlp" sinusoid-like
    regression with 4 support and 4 query points, else 3-way 1-shot with 1 query per class on
    28×28×1 Gaussian-blob "images" (the helpers build float64, so under x64)."""
    with jax.enable_x64():
        if model_name == "mlp":
            batch = regression_batch(0, num_tasks=2, num_support=4, num_query=4)
        else:
            batch = classification_batch(0, num_tasks=2, ways=3, shots=1, queries=1, dim=28 * 28)
            batch = jax.tree_util.tree_map(
                lambda a: a.reshape(a.shape[:2] + (28, 28, 1)) if a.ndim == 3 else a, batch)
    return jax.tree_util.tree_map(
        lambda a: np.asarray(a, dtype) if np.issubdtype(a.dtype, np.floating)
        else np.asarray(a, np.int32), batch)
