"""Amortised local inference (MATH.md §3): λ_i = K optax steps on the support set, from θ.

    λ⁰ = θ,   λᵏ⁺¹ = λᵏ + update(∇_λ ℓ(λᵏ, θ)),   ℓ(λ, θ) = −E_q(φ;λ)[log p(S|φ)] + β KL(q(φ;λ) || p(φ|θ))
"""
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from metabayes.elbo import ApplyFn, expected_log_likelihood, local_kl
from metabayes.likelihoods import Categorical, Likelihood
from metabayes.posterior import MeanFieldGaussian, PyTree
from metabayes.tasks import Data


def check_num_steps(num_steps: int, flag: str = "inner_steps") -> int:
    if not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(f"`{flag}` (K, the number of inner-loop steps) must be an integer >= 0, "
                         f"got {num_steps!r}")
    return num_steps


LOCAL_VARIANCES = ("gradient", "fisher")


def check_local_variance(local_variance: str, damping: float, kl_weight: float) -> None:
    if local_variance not in LOCAL_VARIANCES:
        raise ValueError(f"`local_variance` must be one of {LOCAL_VARIANCES}, got {local_variance!r}")
    if local_variance == "fisher":
        if not 0 < damping <= 1:
            raise ValueError(f"`precision_damping` must be in (0, 1], got {damping!r}")
        if not kl_weight > 0:
            raise ValueError("`local_variance`='fisher' needs `kl_weight` > 0 (σ_λ⁻² = F/β + σ_θ⁻²), "
                             f"got {kl_weight!r}")


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


def fisher_diagonal(apply_fn: ApplyFn, local_posterior: MeanFieldGaussian, data: Data,
                    key: jax.Array, *, num_samples: int = 1,
                    likelihood: Likelihood = Categorical()) -> PyTree:
    """Unbiased Monte-Carlo estimate of E_q(φ)[diag F(φ)], the Fisher of log p(D | φ).

    For φ ~ q and pseudo-targets ŷ ~ p(y | x, φ) (held constant), g = ∇_φ Σ_n log p(ŷ_n | x_n, φ)
    has E[g g] = diag F(φ), the Gauss-Newton curvature of −log p(D | φ) (no true targets
    are used; φ is sampled whole, whatever the layer estimator). Returns a pytree shaped like
    φ, averaged over ``num_samples``.
    """
    inputs, _ = data

    def one_sample(sample_key):
        weight_key, target_key = jax.random.split(sample_key)
        weights = local_posterior.sample(weight_key)
        targets = jax.lax.stop_gradient(
            likelihood.sample(target_key, apply_fn({"params": weights}, inputs)))
        grads = jax.grad(lambda w: likelihood.log_prob(apply_fn({"params": w}, inputs), targets))(
            weights)
        return jax.tree_util.tree_map(jnp.square, grads)

    samples = jax.vmap(one_sample)(jax.random.split(key, num_samples))
    return jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), samples)


def fisher_precision_update(local: MeanFieldGaussian, prior: MeanFieldGaussian, fisher: PyTree,
                           kl_weight: float, damping: float) -> MeanFieldGaussian:
    """Move σ_λ towards the optimum of ℓ under a Gauss-Newton model of the likelihood:

        σ_λ⁻² ← (1 − ρ) σ_λ⁻² + ρ (F/β + σ_θ⁻²),   ρ = ``damping``

    (the variational online Gauss-Newton step; at ρ = 1 it is the exact posterior variance of a
    linear-Gaussian model). The precision is data-dependent: it grows only in weights the
    support data constrain, whatever the scale of the summed likelihood.
    """
    def log_sigma(log_sigma_local, log_sigma_prior, f):
        precision = ((1 - damping) * jnp.exp(-2 * log_sigma_local)
                     + damping * (f / kl_weight + jnp.exp(-2 * log_sigma_prior)))
        return -0.5 * jnp.log(precision)
    return local.replace(log_sigma=jax.tree_util.tree_map(
        log_sigma, local.log_sigma, prior.log_sigma, fisher))


def local_objective(apply_fn: ApplyFn, local_posterior: MeanFieldGaussian,
                    prior: MeanFieldGaussian, data: Data, key: jax.Array, *,
                    num_samples: int = 1, kl_weight: float = 1.0,
                    likelihood: Likelihood = Categorical(), estimator: str = "weights") -> jax.Array:
    """ℓ(λ, θ) = −E_q(φ;λ)[log p(D|φ)] + β KL(q(φ;λ) || p(φ|θ)); the KL is skipped when β = 0."""
    loss = -expected_log_likelihood(apply_fn, local_posterior, data, key, num_samples,
                                    likelihood=likelihood, estimator=estimator)
    if kl_weight:
        loss = loss + kl_weight * local_kl(local_posterior, prior)
    return loss


def adapt(apply_fn: ApplyFn, prior: MeanFieldGaussian, support: Data, key: jax.Array, *,
          inner_optimizer: optax.GradientTransformation, num_steps: int,
          num_samples: int = 1, kl_weight: float = 1.0, first_order: bool = False,
          likelihood: Likelihood = Categorical(), estimator: str = "weights",
          scale_by_prior_variance: bool = False,
          step_scale: Optional[PyTree] = None,
          local_variance: str = "gradient",
          precision_damping: float = 0.5) -> MeanFieldGaussian:
    """The local posterior q(φ; λ^K) of one task, from K inner steps inside ``lax.scan``.

    Args:
      apply_fn: ``module.apply`` of the network.
      prior: p(φ | θ) = N(μ_θ, σ_θ²), also the starting point λ⁰ = θ (a point mass for MAML).
      support: (inputs [N, ...], targets [N, ...]) of the task's support set.
      key: PRNG key; each step gets a fresh one.
      inner_optimizer: any optax GradientTransformation (the default elsewhere: SGD(inner_lr)).
      num_steps: K >= 0; K = 0 returns θ.
      num_samples: Monte-Carlo samples of the inner likelihood per step.
      kl_weight: β on the local KL.
      first_order: treat the inner gradients as constants (no second-order terms).
      likelihood, estimator: as ``expected_log_likelihood``.
      scale_by_prior_variance: multiply μ's gradient by σ_θ² (a natural-gradient-style
        preconditioner): the KL's curvature in μ becomes β instead of β/σ_θ², so SGD is stable
        for inner_lr·β < 2 whatever σ_θ (MATH.md §3, Stability).
      step_scale: learned per-parameter multipliers of the updates (Meta-SGD), shaped like θ.
      local_variance: "gradient" (log σ_λ takes the inner optimiser's steps, as μ_λ does) or
        "fisher" (μ_λ takes them; σ_λ follows ``fisher_precision_update`` with a Monte-Carlo
        Fisher of ``num_samples`` draws, held constant in the outer gradient; needs β > 0).
      precision_damping: ρ of the "fisher" update, in (0, 1].
    Returns:
      λ^K as a MeanFieldGaussian shaped like ``prior``.
    """
    check_num_steps(num_steps)
    check_local_variance(local_variance, precision_damping, kl_weight)
    fisher_steps = local_variance == "fisher" and not prior.is_point_mass
    loss_fn = lambda local, k: local_objective(
        apply_fn, local, prior, support, k, num_samples=num_samples, kl_weight=kl_weight,
        likelihood=likelihood, estimator=estimator)
    prior_variance = jax.tree_util.tree_map(jnp.square, prior.std)

    def step(carry, step_key):
        local, opt_state = carry
        loss_key, fisher_key = jax.random.split(step_key) if fisher_steps else (step_key, None)
        grads = jax.grad(loss_fn)(local, loss_key)
        if fisher_steps:
            fisher = jax.lax.stop_gradient(fisher_diagonal(
                apply_fn, local, support, fisher_key, num_samples=num_samples,
                likelihood=likelihood))
            grads = grads.replace(log_sigma=jax.tree_util.tree_map(jnp.zeros_like, grads.log_sigma))
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        if scale_by_prior_variance and not prior.is_point_mass:
            grads = grads.replace(
                mean=jax.tree_util.tree_map(jnp.multiply, grads.mean, prior_variance))
        updates, opt_state = inner_optimizer.update(grads, opt_state, local)
        if step_scale is not None:
            updates = jax.tree_util.tree_map(jnp.multiply, updates, step_scale)
        local = optax.apply_updates(local, updates)
        if fisher_steps:
            local = fisher_precision_update(local, prior, fisher, kl_weight, precision_damping)
        return (local, opt_state), None

    (local, _), _ = jax.lax.scan(step, (prior, inner_optimizer.init(prior)),
                                 jax.random.split(key, num_steps))
    return local
