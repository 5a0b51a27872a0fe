"""The sinusoid task family's Bayes-optimal predictive (the yardstick for ABML's band)."""
import jax
import jax.numpy as jnp
import numpy as np

from metabayes.data.sinusoid import SinusoidTasks, sine

X = np.linspace(-5.0, 5.0, 11, dtype=np.float32)


def test_exact_predictive_without_data_is_the_prior_predictive():
    """K = 0: mean E[A]·E[sin(x − φ)] = 2.55·(−2 cos x / π), variance E[A²]/2 − mean² + s²."""
    empty = (jnp.zeros((0, 1)), jnp.zeros((0, 1)))
    mean, sd = SinusoidTasks().exact_predictive(empty, jnp.asarray(X), 0.1, grid=512)
    expected_mean = 2.55 * (-2 * np.cos(X) / np.pi)
    second_moment = (5.0 ** 3 - 0.1 ** 3) / (3 * 4.9) / 2
    np.testing.assert_allclose(mean, expected_mean, atol=1e-3)
    np.testing.assert_allclose(sd, np.sqrt(second_moment - expected_mean ** 2 + 0.01), rtol=1e-3)


def test_exact_predictive_concentrates_on_the_true_sine():
    """Many exact observations: mean → the task's sine, sd → the noise alone."""
    tasks = SinusoidTasks(support=40)
    task, amplitude, phase = tasks.sample(jax.random.PRNGKey(0), 1)
    support = jax.tree_util.tree_map(lambda a: a[0], task.support)
    mean, sd = tasks.exact_predictive(support, jnp.asarray(X), 0.1)
    np.testing.assert_allclose(mean, sine(X, amplitude[0], phase[0]), atol=0.05)
    np.testing.assert_allclose(sd, 0.1, atol=0.01)
