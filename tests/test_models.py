"""Networks and predictives: Conv4's shape and size, φ's structure, and the §5 predictives."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

import metabayes as mb
from metabayes import layers
from helpers import assert_trees_close, fast_jit, flat_np, task_slice, tiny_batch, tiny_learner

pytestmark = pytest.mark.usefixtures("x64")


def test_conv4_parameter_count_and_structure():
    """Conv4(filters=64, 5 classes): 4 × (conv3x3 + batch norm) blocks and a linear head,
    112,261 parameters — the standard few-shot Omniglot Conv4 count."""
    model = mb.Conv4(num_classes=5)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)))["params"]
    assert sorted(shapes) == ([f"BatchNorm_{i}" for i in range(4)] + [f"Conv3x3_{i}" for i in range(4)]
                              + ["Dense_0"])
    assert shapes["Conv3x3_0"]["kernel"].shape == (3, 3, 1, 64)
    assert all(shapes[f"Conv3x3_{i}"]["kernel"].shape == (3, 3, 64, 64) for i in (1, 2, 3))
    assert all(shapes[f"BatchNorm_{i}"]["scale"].shape == (64,) for i in range(4))
    assert shapes["Dense_0"]["kernel"].shape == (64, 5)
    count = sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes))
    assert count == (9 * 64 + 64) + 3 * (9 * 64 * 64 + 64) + 4 * 2 * 64 + (64 * 5 + 5) == 112_261


def test_conv4_forward_shapes_under_every_estimator():
    """[B, 28, 28, 1] → finite logits [B, num_classes]; the same shape under each estimator."""
    model = mb.Conv4(num_classes=5, filters=4)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 28, 28, 1)))
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(1), x)["params"]   # no eager init
    params = jax.tree_util.tree_map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape)), shapes)
    logits = fast_jit(model.apply)({"params": params}, x)
    assert logits.shape == (3, 5) and bool(jnp.all(jnp.isfinite(logits)))
    q = mb.MeanFieldGaussian.from_params(params, -2.0)
    for estimator in ("weights", "local_reparam", "flipout"):
        out = jax.eval_shape(lambda k: mb.sample_outputs(model.apply, q, x, k, estimator),
                             jax.random.PRNGKey(2))
        assert out.shape == (3, 5) and out.dtype == logits.dtype


def test_batch_norm_uses_batch_statistics():
    """layers.BatchNorm == (x − mean_batch) / sqrt(var_batch + ε) · scale + bias, per channel."""
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 3, 2)) * 3.0 + 1.0
    scale, bias = jnp.array([0.5, 2.0]), jnp.array([-1.0, 0.3])
    got = layers.BatchNorm().apply({"params": {"scale": scale, "bias": bias}}, x)
    xn = np.asarray(x)
    mean, var = xn.mean(axis=(0, 1, 2)), xn.var(axis=(0, 1, 2))
    np.testing.assert_allclose(np.asarray(got), (xn - mean) / np.sqrt(var + 1e-5) * scale + bias,
                               rtol=1e-12, atol=1e-12)


def test_params_structure_is_q_phi_structure():
    """model.init's parameter pytree is exactly the structure (and shapes) of q(φ)'s mean and
    log σ, of θ in ψ, and of the adapted λ (§1: one Normal per network weight)."""
    learner = tiny_learner("point")
    batch = tiny_batch()
    x = batch.support[0][0]
    params = learner.model.init(jax.random.PRNGKey(0), x)["params"]
    psi = learner.init_params(jax.random.PRNGKey(0), x)
    shapes = lambda tree: jax.tree_util.tree_map(jnp.shape, tree)
    assert_trees_close(psi.q_theta.mean.mean, params, rtol=0, atol=0)
    assert shapes(psi.q_theta.mean.log_sigma) == shapes(params)
    assert np.all(flat_np(psi.q_theta.mean.log_sigma) == learner.init_log_sigma)
    support = task_slice(batch, 0).support
    local = jax.eval_shape(lambda k: learner.adapt(psi, psi.q_theta.mean, support, k),
                           jax.random.PRNGKey(1))
    assert jax.tree_util.tree_structure(local.mean) == jax.tree_util.tree_structure(params)
    assert shapes(local.mean) == shapes(params) == shapes(local.log_sigma)


def test_categorical_predictive_averages_probabilities():
    """(1/T) Σ_t softmax(f_t), not softmax((1/T) Σ_t f_t) (§5)."""
    logits = jnp.array([[[4.0, 0.0]], [[0.0, 0.0]]])   # T=2, N=1, C=2
    got = np.asarray(mb.Categorical().predictive(logits))
    expected = np.mean(special.softmax(np.asarray(logits), axis=-1), axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-12)
    wrong = special.softmax(np.asarray(logits).mean(0), axis=-1)
    assert not np.allclose(got, wrong, atol=0.1)   # [0.741, 0.259] vs [0.881, 0.119]


def gaussian_predictive():
    outputs = jax.random.normal(jax.random.PRNGKey(0), (5, 4, 2)) * 1.5   # T=5, N=4, D=2
    return mb.Gaussian(noise_std=0.4).predictive(outputs), np.asarray(outputs)


def test_gaussian_predictive_mixture_moments():
    """Mixture (1/T) Σ_t N(f_t, s²): mean = mean_t f_t, var = mean_t f_t² − mean² + s² (§5)."""
    pred, f = gaussian_predictive()
    np.testing.assert_allclose(np.asarray(pred.mean), f.mean(0), rtol=1e-12)
    var = (f ** 2).mean(0) - f.mean(0) ** 2 + 0.4 ** 2
    np.testing.assert_allclose(np.asarray(pred.std), np.sqrt(var), rtol=1e-12)


def test_gaussian_predictive_log_prob():
    """log (1/T) Σ_t Π_d N(y_d; f_td, s²) per example, vs scipy logsumexp; and for D = 1 the
    density integrates to 1 with the reported mean and variance (quadrature)."""
    pred, f = gaussian_predictive()
    y = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (4, 2)))
    per_component = stats.norm.logpdf(y[None], f, 0.4).sum(-1)                 # [T, N]
    expected = special.logsumexp(per_component, axis=0) - math.log(f.shape[0])
    np.testing.assert_allclose(np.asarray(pred.log_prob(jnp.asarray(y))), expected, rtol=1e-12)

    one = mb.Gaussian(noise_std=0.4).predictive(jnp.asarray(f[:, :1, :1]))   # N = 1, D = 1
    log_density = fast_jit(lambda v: one.log_prob(jnp.full((1, 1), v))[0])
    density = lambda v: math.exp(float(log_density(v)))
    mass = integrate.quad(density, -20, 20, points=list(f[:, 0, 0]))[0]
    mean = integrate.quad(lambda v: v * density(v), -20, 20, points=list(f[:, 0, 0]))[0]
    second = integrate.quad(lambda v: v * v * density(v), -20, 20, points=list(f[:, 0, 0]))[0]
    np.testing.assert_allclose(mass, 1.0, rtol=1e-8)
    np.testing.assert_allclose(mean, float(one.mean[0, 0]), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(math.sqrt(second - mean ** 2), float(one.std[0, 0]), rtol=1e-7)


@pytest.mark.usefixtures("x64")
def test_jit_gradient_of_sampled_conv_net():
    """The jitted gradient of the ELL of a 3-block Conv4 with weights sampled inside jit equals
    the eager one and a central finite difference (XLA:CPU's fusion emitters got it wrong; see
    metabayes/__init__.py)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 28, 28, 1), jnp.float64)
    data, key = (x, jnp.arange(5)), jax.random.PRNGKey(1)
    model = mb.Conv4(num_classes=5, filters=4, blocks=3)
    q = mb.MeanFieldGaussian.from_params(model.init(jax.random.PRNGKey(2), x)["params"], -1.0)
    ell = lambda q: mb.expected_log_likelihood(model.apply, q, data, key)
    jitted, eager = jax.jit(jax.grad(ell))(q), jax.grad(ell)(q)
    assert_trees_close(jitted, eager, rtol=1e-8, atol=1e-10)

    def bumped(step):
        kernel = q.mean["Conv3x3_2"]["kernel"].at[0, 0, 0, 0].add(step)
        return q.replace(mean={**q.mean, "Conv3x3_2": {**q.mean["Conv3x3_2"], "kernel": kernel}})
    finite_difference = (ell(bumped(1e-6)) - ell(bumped(-1e-6))) / 2e-6
    np.testing.assert_allclose(jitted.mean["Conv3x3_2"]["kernel"][0, 0, 0, 0], finite_difference,
                               rtol=1e-5)
