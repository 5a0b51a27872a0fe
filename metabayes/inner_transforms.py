"""Inner-loop gradient transformations, chained with the user's inner optimiser (MATH.md §3).

Each is an ``optax.GradientTransformation`` over λ = (μ, log σ), so a variant of ABML's inner
loop is a chain, not a flag:

    inner = optax.chain(stop_inner_gradients(),           # first-order meta-gradient
                        scale_by_prior_variance(theta),   # μ's gradient × σ_θ²
                        optax.sgd(inner_lr),              # any optax optimiser
                        scale_by_meta_sgd(step_scale),    # learned per-weight step sizes
                        optax.scale(per_point_step(512)(support)))   # a per-task step size

``MetaLearner.inner_transformation`` builds exactly this chain from its options.
"""
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from metabayes.posterior import MeanFieldGaussian, PyTree


def stop_inner_gradients() -> optax.GradientTransformation:
    """Treat the inner gradients as constants of θ (first-order MAML / ABML): the meta-gradient
    then flows only through λ⁰ = θ and the updates' sum, not through ∇_λ ℓ's dependence on θ."""
    return optax.stateless(lambda grads, params=None: jax.lax.stop_gradient(grads))


def scale_by_prior_variance(prior: MeanFieldGaussian) -> optax.GradientTransformation:
    """Multiply μ's gradient by σ_θ² of ``prior`` = p(φ|θ) (a natural-gradient-style
    preconditioner): the local KL's curvature in μ becomes β instead of β/σ_θ², so inner SGD is
    stable for inner_lr·β < 2 whatever σ_θ (MATH.md §3, Stability). The identity for a point
    mass (MAML), whose σ_θ is 0."""
    if prior.is_point_mass:
        return optax.identity()
    variance = jax.tree_util.tree_map(jnp.square, prior.std)

    def precondition(grads: MeanFieldGaussian, params=None) -> MeanFieldGaussian:
        return grads.replace(mean=jax.tree_util.tree_map(jnp.multiply, grads.mean, variance))

    return optax.stateless(precondition)


def scale_by_meta_sgd(step_scale: PyTree) -> optax.GradientTransformation:
    """Multiply the updates by Meta-SGD's learned per-parameter step scales (Li et al., 2017),
    a pytree shaped like λ (part of ψ, so meta-learned through the inner loop)."""
    return optax.stateless(
        lambda updates, params=None: jax.tree_util.tree_map(jnp.multiply, updates, step_scale))


def per_part_optimizer(mean: optax.GradientTransformation,
                       log_sigma: optax.GradientTransformation) -> optax.GradientTransformation:
    """One optimiser for λ's means and another for its log σ (e.g. separate step sizes).

    The KL and the likelihood give μ and log σ very different curvatures: with a summed
    likelihood, a step size that suits μ barely moves log σ. For a point mass (MAML) only
    ``mean`` is used.
    """
    def labels(local: MeanFieldGaussian) -> MeanFieldGaussian:
        name = lambda part: jax.tree_util.tree_map(lambda _: part, getattr(local, part))
        return local.replace(mean=name("mean"),
                             log_sigma=None if local.is_point_mass else name("log_sigma"))
    return optax.multi_transform({"mean": mean, "log_sigma": log_sigma}, labels)


def support_rows(support) -> int:
    """The number of points of a support set (inputs [N, ...], targets): its rows."""
    return support[0].shape[0]


@dataclasses.dataclass(frozen=True)
class per_point_step:
    """A ``MetaLearner.inner_step_scale``: c(S) = min(1, reference / N(S)) for a support set of
    N(S) = ``count(S)`` points (default: its rows; a weighted set passes its total weight).

    The summed log-likelihood's curvature grows like N, so a fixed step that is stable at N
    points diverges at 10 N. With this scale the inner loop takes steps on the summed objective
    up to ``reference`` points and on (reference / N) × it beyond: the likelihood part's
    curvature, and so the step's stability and speed, no longer grow with N. The fixed point
    (the optimum of ℓ) is unchanged; only the path to it is. (A frozen dataclass, so equal
    settings give equal, hashable learners.)
    """

    reference: float
    count: Callable = support_rows

    def __call__(self, support) -> jax.Array:
        return jnp.minimum(1.0, self.reference / jnp.maximum(self.count(support), 1e-12))
