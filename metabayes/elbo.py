"""The three terms of the ELBO, equation (1) of MATH.md §2, as pure functions.

    L = E_q(θ)[ Σ_i E_q(φ_i)[log p(D_i | φ_i)] − KL(q(φ_i) || p(φ_i | θ)) ] − KL(q(θ) || p(θ))

Research code composes them freely; ``LocalObjective`` is one task's ℓ(λ, θ) (the inner loop's
objective), and ``metabayes.meta_objective`` composes them into ABML.
"""
import dataclasses
from typing import Callable

import distrax
import jax
import jax.numpy as jnp

from metabayes.config_checks import check_option, one_of
from metabayes.hyperprior import Hyperprior
from metabayes.layers import ESTIMATORS
from metabayes.likelihoods import Categorical, Likelihood
from metabayes.posterior import MeanFieldGaussian, tree_sum
from metabayes.tasks import Data

ApplyFn = Callable[..., jax.Array]


ESTIMATOR = one_of(*ESTIMATORS)   # the rule of ``estimator``


def check_estimator(estimator: str) -> str:
    return check_option("estimator", estimator, ESTIMATOR)


def sample_outputs(apply_fn: ApplyFn, posterior: MeanFieldGaussian, inputs: jax.Array,
                   key: jax.Array, estimator: str = "weights") -> jax.Array:
    """Network outputs for one Monte-Carlo draw of φ ~ q (or of the layer estimator's noise).

    ``estimator="weights"`` samples φ = μ + σ ⊙ ε and runs the net at φ; the layer estimators
    hand (μ, σ) to the net, which samples pre-activations itself (``metabayes.layers``).
    """
    if check_estimator(estimator) == "weights" or posterior.is_point_mass:
        return apply_fn({"params": posterior.sample(key)}, inputs)
    return apply_fn({"params": posterior.mean, "posterior_std": posterior.std}, inputs,
                    rngs={estimator: key})


def draw_outputs(apply_fn: ApplyFn, posterior: MeanFieldGaussian, inputs: jax.Array,
                 key: jax.Array, num_samples: int, estimator: str = "weights", *,
                 sequential: bool = False) -> jax.Array:
    """Outputs [S, ...] of ``num_samples`` draws of ``sample_outputs`` (one for a point mass).

    ``sequential`` runs the draws one after another (``lax.map``: memory does not grow with
    S); otherwise they are vmapped.
    """
    draws = 1 if posterior.is_point_mass else num_samples
    one_draw = lambda k: sample_outputs(apply_fn, posterior, inputs, k, estimator)
    keys = jax.random.split(key, draws)
    if draws == 1:   # no batch axis on φ: a batched kernel would make convolutions grouped
        return one_draw(keys[0])[None]
    return jax.lax.map(one_draw, keys) if sequential else jax.vmap(one_draw)(keys)


def expected_log_likelihood(apply_fn: ApplyFn, posterior: MeanFieldGaussian, data: Data,
                            key: jax.Array, num_samples: int = 1, *,
                            likelihood: Likelihood = Categorical(),
                            estimator: str = "weights") -> jax.Array:
    """Unbiased reparameterised estimate of E_q(φ)[log p(D | φ)], log p summed over examples.

    Args:
      apply_fn: ``module.apply``, mapping ({"params": φ}, inputs [N, ...]) to outputs.
      posterior: q(φ); a point mass gives the exact log p(D | μ) (one evaluation).
      data: (inputs [N, ...], targets [N, ...]).
      key: PRNG key, split into ``num_samples`` draws.
      num_samples: Monte-Carlo samples S; the estimate is their mean.
      likelihood: ``Categorical()`` or ``Gaussian(noise_std)``.
      estimator: "weights", "local_reparam" or "flipout" (MATH.md §3).
    Returns:
      A scalar: (1/S) Σ_s Σ_n log p(y_n | x_n, φ_s).
    """
    inputs, targets = data
    outputs = draw_outputs(apply_fn, posterior, inputs, key, num_samples, estimator)
    return mean_log_likelihood(outputs, targets, likelihood)


def mean_log_likelihood(outputs: jax.Array, targets: jax.Array,
                        likelihood: Likelihood = Categorical()) -> jax.Array:
    """(1/S) Σ_s Σ_n log p(y_n | outputs_s,n) for outputs [S, N, ...] of S draws."""
    return jnp.mean(jax.vmap(lambda out: likelihood.log_prob(out, targets))(outputs))


@dataclasses.dataclass(frozen=True)
class LocalObjective:
    """ℓ(λ, θ) of one task: ``objective(local, key)`` = −E_q(φ;λ)[log p(D|φ)] + β KL(q(φ;λ) ||
    p(φ|θ)), the KL skipped when β = 0.

    Attributes:
      apply_fn: ``module.apply`` of the network.
      prior: p(φ | θ) = N(μ_θ, σ_θ²), also the inner loop's start λ⁰ = θ (a point mass: MAML).
      data: (inputs [N, ...], targets [N, ...]), the task's support set.
      likelihood, estimator: as ``expected_log_likelihood``.
      kl_weight: β on the local KL.
      num_samples: Monte-Carlo samples of the likelihood per evaluation.
    """

    apply_fn: ApplyFn
    prior: MeanFieldGaussian
    data: Data
    likelihood: Likelihood = Categorical()
    kl_weight: float = 1.0
    num_samples: int = 1
    estimator: str = "weights"

    def __call__(self, local: MeanFieldGaussian, key: jax.Array) -> jax.Array:
        loss = -expected_log_likelihood(self.apply_fn, local, self.data, key, self.num_samples,
                                        likelihood=self.likelihood, estimator=self.estimator)
        if self.kl_weight:
            loss = loss + self.kl_weight * local_kl(local, self.prior)
        return loss


def local_kl(posterior: MeanFieldGaussian, prior: MeanFieldGaussian) -> jax.Array:
    """KL(q(φ; λ) || p(φ | θ)) between diagonal Gaussians over a pytree, closed form, summed."""
    return posterior.kl_divergence(prior)


def global_kl(q_theta: MeanFieldGaussian, hyperprior: Hyperprior) -> jax.Array:
    """KL(q(θ; ψ) || p(θ)) for the two q(θ) families of MATH.md §2.

    - point estimate (``q_theta.log_sigma is None``, the paper's): −log p(ψ), the KL up to a
      constant that does not depend on ψ (a MAP penalty);
    - mean-field Gaussian over θ = (μ, log σ): closed form. For μ a Gaussian-Gaussian KL; for
      l = log σ ~ N(m, s²), KL = −H[N(m, s²)] − E[log p(l)], whose expectation is closed form
      (``Hyperprior.expected_log_prob_log_sigma``).

    ``q_theta.mean`` is θ's location, itself a MeanFieldGaussian (μ, log σ) pytree.
    """
    theta = q_theta.mean
    if q_theta.is_point_mass:
        return -hyperprior.log_prob(theta)
    scale = q_theta.std
    kl_mean = tree_sum(jax.tree_util.tree_map(
        lambda m, s: distrax.Normal(m, s).kl_divergence(distrax.Normal(0.0, hyperprior.s0)),
        theta.mean, scale.mean))
    kl_log_sigma = tree_sum(jax.tree_util.tree_map(
        lambda m, s: -distrax.Normal(m, s).entropy() - hyperprior.expected_log_prob_log_sigma(m, s),
        theta.log_sigma, scale.log_sigma))
    return kl_mean + kl_log_sigma


def elbo(apply_fn: ApplyFn, q_theta: MeanFieldGaussian, local_posteriors: MeanFieldGaussian,
         tasks: Data, hyperprior: Hyperprior, key: jax.Array, **objective) -> jax.Array:
    """Equation (1) for M tasks with free local posteriors (λ_i stacked on a leading M axis).

    One θ ~ q(θ; ψ) per call (the point estimate: θ = ψ); ``tasks`` are (inputs [M, N, ...],
    targets [M, N, ...]). Task i contributes −ℓ(λ_i, θ) (``LocalObjective``; ``objective``:
    its likelihood, kl_weight, num_samples and estimator). With ``kl_weight`` = 1 (the default)
    this is the true ELBO.
    """
    theta_key, task_key = jax.random.split(key)
    theta = q_theta.sample(theta_key)
    task_term = lambda local, data, k: -LocalObjective(apply_fn, theta, data, **objective)(local, k)
    num_tasks = tasks[0].shape[0]
    per_task = jax.vmap(task_term)(local_posteriors, tasks, jax.random.split(task_key, num_tasks))
    return jnp.sum(per_task) - global_kl(q_theta, hyperprior)
