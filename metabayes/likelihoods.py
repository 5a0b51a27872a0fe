"""Likelihoods p(y | x, φ) and posterior predictives (MATH.md §1 and §5).

``log_prob`` is a **sum over examples**: the true ELBO's likelihood term. ``predictive`` turns
network outputs from T posterior samples, shaped [T, N, ...], into the Monte-Carlo posterior
predictive (1/T) Σ_t p(y | x, φ_t).
"""
from typing import Dict, NamedTuple, Union

import flax.struct
import jax
import jax.numpy as jnp
import optax


class GaussianPredictive(NamedTuple):
    """Moments of an equal-weight Gaussian mixture; ``component_means`` is [T, N, D]."""

    mean: jax.Array
    std: jax.Array
    component_means: jax.Array
    noise_std: float

    def log_prob(self, targets: jax.Array) -> jax.Array:
        """log (1/T) Σ_t N(y; f_t, s²) per example, summed over output dimensions: [N]."""
        log_probs = jax.vmap(lambda f: _gaussian_log_prob(f, targets, self.noise_std))(
            self.component_means)
        return jax.nn.logsumexp(log_probs, axis=0) - jnp.log(self.component_means.shape[0])


def _gaussian_log_prob(outputs, targets, noise_std):
    """log N(targets; outputs, noise_std²) per example: [N]."""
    z = (targets - outputs) / noise_std
    per_dim = -0.5 * z ** 2 - jnp.log(noise_std) - 0.5 * jnp.log(2 * jnp.pi)
    return jnp.sum(per_dim.reshape(per_dim.shape[0], -1), axis=-1)


@flax.struct.dataclass
class Categorical:
    """y ~ Categorical(softmax(logits)); targets are integer labels [N]."""

    def log_prob(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        """Σ_n log p(y_n | x_n, φ) for logits [N, C] and labels [N]."""
        return -jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    def sample(self, key: jax.Array, logits: jax.Array) -> jax.Array:
        """Labels y ~ p(y | x, φ): [N]."""
        return jax.random.categorical(key, logits)

    def predictive(self, logits: jax.Array) -> jax.Array:
        """Class probabilities averaged over samples (not logits): [T, N, C] -> [N, C]."""
        return jnp.mean(jax.nn.softmax(logits, axis=-1), axis=0)

    def fit_metrics(self, logits: jax.Array, labels: jax.Array) -> Dict[str, jax.Array]:
        """For logits [T, N, C] and labels [N]: "accuracy" of the predictive's most probable
        class, and "nll_over_chance", the mean NLL per example over log C (1: a uniform guess)."""
        logits = jax.lax.stop_gradient(logits)
        predicted = jnp.argmax(self.predictive(logits), axis=-1)
        nll = -jnp.mean(jax.vmap(lambda out: self.log_prob(out, labels))(logits)) / labels.size
        return {"accuracy": jnp.mean(predicted == labels),
                "nll_over_chance": nll / jnp.log(logits.shape[-1])}


@flax.struct.dataclass
class Gaussian:
    """y ~ N(f(x; φ), noise_std²) with known noise; targets shaped like the outputs [N, D]."""

    noise_std: float = flax.struct.field(pytree_node=False, default=1.0)

    def log_prob(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        """Σ_n log N(y_n; f(x_n; φ), noise_std²)."""
        return jnp.sum(_gaussian_log_prob(outputs, targets, self.noise_std))

    def sample(self, key: jax.Array, outputs: jax.Array) -> jax.Array:
        """Targets y ~ N(f(x; φ), noise_std²), shaped like the outputs."""
        return outputs + self.noise_std * jax.random.normal(key, outputs.shape, outputs.dtype)

    def fit_metrics(self, outputs: jax.Array, targets: jax.Array) -> Dict[str, jax.Array]:
        """{"squared_error"}: the predictive mean's mean squared error, for outputs [T, N, D]."""
        mean = jnp.mean(jax.lax.stop_gradient(outputs), axis=0)
        return {"squared_error": jnp.mean((mean - targets) ** 2)}

    def predictive(self, outputs: jax.Array) -> GaussianPredictive:
        """The mixture (1/T) Σ_t N(f_t, s²) for outputs [T, N, D]: mean, std, components."""
        mean = jnp.mean(outputs, axis=0)
        variance = jnp.var(outputs, axis=0) + self.noise_std ** 2
        return GaussianPredictive(mean, jnp.sqrt(variance), outputs, self.noise_std)


Likelihood = Union[Categorical, Gaussian]
