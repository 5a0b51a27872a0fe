"""Few-shot tasks: a support set to adapt on and a query set to judge the adaptation."""
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp

Data = Tuple[jax.Array, jax.Array]


class Task(NamedTuple):
    """One task, or a meta-batch of M tasks with a leading M axis on every array.

    support: (inputs [N_s, ...], targets [N_s, ...]); query: (inputs [N_q, ...], targets [N_q, ...]).
    For Omniglot 5-way 1-shot, a meta-batch has support inputs [M, 5, 28, 28, 1] and labels [M, 5].
    """

    support: Data
    query: Data


def concatenate(first: Data, second: Data) -> Data:
    """The union of two example sets of one task (e.g. support ∪ query)."""
    return (jnp.concatenate([first[0], second[0]]), jnp.concatenate([first[1], second[1]]))


def check_task(task: Task, batched: bool) -> None:
    """Raise ValueError naming the array whose shape does not fit the others."""
    lead = 2 if batched else 1
    what = "[M, N, ...]" if batched else "[N, ...]"
    for name, (inputs, targets) in (("support", task.support), ("query", task.query)):
        if jnp.ndim(inputs) < lead or jnp.ndim(targets) < lead:
            raise ValueError(f"{name} inputs and targets must be shaped {what}; got inputs "
                             f"{jnp.shape(inputs)} and targets {jnp.shape(targets)}")
        if jnp.shape(inputs)[:lead] != jnp.shape(targets)[:lead]:
            raise ValueError(f"{name} inputs {jnp.shape(inputs)} and targets {jnp.shape(targets)} "
                             f"disagree on their leading {what[:-6]}] axes")
    (s_in, s_out), (q_in, q_out) = task
    if batched and jnp.shape(s_in)[0] != jnp.shape(q_in)[0]:
        raise ValueError(f"support and query hold different numbers of tasks M: "
                         f"{jnp.shape(s_in)[0]} vs {jnp.shape(q_in)[0]}")
    if jnp.shape(s_in)[lead:] != jnp.shape(q_in)[lead:]:
        raise ValueError(f"support inputs {jnp.shape(s_in)} and query inputs {jnp.shape(q_in)} "
                         "differ in the shape of one example")
    if jnp.shape(s_out)[lead:] != jnp.shape(q_out)[lead:]:
        raise ValueError(f"support targets {jnp.shape(s_out)} and query targets {jnp.shape(q_out)} "
                         "differ in the shape of one target")
