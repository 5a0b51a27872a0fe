"""The outer training loop: meta-steps, a progress bar, finite-loss and divergence checks, metric
logs (JSONL and TensorBoard) and periodic checkpoints."""
import json
import os
import time
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from metabayes.algorithms import MetaLearner, TrainState
from metabayes.training.checkpointing import Checkpointer
from metabayes.errors import DivergenceError
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


# A logged loss this many times the first one logged (or 1, if larger), or a query NLL this many
# times that of a uniform guess (classification), means training diverged.
DIVERGENCE_FACTOR = 1e4
CHANCE_FACTOR = 100.0


class FirstNonFinite(NamedTuple):
    """The first step since the last check whose loss or gradient was not finite (-1: none), and
    its metrics; kept on the device, so checking a step does not wait for it."""
    step: jax.Array
    loss: jax.Array
    finite_gradient: jax.Array

    @classmethod
    def none(cls) -> "FirstNonFinite":
        return cls(jnp.asarray(-1), jnp.asarray(0.0), jnp.asarray(True))


@jax.jit
def _track(first: FirstNonFinite, step, metrics) -> FirstNonFinite:
    new = (first.step < 0) & ~metrics["finite"]
    return jax.tree_util.tree_map(
        lambda old, now: jnp.where(new, now, old), first,
        FirstNonFinite(jnp.asarray(step), metrics["loss"], metrics["finite_gradient"]))


def check_divergence(history: List[Dict[str, float]]) -> None:
    """DivergenceError if the last logged loss is ``DIVERGENCE_FACTOR`` times the first (or 1),
    or its query NLL ``CHANCE_FACTOR`` times a uniform guess's."""
    first, last = history[0], history[-1]
    if last["loss"] > DIVERGENCE_FACTOR * max(abs(first["loss"]), 1.0):
        raise DivergenceError(f"the meta-loss grew from {first['loss']:.4g} at step "
                              f"{first['step']} to {last['loss']:.4g} at step {last['step']}")
    if last.get("query_nll_over_chance", 0.0) > CHANCE_FACTOR:
        raise DivergenceError(f"at step {last['step']} the adapted networks' query NLL is "
                              f"{last['query_nll_over_chance']:.3g} times a uniform guess's")


def fit(learner: MetaLearner, state: TrainState, batches: Iterator[Task], key: jax.Array,
        num_steps: int, *, log_every: int = 100,
        on_log: Optional[Callable[[int, Dict[str, float]], None]] = None,
        checkpointer: Optional[Checkpointer] = None, progress: bool = True,
        train_seconds: float = 0.0) -> tuple[TrainState, List[Dict[str, float]]]:
    """Meta-train from ``state.step`` up to ``num_steps``; returns the state and logged metrics.

    ``batches`` yields the meta-batches of steps ``state.step, state.step + 1, ...``. Step t
    draws its noise from ``fold_in(key, t)``, so a run resumed from a checkpoint (with batches
    resumed at the same position) ends exactly where an uninterrupted run ends.

    Finiteness is checked at log steps, before each checkpoint and at the end, not after every
    step (a check waits for the device): a non-finite step leaves the state as it was, and the
    check raises NonFiniteLossError naming the first such step and the likely options, so no
    checkpoint is written after it. A logged loss ``DIVERGENCE_FACTOR`` times the first one
    raises DivergenceError. Checkpoint metadata holds the step and the training seconds so far:
    ``train_seconds`` (spent before this call, e.g. restored from a checkpoint) plus this call's.
    """
    history = []
    clock = time.perf_counter()
    start = int(state.step)
    first_non_finite = FirstNonFinite.none()
    bar = tqdm.trange(start, num_steps, initial=start, total=num_steps, disable=not progress,
                      desc="meta-train", dynamic_ncols=True, mininterval=1.0)
    for step in bar:
        state, metrics = learner.train_step(state, next(batches), jax.random.fold_in(key, step))
        first_non_finite = _track(first_non_finite, step, metrics)
        log = step % log_every == 0 or step == num_steps - 1
        save = checkpointer is not None and (checkpointer.should_save(step + 1)
                                             or step == num_steps - 1)
        if (log or save) and (bad_step := int(first_non_finite.step)) >= 0:
            learner.check_finite({"finite": False, **first_non_finite._asdict()}, bad_step)
        if log:
            logged = {name: float(np.asarray(value)) for name, value in metrics.items()}
            history.append({"step": step, **logged})
            bar.set_postfix(progress_fields(logged))
            check_divergence(history)
            if on_log is not None:
                on_log(step, logged)
        if save:
            spent = train_seconds + time.perf_counter() - clock
            checkpointer.save(step + 1, state, {"step": step + 1, "train_seconds": spent},
                              force=step == num_steps - 1)
    return state, history


def progress_fields(logged: Dict[str, float]) -> Dict[str, str]:
    """What the progress bar shows: the loss, the outer NLL and the likelihood's fit metrics on
    the training queries (accuracy for a classifier, squared error for a regression)."""
    shown = {"loss": logged["loss"], "nll": logged["outer_nll"],
             "acc": logged.get("query_accuracy"), "mse": logged.get("query_squared_error")}
    return {name: f"{value:.4g}" for name, value in shown.items() if value is not None}
