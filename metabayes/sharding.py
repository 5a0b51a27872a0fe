"""Data parallelism over tasks: the meta-batch is split over devices, ψ is replicated.

``jax.jit`` follows the shardings of its inputs, so a train step given a task-sharded batch and
a replicated state runs each device's share of the ``vmap`` over tasks locally and all-reduces
the meta-gradient; the code of the step does not change.
"""
from typing import Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

TASKS = "tasks"


def task_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A 1-D mesh with a ``tasks`` axis over ``devices`` (default: all local devices)."""
    return Mesh(np.asarray(devices if devices is not None else jax.local_devices()), (TASKS,))


def shard_tasks(batch, mesh: Mesh):
    """Place every array of a meta-batch [M, ...] split along M over the mesh's tasks axis."""
    devices = mesh.shape[TASKS]
    for leaf in jax.tree_util.tree_leaves(batch):
        if leaf.shape[0] % devices:
            raise ValueError(f"meta_batch M={leaf.shape[0]} must be a multiple of the number of "
                             f"devices ({devices}) to shard tasks over them")
    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(TASKS)))


def replicate(tree, mesh: Mesh):
    """Place a pytree (e.g. the TrainState) whole on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
