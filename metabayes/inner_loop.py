"""Amortised local inference (MATH.md §3): λ_i = K optax steps on the support set, from θ.

    λ⁰ = θ (or a given start),   λᵏ⁺¹ = finish(λᵏ + update(∇_λ ℓ(λᵏ, θ))),
    ℓ(λ, θ) = −E_q(φ;λ)[log p(S|φ)] + β KL(q(φ;λ) || p(φ|θ))

``update`` is any optax transformation (chain the pieces of ``metabayes.inner_transforms`` with
the optimiser), and a ``LocalVarianceRule`` (``metabayes.local_variance``) says how σ_λ moves.
"""
from typing import Optional, Union

import jax
import optax

from metabayes.config_checks import check_option, integer
from metabayes.elbo import LocalObjective
from metabayes.local_variance import LocalVarianceRule, gradient_variance
from metabayes.posterior import MeanFieldGaussian

NUM_STEPS = integer(0)   # the rule of K, ``inner_steps``


def adapt(objective: LocalObjective, key: jax.Array, *,
          inner_optimizer: optax.GradientTransformation, num_steps: int,
          local_variance: LocalVarianceRule = gradient_variance(),
          start: Optional[MeanFieldGaussian] = None,
          unroll: Union[int, bool] = 1) -> MeanFieldGaussian:
    """The local posterior q(φ; λ^K) of one task, from K inner steps inside ``lax.scan``.

    Args:
      objective: ℓ(λ, θ) of the task; ``objective.prior`` is λ⁰.
      key: PRNG key; each step gets a fresh one.
      inner_optimizer: any optax GradientTransformation over λ, e.g. ``optax.sgd(inner_lr)``
        or a chain with ``metabayes.inner_transforms``.
      num_steps: K >= 0; K = 0 returns θ.
      local_variance: how σ_λ moves (``gradient_variance()``: with the optimiser).
      start: λ⁰ when given (shaped like the prior), e.g. an earlier λ to continue from (a
        bandit agent's warm start); None: λ⁰ = θ, the amortised posterior.
    Returns:
      λ^K as a MeanFieldGaussian shaped like ``objective.prior``.
    """
    check_option("inner_steps", num_steps, NUM_STEPS)

    def step(carry, step_key):
        local, opt_state = carry
        loss_key, rule_key = (jax.random.split(step_key) if local_variance.needs_key
                              else (step_key, None))
        grads = jax.grad(objective)(local, loss_key)
        grads, finish = local_variance.step(objective, local, grads, rule_key)
        updates, opt_state = inner_optimizer.update(grads, opt_state, local)
        return (finish(optax.apply_updates(local, updates)), opt_state), None

    start = objective.prior if start is None else start
    (local, _), _ = jax.lax.scan(step, (start, inner_optimizer.init(start)),
                                 jax.random.split(key, num_steps), unroll=unroll)
    return local
