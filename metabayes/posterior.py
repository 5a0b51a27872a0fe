"""Mean-field Gaussian distributions over parameter pytrees (MATH.md §1-2).

One class serves three roles:
- the local posterior q(φ_i; λ_i) and the prior p(φ_i | θ): per-weight Normals whose mean and
  log σ are pytrees shaped like the network's params;
- the point estimate q(θ) = δ(θ − ψ) and MAML's deterministic weights: ``log_sigma=None``
  (σ = 0, ``sample`` returns the mean);
- the Gaussian q(θ; ψ): a MeanFieldGaussian whose ``mean`` and ``log_sigma`` are themselves
  MeanFieldGaussians (θ = (μ, log σ) is a pytree like any other).
"""
from typing import Any, Optional

import distrax
import flax.struct
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from metabayes.noise import standard_normal

PyTree = Any


def tree_sum(tree: PyTree) -> jax.Array:
    """Sum of every element of every leaf."""
    return sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(tree))


@flax.struct.dataclass
class MeanFieldGaussian:
    """Π_w N(w; mean_w, exp(log_sigma_w)²) over a pytree; ``log_sigma=None`` means σ = 0."""

    mean: PyTree
    log_sigma: Optional[PyTree] = None

    @classmethod
    def from_params(cls, params: PyTree, log_sigma: Optional[float]) -> "MeanFieldGaussian":
        """Mean ``params`` and a constant log σ on every weight (None: a point mass)."""
        if log_sigma is None:
            return cls(params, None)
        return cls(params, jax.tree_util.tree_map(lambda p: jnp.full_like(p, log_sigma), params))

    @property
    def is_point_mass(self) -> bool:
        return self.log_sigma is None

    @property
    def std(self) -> PyTree:
        """σ as a pytree (zeros for a point mass)."""
        if self.is_point_mass:
            return jax.tree_util.tree_map(jnp.zeros_like, self.mean)
        return jax.tree_util.tree_map(jnp.exp, self.log_sigma)

    def distributions(self) -> PyTree:
        """The per-leaf ``distrax.Normal`` distributions (not for point masses)."""
        if self.is_point_mass:
            raise ValueError("a point mass (log_sigma=None) has no Normal density")
        return jax.tree_util.tree_map(distrax.Normal, self.mean, self.std)

    def sample(self, key: jax.Array) -> PyTree:
        """Reparameterised sample mean + σ ⊙ ε, ε ~ N(0, I); the mean for a point mass."""
        if self.is_point_mass:
            return self.mean
        flat_mean, unravel = ravel_pytree(self.mean)
        noise = unravel(standard_normal(key, flat_mean.shape, flat_mean.dtype))
        return jax.tree_util.tree_map(lambda m, s, e: m + s * e, self.mean, self.std, noise)

    def log_prob(self, value: PyTree) -> jax.Array:
        """log q(value), summed over every weight."""
        return tree_sum(jax.tree_util.tree_map(
            lambda d, v: d.log_prob(v), self.distributions(), value,
            is_leaf=lambda x: isinstance(x, distrax.Distribution)))

    def entropy(self) -> jax.Array:
        """Differential entropy, summed over every weight."""
        return tree_sum(jax.tree_util.tree_map(
            lambda d: d.entropy(), self.distributions(),
            is_leaf=lambda x: isinstance(x, distrax.Distribution)))

    def kl_divergence(self, other: "MeanFieldGaussian") -> jax.Array:
        """KL(self || other) in closed form, summed over every weight."""
        return tree_sum(jax.tree_util.tree_map(
            lambda p, q: p.kl_divergence(q), self.distributions(), other.distributions(),
            is_leaf=lambda x: isinstance(x, distrax.Distribution)))
