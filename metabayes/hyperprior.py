"""The hyperprior p(θ) of MATH.md §1: μ_w ~ N(0, s0²), τ_w = σ_w⁻² ~ Gamma(a0, b0).

θ is stored as (μ, log σ), so densities here are densities of (μ, log σ): the Gamma density of
τ = exp(−2 log σ) times the Jacobian |dτ / d log σ| = 2τ. This is what makes the KL of a
Gaussian q(θ) over (μ, log σ) a true KL, and its point-mass limit the MAP penalty −log p(ψ)
in the coordinates that are optimised (MATH.md §2).
"""
import math

import distrax
import flax.struct
import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from metabayes.config_checks import check_option, positive
from metabayes.posterior import MeanFieldGaussian, tree_sum


@flax.struct.dataclass
class Hyperprior:
    """p(θ) = Π_w N(μ_w; 0, s0²) · Gamma(σ_w⁻²; a0, b0) (rate b0); the paper's family."""

    s0: float = flax.struct.field(pytree_node=False, default=1.0)
    a0: float = flax.struct.field(pytree_node=False, default=1.0)
    b0: float = flax.struct.field(pytree_node=False, default=0.01)

    def __post_init__(self):
        for name in ("s0", "a0", "b0"):
            check_option(name, getattr(self, name), positive(), owner="hyperprior")

    def log_prob_mean(self, mu: jax.Array) -> jax.Array:
        """log N(μ; 0, s0²), elementwise."""
        return distrax.Normal(0.0, self.s0).log_prob(mu)

    def log_prob_log_sigma(self, log_sigma: jax.Array) -> jax.Array:
        """log Gamma(τ; a0, b0) + log 2τ with τ = exp(−2 log σ), elementwise."""
        log_tau = -2.0 * log_sigma
        return distrax.Gamma(self.a0, self.b0).log_prob(jnp.exp(log_tau)) + math.log(2.0) + log_tau

    def log_prob(self, theta: MeanFieldGaussian) -> jax.Array:
        """log p(θ) for θ = (μ, log σ) pytrees, summed over every weight."""
        return (tree_sum(jax.tree_util.tree_map(self.log_prob_mean, theta.mean))
                + tree_sum(jax.tree_util.tree_map(self.log_prob_log_sigma, theta.log_sigma)))

    def expected_log_prob_log_sigma(self, m: jax.Array, s: jax.Array) -> jax.Array:
        """E_{l ~ N(m, s²)}[log p(l)] in closed form, elementwise.

        log p(l) = a0 log b0 − lgamma(a0) + log 2 − 2 a0 l − b0 e^{−2l} and
        E[e^{−2l}] = e^{−2m + 2s²}.
        """
        a0, b0 = self.a0, self.b0
        return (a0 * math.log(b0) - gammaln(a0) + math.log(2.0) - 2.0 * a0 * m
                - b0 * jnp.exp(-2.0 * m + 2.0 * s ** 2))
