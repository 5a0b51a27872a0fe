"""Checkpoints of a training run with orbax: the TrainState plus JSON metadata (e.g. the
sampler position), every N steps, keeping the last k, restored automatically on resume."""
import os
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from metabayes.algorithms import TrainState


class Checkpointer:
    """Saves and restores ``(TrainState, metadata)`` under ``directory``."""

    def __init__(self, directory: str, every: int = 500, keep: int = 3):
        if every < 1 or keep < 1:
            raise ValueError(f"`every` and `keep` (checkpoints) must be integers >= 1, got {every} "
                             f"and {keep}")
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=every,
                                                 create=True))

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def saved_steps(self) -> List[int]:
        """The steps that have a checkpoint, in increasing order."""
        return sorted(self.manager.all_steps())

    def should_save(self, step: int) -> bool:
        """Whether ``save(step, ...)`` writes a checkpoint (every ``every`` steps)."""
        return self.manager.should_save(step)

    def save(self, step: int, state: TrainState, metadata: Dict[str, Any], force: bool = False):
        """Save at ``step`` if it is a multiple of ``every`` (or ``force``)."""
        self.manager.save(step, force=force, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), metadata=ocp.args.JsonSave(metadata)))

    def resume(self, template: TrainState, steps: int, run: str
               ) -> Optional[Tuple[TrainState, Dict[str, Any]]]:
        """``restore(template, up_to=steps)`` for a run asked to train ``steps``: a run saved
        beyond ``steps`` resumes its checkpoint at ``steps`` (a model chosen among a longer
        run's checkpoints). ValueError, naming ``run``, where it was trained further and has
        no checkpoint there: resuming an earlier one would fork the saved run."""
        saved = self.saved_steps()
        if saved and saved[-1] > steps and steps not in saved:
            raise ValueError(f"`steps` = {steps}: {run} was trained further and has no "
                             f"checkpoint there (saved: {saved}); ask for a saved step")
        return self.restore(template, up_to=steps)

    def restore(self, template: TrainState, up_to: Optional[int] = None
                ) -> Optional[Tuple[TrainState, Dict[str, Any]]]:
        """The latest (state, metadata), shaped like ``template``, of the checkpoints saved at
        or before step ``up_to`` (None: of all); None if there is none.

        ``up_to`` lets a run asked for fewer steps than were saved (a model chosen among a long
        run's checkpoints) resume that step's state, not silently the last one's.

        The state comes back as uncommitted arrays, like freshly initialised ones (orbax's are
        committed to a device), so the resumed run's jitted step lowers to the same program as
        the fresh run's and hits the same compilation-cache entry.
        """
        steps = [step for step in self.saved_steps() if up_to is None or step <= up_to]
        if not steps:
            return None
        step = steps[-1]
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), metadata=ocp.args.JsonRestore()))
        state = jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x)), restored.state)
        return state, restored.metadata

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()
