"""Steps on the hidden layers through the head's exact optimum (variable projection; issue 19).

``ExactHead`` sets the head's factor of λ to the minimiser of the local objective given the
hidden layers; the hidden layers keep what the K inner steps made of them. ``ProfileSteps``
also moves the hidden layers' means μ_h, by ``steps`` Adam steps on the profile objective

    ℓ*(μ_h) = min over the head of ℓ(μ_h, head) = ℓ(μ_h, head*(μ_h)),
    ℓ(μ) = Σ_r Σ_a w_ra (y_r − f_a(x_r; μ))² / (2 s²) + β Σ_i (μ_i − μ_θ,i)² / (2 σ_θ,i²),

the local objective at the mean network (σ_λ → 0: MAP of the weights under p(φ | θ), tempered
by β), per pull (divided by Σ w_ra) so that one step size serves any history. ``head*`` is
``ExactHead``'s solve, whose minimand is ℓ / β, so by the envelope theorem ∇ℓ* is ∂ℓ/∂μ_h at
the solved head, held fixed (tested against the gradient through the solve and finite
differences): one backward pass through the network and none through the solve. Taken
through the solve instead (until 2026-12-08), 20 steps a re-adaptation played 4.69 s per
1,000 pulls against 2.01 s, for the same regret within the errors (docs/wheel_bandit.md). It
needs the head that minimises ℓ, so an anchored head (κ or κ_T > 0, whose solve minimises
another objective) is refused. The head is then solved once more on the moved features; the
hidden layers' σ_λ is as it came in.

An agent (``MetaAgent``) that re-adapts from its last λ (``warm_start``) with no inner steps
and these steps keeps training its network on the whole history's reservoir, from θ at its
first re-adaptation, with p(φ | θ) as the regulariser and the head always at its optimum:
NeuralLinear's retraining, started and regularised by the meta-learned prior. λ is then no
longer the amortised q(φ; λ(S)) of meta-training but a point estimate of the weights that
keeps moving as the history grows. Measured in docs/wheel_bandit.md; off by default.
"""
import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from metabayes.bandit.exact_head import HEAD, ExactHead
from metabayes.bandit.wheel import CONTEXT_DIM
from metabayes.posterior import MeanFieldGaussian, PyTree, tree_sum


def local_map_objective(model, prior: MeanFieldGaussian, mean: PyTree, support,
                        kl_weight: float, noise_std: float) -> jax.Array:
    """ℓ(μ) per pull (module docstring): the Gaussian fit of the network ``mean`` to
    ``support`` (inputs [R, 7] with scaled one-hots, targets [R, 1]) plus β × the prior's
    quadratic, over Σ w_ra (at least 1)."""
    inputs, targets = support
    residuals = targets - model.apply({"params": mean}, inputs)            # √w (y − f) [R, 1]
    fit = jnp.sum(jnp.square(residuals)) / (2 * noise_std ** 2)
    penalty = tree_sum(jax.tree_util.tree_map(
        lambda m, m0, log_s: jnp.sum(jnp.square(m - m0) * jnp.exp(-2 * log_s)) / 2,
        mean, prior.mean, prior.log_sigma))
    pulls = jnp.sum(jnp.square(inputs[:, CONTEXT_DIM:]))
    return (fit + kl_weight * penalty) / jnp.maximum(pulls, 1.0)


@dataclasses.dataclass(frozen=True)
class ProfileSteps:
    """λ ↦ λ with its hidden layers' means moved by ``steps`` Adam steps (step size
    ``learning_rate``) on ℓ at ``head``'s solve, then ``head``'s solve on them (module
    docstring). A refit, as ``ExactHead`` is: (model, p(φ | θ), λ, support) -> λ."""

    head: ExactHead
    steps: int
    learning_rate: float

    def __post_init__(self):
        if self.head.anchor_share or self.head.task_prior_share:
            raise ValueError("ProfileSteps needs the head that minimises ℓ (anchor_share = "
                             "task_prior_share = 0): the envelope theorem gives its gradient")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"ProfileSteps needs `steps` >= 1, got {self.steps!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"ProfileSteps needs `learning_rate` > 0, got "
                             f"{self.learning_rate!r}")

    def solved(self, model, prior, local: MeanFieldGaussian, hidden: PyTree,
               support) -> MeanFieldGaussian:
        """λ with the hidden layers' means ``hidden`` and the head solved on them."""
        return self.head(model, prior, local.replace(mean={**local.mean, **hidden}), support)

    def profile_objective(self, model, prior, local, hidden, support) -> jax.Array:
        """ℓ*(μ_h): ℓ per pull at the head solved on the hidden layers ``hidden``."""
        mean = self.solved(model, prior, local, hidden, support).mean
        return local_map_objective(model, prior, mean, support, self.head.kl_weight,
                                   self.head.noise_std)

    def profile_gradient(self, model, prior, local, hidden, support) -> PyTree:
        """∇ℓ*(μ_h) = ∂ℓ/∂μ_h at the head solved on ``hidden``, held fixed (envelope theorem)."""
        head = jax.lax.stop_gradient(self.solved(model, prior, local, hidden, support).mean[HEAD])
        return jax.grad(lambda h: local_map_objective(
            model, prior, {**h, HEAD: head}, support, self.head.kl_weight,
            self.head.noise_std))(hidden)

    def __call__(self, model, prior: MeanFieldGaussian, local: MeanFieldGaussian, support,
                 task_networks: Optional[PyTree] = None) -> MeanFieldGaussian:
        """``task_networks`` is unused (the head is never anchored; a refit's signature)."""
        optimizer = optax.adam(self.learning_rate)

        def step(_, carry):
            hidden, state = carry
            updates, state = optimizer.update(
                self.profile_gradient(model, prior, local, hidden, support), state)
            return optax.apply_updates(hidden, updates), state

        hidden = {name: layer for name, layer in local.mean.items() if name != HEAD}
        hidden, _ = jax.lax.fori_loop(0, self.steps, step, (hidden, optimizer.init(hidden)))
        return self.solved(model, prior, local, hidden, support)
