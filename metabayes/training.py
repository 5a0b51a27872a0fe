"""The outer training loop: meta-steps, a progress bar, a finite-loss check each step, metric
logs (JSONL and TensorBoard) and periodic checkpoints."""
import json
import os
import time
from typing import Callable, Dict, Iterator, List, Optional

import jax
import numpy as np
import tqdm

from metabayes.algorithms import MetaLearner, TrainState
from metabayes.checkpointing import Checkpointer
from metabayes.tasks import Task


class MetricWriter:
    """Appends metrics to ``workdir/metrics.jsonl`` and TensorBoard event files in ``workdir/tb``."""

    def __init__(self, workdir: str):
        from tensorboardX import SummaryWriter  # imported here: only training runs need it
        os.makedirs(workdir, exist_ok=True)
        self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
        self.tensorboard = SummaryWriter(os.path.join(workdir, "tb"))

    def write(self, step: int, metrics: Dict[str, float], prefix: str = "train"):
        self.jsonl.write(json.dumps({"step": step, "split": prefix, **metrics}) + "\n")
        self.jsonl.flush()
        for name, value in metrics.items():
            self.tensorboard.add_scalar(f"{prefix}/{name}", value, step)
        self.tensorboard.flush()

    def close(self):
        self.jsonl.close()
        self.tensorboard.close()


def fit(learner: MetaLearner, state: TrainState, batches: Iterator[Task], key: jax.Array,
        num_steps: int, *, log_every: int = 100,
        on_log: Optional[Callable[[int, Dict[str, float]], None]] = None,
        checkpointer: Optional[Checkpointer] = None, progress: bool = True,
        train_seconds: float = 0.0) -> tuple[TrainState, List[Dict[str, float]]]:
    """Meta-train from ``state.step`` up to ``num_steps``; returns the state and logged metrics.

    ``batches`` yields the meta-batches of steps ``state.step, state.step + 1, ...``. Step t
    draws its noise from ``fold_in(key, t)``, so a run resumed from a checkpoint (with batches
    resumed at the same position) ends exactly where an uninterrupted run ends. Raises
    NonFiniteLossError (naming the likely flags) as soon as a step is not finite. Checkpoint
    metadata holds the step and the training seconds so far: ``train_seconds`` (spent before
    this call, e.g. restored from a checkpoint) plus this call's.
    """
    history = []
    clock = time.perf_counter()
    start = int(state.step)
    bar = tqdm.trange(start, num_steps, initial=start, total=num_steps, disable=not progress,
                      desc="meta-train", dynamic_ncols=True, mininterval=1.0)
    for step in bar:
        state, metrics = learner.train_step(state, next(batches), jax.random.fold_in(key, step))
        learner.check_finite(metrics, step)
        if step % log_every == 0 or step == num_steps - 1:
            logged = {name: float(np.asarray(value)) for name, value in metrics.items()}
            history.append({"step": step, **logged})
            bar.set_postfix(loss=f"{logged['loss']:.4g}", nll=f"{logged['outer_nll']:.4g}")
            if on_log is not None:
                on_log(step, logged)
        if checkpointer is not None:
            spent = train_seconds + time.perf_counter() - clock
            checkpointer.save(step + 1, state, {"step": step + 1, "train_seconds": spent},
                              force=step == num_steps - 1)
    return state, history
