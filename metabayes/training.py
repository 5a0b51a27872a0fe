"""The outer training loop: meta-steps with a progress bar and a finite-loss check each step."""
from typing import Callable, Dict, List, Optional

import jax
import numpy as np
import tqdm

from metabayes.algorithms import MetaLearner, TrainState
from metabayes.tasks import Task


def fit(learner: MetaLearner, state: TrainState, sample_batch: Callable[[jax.Array], Task],
        key: jax.Array, num_steps: int, *, log_every: int = 100,
        on_log: Optional[Callable[[int, Dict[str, float]], None]] = None,
        progress: bool = True) -> tuple[TrainState, List[Dict[str, float]]]:
    """Meta-train from ``state.step`` up to ``num_steps``; returns the state and logged metrics.

    Step t uses ``fold_in(key, t)`` for its batch and its noise, so a run resumed from a saved
    state sees the same randomness as an uninterrupted one. Raises NonFiniteLossError (naming
    the likely flags) as soon as a step's loss or gradient is not finite.
    """
    history = []
    start = int(state.step)
    bar = tqdm.trange(start, num_steps, initial=start, total=num_steps, disable=not progress,
                      desc="meta-train", dynamic_ncols=True)
    for step in bar:
        batch_key, step_key = jax.random.split(jax.random.fold_in(key, step))
        state, metrics = learner.train_step(state, sample_batch(batch_key), step_key)
        learner.check_finite(metrics, step)
        if step % log_every == 0 or step == num_steps - 1:
            logged = {name: float(np.asarray(value)) for name, value in metrics.items()}
            logged["step"] = step
            history.append(logged)
            bar.set_postfix(loss=f"{logged['loss']:.4g}", nll=f"{logged['outer_nll']:.4g}")
            if on_log is not None:
                on_log(step, logged)
    return state, history
