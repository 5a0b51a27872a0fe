"""Synthetic few-shot tasks shaped like Omniglot: N-way K-shot support, Q queries per class.

A meta-batch is four tensors, ``M`` tasks each:

    support images [M, N·K, 1, 28, 28], support labels [M, N·K],
    query images   [M, N·Q, 1, 28, 28], query labels   [M, N·Q],

images uniform in [0, 1), labels 0..N-1, each repeated K (or Q) times in class order. Random
images cost what real ones do, and nothing is downloaded: for timing only.
"""
from typing import NamedTuple

from benchmarks.peers import require_torch

require_torch()
import torch  # noqa: E402


class MetaBatch(NamedTuple):
    support_x: "torch.Tensor"   # [M, N·K, 1, 28, 28]
    support_y: "torch.Tensor"   # [M, N·K], int64
    query_x: "torch.Tensor"     # [M, N·Q, 1, 28, 28]
    query_y: "torch.Tensor"     # [M, N·Q], int64

    @property
    def tasks(self) -> int:
        return self.support_x.shape[0]

    def task(self, i: int) -> "MetaBatch":
        """Task ``i`` alone: the same four tensors without their leading M axis."""
        return MetaBatch(*(t[i] for t in self))


def labels(meta_batch: int, ways: int, per_class: int) -> torch.Tensor:
    """[M, N·per_class]: 0 … 0, 1 … 1, …, N-1 … N-1 in every task."""
    return torch.arange(ways).repeat_interleave(per_class).expand(meta_batch, -1).contiguous()


def random_meta_batch(meta_batch: int, ways: int, shots: int, query: int,
                      generator: torch.Generator = None, size: int = 28,
                      dtype: torch.dtype = None) -> MetaBatch:
    """A meta-batch of uniform-noise images (shapes in the module docstring)."""
    images = lambda n: torch.rand(meta_batch, ways * n, 1, size, size, generator=generator,
                                  dtype=dtype)
    return MetaBatch(images(shots), labels(meta_batch, ways, shots),
                     images(query), labels(meta_batch, ways, query))
