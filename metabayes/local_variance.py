"""How σ_λ moves in ABML's inner loop: a small pluggable rule (MATH.md §3).

μ_λ always takes the inner optimiser's step. A ``LocalVarianceRule`` decides what happens to
log σ_λ around that step: ``rule.step(objective, λ, ∇_λ ℓ, key)`` returns the gradient the
optimiser sees and a function applied to λ after the update.

- ``gradient_variance()``: log σ_λ takes the optimiser's steps too (the paper's).
- ``fisher_variance(damping)``: log σ_λ's gradient is dropped and σ_λ⁻² moves towards
  F/β + σ_θ⁻², F a Monte-Carlo Fisher of the support likelihood (MATH.md §3, Choice).

A rule of your own is a ``LocalVarianceRule`` built the same way (README, "Your own variant").
"""
from typing import Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from metabayes.config_checks import Rule, check_option, number, one_of
from metabayes.elbo import ApplyFn
from metabayes.likelihoods import Categorical, Likelihood
from metabayes.posterior import MeanFieldGaussian, PyTree
from metabayes.tasks import Data

Finish = Callable[[MeanFieldGaussian], MeanFieldGaussian]


class LocalVarianceRule(NamedTuple):
    """``step(objective, local, grads, key) -> (grads, finish)``: ``objective`` is the task's
    ``LocalObjective`` (apply_fn, prior p(φ|θ), support data, likelihood, β, samples),
    ``local`` λᵏ, ``grads`` ∇_λ ℓ(λᵏ, θ); ``finish`` maps the optimiser's λᵏ⁺¹ to the step's
    result. ``needs_key``: ``key`` is a fresh PRNG key (else None, and the step's one key goes
    to the likelihood estimate)."""

    step: Callable[..., Tuple[MeanFieldGaussian, Finish]]
    needs_key: bool = False


def _unchanged(local: MeanFieldGaussian) -> MeanFieldGaussian:
    return local


def gradient_variance() -> LocalVarianceRule:
    """log σ_λ takes the inner optimiser's steps, as μ_λ does (Ravi & Beatson)."""
    return LocalVarianceRule(lambda objective, local, grads, key: (grads, _unchanged))


DAMPING = number(0.0, 1.0, open_low=True)   # the rule of ρ, ``precision_damping``


def check_fisher_kl_weight(kl_weight: float) -> None:
    """The Fisher rule divides by β: it needs β > 0."""
    if not kl_weight > 0:
        raise ValueError("`local_variance`='fisher' needs `kl_weight` > 0 (σ_λ⁻² = F/β + "
                         f"σ_θ⁻²), got {kl_weight!r}")


def fisher_variance(damping: float = 0.5,
                    num_samples: Optional[int] = None) -> LocalVarianceRule:
    """σ_λ⁻² ← (1 − ρ) σ_λ⁻² + ρ (F/β + σ_θ⁻²) after each μ step (``fisher_precision_update``),
    F from ``fisher_diagonal`` at λᵏ with ``num_samples`` draws (None: the objective's), held
    constant in the outer gradient. Needs β > 0; a point mass (MAML) is left to the optimiser."""
    check_option("precision_damping", damping, DAMPING)

    def step(objective, local, grads, key):
        if local.is_point_mass:
            return grads, _unchanged
        check_fisher_kl_weight(objective.kl_weight)
        fisher = jax.lax.stop_gradient(fisher_diagonal(
            objective.apply_fn, local, objective.data, key,
            num_samples=num_samples or objective.num_samples, likelihood=objective.likelihood))
        grads = grads.replace(log_sigma=jax.tree_util.tree_map(jnp.zeros_like, grads.log_sigma))
        return grads, lambda new: fisher_precision_update(new, objective.prior, fisher,
                                                          objective.kl_weight, damping)

    return LocalVarianceRule(step, needs_key=True)


LOCAL_VARIANCES = {"gradient": gradient_variance, "fisher": fisher_variance}
LOCAL_VARIANCE_NAME = one_of(*LOCAL_VARIANCES)   # the rule of a config's ``local_variance``
LOCAL_VARIANCE = Rule(f"{LOCAL_VARIANCE_NAME.expected} or a LocalVarianceRule",
                      lambda v: LOCAL_VARIANCE_NAME.accepts(v) or isinstance(v, LocalVarianceRule),
                      "laplace")


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
