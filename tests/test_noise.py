"""metabayes.noise.standard_normal: the same ε as jax.random.normal, stored once on CPU."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metabayes.noise import NOISE_VARIABLE, standard_normal
from metabayes.posterior import MeanFieldGaussian


@pytest.mark.parametrize("make_key", [jax.random.PRNGKey, jax.random.key], ids=["raw", "typed"])
def test_standard_normal_equals_jax_random_normal(make_key):
    """Bit for bit, eagerly, jitted, vmapped over keys and with the key's first word at the
    top of uint32 (where first + 1 wraps to 0): a loop that ran no trip would give zeros."""
    keys = jax.vmap(make_key)(jnp.arange(4))
    shape = (3, 7)
    expected = jax.vmap(lambda k: jax.random.normal(k, shape))(keys)
    np.testing.assert_array_equal(standard_normal(keys[0], shape), expected[0])
    np.testing.assert_array_equal(jax.jit(standard_normal, static_argnums=1)(keys[1], shape),
                                  expected[1])
    np.testing.assert_array_equal(jax.jit(jax.vmap(lambda k: standard_normal(k, shape)))(keys),
                                  expected)
    top = jnp.array([2 ** 32 - 1, 5], jnp.uint32)
    top = top if make_key is jax.random.PRNGKey else jax.random.wrap_key_data(top)
    np.testing.assert_array_equal(standard_normal(top, shape), jax.random.normal(top, shape))


def test_sample_gradients_are_the_reparameterised_ones():
    """∂/∂μ and ∂/∂log σ of Σ sample² through the loop: 2φ and 2φ σ ε."""
    key = jax.random.PRNGKey(3)
    q = MeanFieldGaussian({"w": jnp.linspace(-1.0, 1.0, 6)}, {"w": jnp.full(6, -0.5)})
    grads = jax.jit(jax.grad(lambda q: jnp.sum(q.sample(key)["w"] ** 2)))(q)
    eps = jax.random.normal(key, (6,))
    phi = q.mean["w"] + jnp.exp(q.log_sigma["w"]) * eps
    np.testing.assert_allclose(grads.mean["w"], 2 * phi, rtol=1e-6)
    np.testing.assert_allclose(grads.log_sigma["w"], 2 * phi * jnp.exp(-0.5) * eps, rtol=1e-6)


def erf_inv_copies(function, *args) -> int:
    """How often erf_inv (instruction names and their source metadata) appears in the HLO of
    the compiled ``function``."""
    return jax.jit(function).lower(*args).compile().as_text().count("erf_inv")


def test_cpu_noise_is_computed_once(monkeypatch):
    """Three reductions read ε: drawn directly, XLA:CPU copies the erf⁻¹ polynomial into each of
    them; drawn by standard_normal, it appears once. Fails if XLA learns to fold the loop."""
    if jax.default_backend() != "cpu":
        pytest.skip("the loop is drawn on CPU only")

    def readers(draw):
        def function(key, mu, s):
            eps = draw(key, (1000,))
            a, b = eps[:500], eps[500:]
            return (jnp.sum(mu[:500] + s[:500] * a) * jnp.sum(jnp.sin(b)), jnp.sum(a * 3),
                    jnp.max(b * jnp.cos(mu[500:])))
        return function

    args = (jax.random.PRNGKey(0), jnp.ones(1000), jnp.ones(1000))
    once = erf_inv_copies(readers(standard_normal), *args)
    direct = erf_inv_copies(readers(jax.random.normal), *args)
    monkeypatch.setenv(NOISE_VARIABLE, "fused")
    switched_off = erf_inv_copies(readers(standard_normal), *args)
    assert 0 < once * 2 < direct, (once, direct)
    assert switched_off == direct


def test_noise_form_variable_is_checked(monkeypatch):
    monkeypatch.setenv(NOISE_VARIABLE, "stored")
    np.testing.assert_array_equal(standard_normal(jax.random.PRNGKey(1), (5,)),
                                  jax.random.normal(jax.random.PRNGKey(1), (5,)))
    monkeypatch.setenv(NOISE_VARIABLE, "fast")
    with pytest.raises(ValueError, match=r"environment variable `METABAYES_NOISE` must be one of"):
        standard_normal(jax.random.PRNGKey(1), (5,))
