"""Episodic N-way K-shot classification tasks from a pool of classes [C, D, H, W, channels]:
one sampler for Omniglot, miniImageNet, CIFAR-FS and FC100 (``metabayes.data.pools``).

Batch t is a pure function of (seed, t) — its generator is np.random.default_rng([seed, t]) — so
a sampler's whole position is the integer t: save it with a checkpoint and resume from it. In a
multi-host run, host p > 0 draws from default_rng([seed, t, p]), its own slice of the tasks.
Batches are numpy arrays; jitted functions take them as they are.
"""
import itertools
import queue
import threading
from typing import Iterator, NamedTuple, Tuple

import numpy as np

from metabayes.data.pools import Normalization
from metabayes.tasks import Task


class EpisodeSampler(NamedTuple):
    """M tasks of N ways × (K shots + Q queries) from ``images`` [C classes, D images, H, W,
    channels] uint8 (a ``ClassPool``'s, e.g. ``load_fewshot("cifarfs").train.images``), scaled
    to inputs by ``normalization``. ``source`` names the pool's file in errors."""

    images: np.ndarray
    ways: int = 5
    shots: int = 1
    query: int = 15
    meta_batch: int = 32
    seed: int = 0
    process: int = 0   # the host's jax.process_index() in a multi-host run
    normalization: Normalization = Normalization()
    source: str = ""

    def check(self) -> "EpisodeSampler":
        """self, or a ValueError naming the setting (ways, shots, query, ...) that cannot be met."""
        if self.images.ndim != 5 or self.images.dtype != np.uint8:
            raise ValueError("images must be uint8 shaped [classes, images, H, W, channels]; got "
                             f"{self.images.dtype} {self.images.shape}")
        classes, drawers = self.images.shape[:2]
        where = f" of {self.source}" if self.source else ""
        for name in ("ways", "shots", "query", "meta_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.ways > classes:
            raise ValueError(f"ways={self.ways} exceeds the {classes} classes{where}; lower "
                             "ways, or use a larger split or rotations")
        if self.shots + self.query > drawers:
            raise ValueError(f"shots + query = {self.shots} + {self.query} exceeds the {drawers} "
                             f"images per class{where}; lower shots or query")
        if self.seed < 0 or self.process < 0:
            raise ValueError(f"seed and process must be non-negative; got {self.seed}, "
                             f"{self.process}")
        return self

    def batch(self, step: int) -> Task:
        """Batch ``step`` (≥ 0): support (inputs [M, N·K, H, W, channels] float32, normalised,
        labels [M, N·K] int32), query ([M, N·Q, H, W, channels], [M, N·Q]).

        Per task, N distinct classes in random order get labels 0..N-1 (a fresh permutation per
        task), each contributes K + Q distinct drawers, and the examples of the support and of the
        query set are shuffled.
        """
        self.check()
        if step < 0:
            raise ValueError(f"step must be non-negative; got {step}")
        classes, drawers = self.images.shape[:2]
        m, n, k, q = self.meta_batch, self.ways, self.shots, self.query
        rng = np.random.default_rng([self.seed, step] + ([self.process] if self.process else []))
        chosen = np.argsort(rng.random((m, classes)), axis=1)[:, :n]  # [M, N]: class of label j
        picks = np.argsort(rng.random((m, n, drawers)), axis=2)[..., :k + q]  # [M, N, K+Q]

        def shuffled(part: slice, count: int) -> Tuple[np.ndarray, np.ndarray]:
            order = np.argsort(rng.random((m, n * count)), axis=1)  # slot -> label·count + j
            labels = (order // count).astype(np.int32)  # [M, N·count]
            rows = picks[:, :, part].reshape(m, n * count)
            x = self.images[np.take_along_axis(chosen, labels, axis=1),
                            np.take_along_axis(rows, order, axis=1)]  # [M, N·count, H, W, ch]
            return self.normalization(x), labels

        return Task(shuffled(slice(0, k), k), shuffled(slice(k, k + q), q))


def batches(sampler: EpisodeSampler, start: int = 0) -> Iterator[Task]:
    """sampler.batch(start), sampler.batch(start + 1), ... without end."""
    sampler.check()
    return map(sampler.batch, itertools.count(start))


class Prefetcher:
    """Iterator over sampler.batch(start), sampler.batch(start + 1), ..., computed ahead by a
    background thread holding up to ``buffer`` batches.

    ``position`` is the step of the next batch it hands out: save it with a checkpoint and resume
    with ``Prefetcher(sampler, start=position)``. Close it (or use it as a context manager).
    """

    def __init__(self, sampler: EpisodeSampler, start: int = 0, buffer: int = 2):
        sampler.check()
        self.position = start
        self._queue: queue.Queue = queue.Queue(maxsize=buffer)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(sampler, start), daemon=True)
        self._thread.start()

    def _produce(self, sampler: EpisodeSampler, step: int) -> None:
        while not self._stop.is_set():
            try:
                item = sampler.batch(step)
            except Exception as e:  # handed to the consumer, raised by __next__
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, Exception):
                return
            step += 1

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self) -> Task:
        if self._stop.is_set():
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, Exception):
            self.close()
            raise item
        self.position += 1
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
