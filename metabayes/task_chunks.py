"""How many tasks to vmap at a time: chosen from a memory budget, so a user need not know.

vmapping all M tasks keeps every task's activations alive for the backward pass at once
(≈ 190-220 MiB a task for Conv4-64 on Omniglot 5-way 1-shot, Q = 15, K = 5: 7-9 GB at M = 32).
Chunks of k tasks under ``jax.checkpoint`` keep one chunk's. ``choose_task_chunk`` measures a
task's share without running anything: the bytes of the residuals that ``jax.vjp`` of one task's
function saves, from ``jax.eval_shape``, and takes the largest k whose residuals fit the budget.
"""
from typing import Any, Callable, Optional

import jax

# XLA:CPU runs one task at a time fastest as well as smallest (BENCHMARKS.md, issue 20: at
# M = 32, k = 1 against vmapping all, MAML 4.2 s against 6.2 s a step): a small CPU budget.
CPU_BUDGET_BYTES = 256 * 2**20
ACCELERATOR_BUDGET_FRACTION = 0.25   # of the device's memory, where it reports it
FALLBACK_BUDGET_BYTES = 4 * 2**30


def residual_bytes(per_task: Callable[[Any], Any], params) -> int:
    """Bytes that ``jax.vjp(per_task, params)`` keeps for its backward pass (shapes only)."""
    saved = jax.eval_shape(lambda p: jax.vjp(per_task, p)[1], params)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(saved))


def default_memory_budget() -> int:
    """The budget for one chunk's residuals on the default backend: ``CPU_BUDGET_BYTES`` on
    CPU; a quarter of an accelerator's memory where it reports its limit."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return CPU_BUDGET_BYTES
    limit = (device.memory_stats() or {}).get("bytes_limit")
    return int(limit * ACCELERATOR_BUDGET_FRACTION) if limit else FALLBACK_BUDGET_BYTES


def choose_task_chunk(task_chunk, memory_budget: Optional[int], per_task: Callable[[Any], Any],
                      params, num_tasks: int) -> Optional[int]:
    """The chunk size to use for ``num_tasks`` tasks: None (vmap them all at once) or k < M.

    ``task_chunk``: None (all at once), an integer k, or "auto": the largest k ≥ 1 with k ×
    ``residual_bytes(per_task, params)`` ≤ ``memory_budget`` (``default_memory_budget()`` if
    None). A chunk as large as M is the same as vmapping all.
    """
    if task_chunk == "auto":
        budget = default_memory_budget() if memory_budget is None else memory_budget
        task_chunk = max(1, budget // max(1, residual_bytes(per_task, params)))
    if task_chunk is None or task_chunk >= num_tasks:
        return None
    return task_chunk
