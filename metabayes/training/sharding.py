"""Data parallelism over tasks: the meta-batch is split over devices, ψ is replicated.

``jax.jit`` follows the shardings of its inputs, so a train step given a task-sharded batch and
a replicated state runs each device's share of the ``vmap`` over tasks locally and all-reduces
the meta-gradient; the code of the step does not change. The same holds across hosts: after
``initialize_multihost`` every process runs the same program, contributes its own slice of the
meta-batch (``shard_tasks`` takes process-local data), and sees ψ replicated.
"""
from typing import Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

TASKS = "tasks"


def initialize_multihost(coordinator_address: Optional[str] = None,
                         num_processes: Optional[int] = None,
                         process_id: Optional[int] = None) -> None:
    """``jax.distributed.initialize``: arguments None are detected (Cloud TPU, SLURM, ...); a
    failure is re-raised as a ConnectionError naming the options."""
    try:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id)
    except (RuntimeError, ValueError) as error:
        raise ConnectionError(
            f"jax.distributed.initialize failed ({error}); on a Cloud TPU VM run the same command "
            "on every worker, elsewhere set `coordinator_address`, `num_processes` and "
            "`process_id`") from error


def task_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A 1-D mesh with a ``tasks`` axis over ``devices`` (default: all devices of all hosts)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (TASKS,))


def shard_tasks(batch, mesh: Mesh):
    """This process's meta-batch [M_local, ...] as its slice of a global one, split along the
    tasks axis: [M_local · processes, ...] over the mesh (on one host, M_local = M)."""
    local_devices = len([d for d in mesh.devices.flat if d.process_index == jax.process_index()])
    for leaf in jax.tree_util.tree_leaves(batch):
        if leaf.shape[0] % local_devices:
            raise ValueError(f"meta_batch M={leaf.shape[0]} (per host) must be a multiple of the "
                             f"number of local devices ({local_devices}) to shard tasks over them")
    sharding = NamedSharding(mesh, PartitionSpec(TASKS))
    return jax.tree_util.tree_map(
        lambda leaf: jax.make_array_from_process_local_data(sharding, np.asarray(leaf)), batch)


def replicate(tree, mesh: Mesh):
    """Place a pytree (e.g. the TrainState), the same on every process, whole on every device."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(
        lambda leaf: jax.make_array_from_callback(np.shape(leaf), sharding,
                                                  lambda index: np.asarray(leaf)[index]), tree)


def host_local(tree):
    """This process's copy of a replicated pytree, for host-local work such as evaluation."""
    return jax.tree_util.tree_map(lambda leaf: leaf.addressable_data(0), tree)
