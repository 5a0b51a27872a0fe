"""The Monte-Carlo estimators of MATH.md §3 (weights, local reparameterisation, Flipout) are
unbiased, checked as §6.2; and the layers they live in compute the ordinary functions."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metabayes as mb
from metabayes import layers
from helpers import fast_jit, linear_gaussian_ell, mc_batches, random_posterior, to_np

pytestmark = pytest.mark.usefixtures("x64")

NOISE = 0.7
ESTIMATORS = ["weights", "local_reparam", "flipout"]
DENSE = layers.Dense(2)


class SmallConvNet(nn.Module):
    """Conv3x3(2) → tanh → 2×2 max-pool → Dense(3): no batch norm, for 6×6×1 inputs."""

    @nn.compact
    def __call__(self, x):
        x = layers.max_pool_2x2(jnp.tanh(layers.Conv3x3(2)(x)))
        return layers.Dense(3)(x.reshape(x.shape[0], -1))


CONV = SmallConvNet()


def dense_problem():
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.normal(size=(40, 3))), jnp.asarray(rng.normal(size=(40, 2)))
    params = DENSE.init(jax.random.PRNGKey(0), x)["params"]
    return x, y, random_posterior(1, params, log_sigma_mean=-0.5)


@fast_jit
def _dense_ell_and_grad(q, data, key, estimator_index):
    def ell(q):
        return jax.lax.switch(estimator_index, [
            lambda e=e: mb.expected_log_likelihood(DENSE.apply, q, data, key, 2000,
                                               likelihood=mb.Gaussian(NOISE), estimator=e)
            for e in ESTIMATORS])
    return jax.value_and_grad(ell)(q)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_dense_estimators_unbiased_with_unbiased_gradients(estimator):
    """For a linear Dense layer and Gaussian likelihood, every estimator's mean over seeds →
    the closed-form E_q[log p(D|φ)], and its gradient w.r.t. (mean, log σ) → the closed form."""
    x, y, q = dense_problem()
    index = ESTIMATORS.index(estimator)
    mean, se = mc_batches(lambda k: _dense_ell_and_grad(q, (x, y), k, index), jax.random.PRNGKey(2))
    m, s = to_np(q.mean), to_np(q.std)
    value, d_kernel, d_bias, d_log_kernel_std, d_log_bias_std = linear_gaussian_ell(
        x, y, m["kernel"], m["bias"], s["kernel"], s["bias"], NOISE)
    (value_mean, grad_mean), (value_se, grad_se) = mean, se
    assert abs(value_mean - value) < 5 * value_se
    for got, err, want in [
            (grad_mean.mean["kernel"], grad_se.mean["kernel"], d_kernel),
            (grad_mean.mean["bias"], grad_se.mean["bias"], d_bias),
            (grad_mean.log_sigma["kernel"], grad_se.log_sigma["kernel"], d_log_kernel_std),
            (grad_mean.log_sigma["bias"], grad_se.log_sigma["bias"], d_log_bias_std)]:
        assert np.all(np.abs(got - want) < 5 * err + 1e-12), (estimator, got, want, err)


def test_local_reparameterisation_reduces_variance():
    """Local reparameterisation samples each example's pre-activation independently, so its
    spread over seeds is well below that of sampling one weight matrix for all 40 examples."""
    x, y, q = dense_problem()
    spread = {e: mc_batches(lambda k: _dense_ell_and_grad(q, (x, y), k, ESTIMATORS.index(e)),
                            jax.random.PRNGKey(3))[1][0] for e in ("weights", "local_reparam")}
    assert spread["local_reparam"] < 0.7 * spread["weights"], spread


def conv_problem():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(4, 6, 6, 1)))
    labels = jnp.asarray([0, 1, 2, 1])
    params = CONV.init(jax.random.PRNGKey(0), x)["params"]
    return x, labels, random_posterior(6, params, log_sigma_mean=-0.7)


@fast_jit
def _conv_ell(q, data, key):
    return jnp.stack([mb.expected_log_likelihood(CONV.apply, q, data, key, 200,
                                                 likelihood=mb.Categorical(), estimator=e)
                      for e in ("weights", "flipout")])


def test_conv_net_estimators_agree_in_mean():
    """Conv3x3 → pool → Dense with categorical likelihood: Flipout agrees in mean with sampling
    the weights, within Monte-Carlo error; both differ from the point-mass value."""
    x, labels, q = conv_problem()
    mean, se = mc_batches(lambda k: _conv_ell(q, (x, labels), k), jax.random.PRNGKey(7))
    assert abs(mean[1] - mean[0]) < 5 * np.hypot(se[1], se[0]), (mean, se)
    at_mean = float(mb.expected_log_likelihood(CONV.apply, mb.MeanFieldGaussian(q.mean), (x, labels),
                                               jax.random.PRNGKey(0), likelihood=mb.Categorical()))
    assert abs(mean[0] - at_mean) > 10 * se[0]


@pytest.mark.parametrize("implementation", layers.CONVOLUTIONS)
def test_conv3x3_equals_lax_conv_same(implementation):
    """layers.Conv3x3 with plain params == lax.conv_general_dilated, SAME padding, HWIO kernel."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 5, 7, 3)))
    conv = layers.Conv3x3(4, implementation=implementation)
    params = conv.init(jax.random.PRNGKey(0), x)["params"]
    params = {"kernel": params["kernel"], "bias": jnp.asarray(rng.normal(size=4))}
    expected = jax.lax.conv_general_dilated(x, params["kernel"], (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")) + params["bias"]
    np.testing.assert_allclose(np.asarray(conv.apply({"params": params}, x)), np.asarray(expected),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 6, 6, 3), (1, 7, 5, 2)])
def test_max_pool_equals_flax_max_pool_valid(shape):
    """layers.max_pool_2x2 == flax.linen.max_pool(2×2, stride 2, VALID), odd sizes floored."""
    x = jnp.asarray(np.random.default_rng(3).normal(size=shape))
    np.testing.assert_array_equal(np.asarray(layers.max_pool_2x2(x)),
                                  np.asarray(nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")))


@pytest.mark.parametrize("layer, shape", [(DENSE, (2, 3)), (layers.BatchNorm(), (2, 4, 4, 3))])
def test_layer_estimator_without_rng_stream_raises(layer, shape):
    """Params with a posterior σ but no estimator PRNG stream is an error, not silent sampling."""
    x = jnp.ones(shape)
    params = layer.init(jax.random.PRNGKey(0), x)["params"]
    std = jax.tree_util.tree_map(jnp.ones_like, params)
    with pytest.raises(ValueError, match="posterior_std"):
        layer.apply({"params": params, "posterior_std": std}, x)


@pytest.mark.parametrize("implementation", layers.CONVOLUTIONS)
def test_conv3x3_flipout_moments(implementation):
    """Flipout through Conv3x3, either implementation: every output's mean over draws is the
    plain conv's, and its variance is Σ_patch x² σ²_kernel + σ²_bias, the exact moments under
    φ ~ q (that variance is the conv of x² with kernel σ² and bias σ²_bias)."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 4, 4, 2)))
    conv = layers.Conv3x3(3, implementation=implementation)
    params = conv.init(jax.random.PRNGKey(0), x)["params"]
    std = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.uniform(0.2, 0.6, p.shape)), params)
    draws = 20_000
    # One draw after another: vmapped, "xla" would be one grouped convolution of 20,000 kernels,
    # which XLA:CPU's own convolution kernels (metabayes's default) take minutes over.
    draw = lambda k: conv.apply({"params": params, "posterior_std": std}, x, rngs={"flipout": k})
    samples = fast_jit(lambda keys: jax.lax.map(draw, keys))(
        jax.random.split(jax.random.PRNGKey(1), draws))
    mean = conv.apply({"params": params}, x)
    variance = conv.apply({"params": jax.tree_util.tree_map(jnp.square, std)}, x * x)
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), 5 * np.sqrt(variance / draws))
    np.testing.assert_array_less(np.abs(samples.var(0) / variance - 1), 5 * np.sqrt(2 / draws))


@pytest.mark.parametrize("implementation", ["direct", "xla", "auto"])
def test_conv4_implementations_agree_to_second_order(implementation):
    """Conv4 with each convolution == Conv4(conv="im2col") in float64: the same logits, the same
    parameter gradients, and the same second-order meta-gradient (the gradient of a loss after
    one inner gradient step, as MAML differentiates it)."""
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 28, 28, 1)))
    models = [mb.Conv4(num_classes=5, filters=4, conv=c) for c in ("im2col", implementation)]
    params = models[0].init(jax.random.PRNGKey(0), x)["params"]
    loss = lambda model: lambda p: jnp.sum(jnp.sin(model.apply({"params": p}, x)))

    def meta_gradient(model):
        def after_one_step(p):
            inner = jax.grad(loss(model))(p)
            adapted = jax.tree_util.tree_map(lambda a, g: a - 0.1 * g, p, inner)
            return jnp.sum(jnp.square(model.apply({"params": adapted}, 1.1 * x)))
        return jax.jit(jax.grad(after_one_step))(params)

    (value_a, grad_a), (value_b, grad_b) = (jax.jit(jax.value_and_grad(loss(m)))(params)
                                            for m in models)
    np.testing.assert_allclose(value_a, value_b, rtol=1e-10)
    pairs = (list(zip(jax.tree_util.tree_leaves(grad_a), jax.tree_util.tree_leaves(grad_b)))
             + list(zip(*(jax.tree_util.tree_leaves(meta_gradient(m)) for m in models))))
    for a, b in pairs:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="conv implementation"):
        mb.Conv4(num_classes=5, conv="cudnn").init(jax.random.PRNGKey(0), x)
