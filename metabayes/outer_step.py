"""One outer step of ψ (MATH.md §4, eq. 2): the meta-gradient, the outer optax update, and a
finiteness guard. ``train_step(learner, state, batch, key)`` is pure and jittable with the
learner closed over; ``learner.train_step`` is it, jitted once per learner.
"""
import functools
from typing import Any, Dict

import jax
import jax.numpy as jnp
import optax

from metabayes.errors import NonFiniteLossError
from metabayes.meta_objective import meta_loss
from metabayes.tasks import Task


def train_step(learner, state, batch: Task, key: jax.Array):
    """``(state, batch [M, ...], key) -> (state, metrics)``; a non-finite step leaves the state
    unchanged and reports ``metrics["finite"] = False`` (see ``check_finite``)."""
    (loss, metrics), grads = jax.value_and_grad(functools.partial(meta_loss, learner),
                                                has_aux=True)(state.params, batch, key)
    updates, opt_state = learner.outer_optimizer.update(grads, state.opt_state, state.params)
    new_state = state.replace(step=state.step + 1,
                              params=optax.apply_updates(state.params, updates),
                              opt_state=opt_state)
    finite_gradient = jnp.all(jnp.stack(
        [jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
    finite = jnp.isfinite(loss) & finite_gradient
    new_state = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old),
                                       new_state, state)
    return new_state, {**metrics, "finite": finite, "finite_gradient": finite_gradient}


def check_finite(learner, metrics: Dict[str, Any], step: int) -> None:
    """Raise NonFiniteLossError naming the likely causes if a step was not finite."""
    if not bool(metrics["finite"]):
        gradient = "finite" if bool(metrics["finite_gradient"]) else "not finite"
        raise NonFiniteLossError(
            f"the meta-loss or its gradient is not finite at step {step} (loss "
            f"{float(metrics['loss'])}, gradient {gradient}). Likely causes: `inner_lr`="
            f"{learner.inner_lr} too large for `kl_weight`={learner.kl_weight} and the prior "
            f"scale sigma_theta (`init_log_sigma`={learner.init_log_sigma}): inner SGD diverges "
            "when inner_lr * kl_weight / sigma_theta^2 > 2. Lower `inner_lr` or `kl_weight`, "
            "raise `init_log_sigma`, or set `scale_by_prior_variance`." + _outer_cause(step))


def _outer_cause(step: int) -> str:
    """At step 0 ψ is its initialisation, so the outer step size cannot be the cause; after
    outer updates (or a resume) it can be."""
    if step == 0:
        return ""
    return (f" Or, after {step} outer update{'s' * (step != 1)} of psi, the outer step size "
            "`outer_lr` is too large: lower it.")
