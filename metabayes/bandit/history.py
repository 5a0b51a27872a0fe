"""What a wheel-bandit agent keeps of its pulls, in fixed-size arrays, and the support sets built
from it.

A support set is (inputs [R, 7], targets [R, 1]) in the encoding of ``wheel.encode``, with one
extension: a slot that stands for w pulls has √w in place of its one-hot 1 and √w·reward as its
target. ``ArmRewardMLP`` outputs √w·f_a(x) for it, so its Gaussian log-likelihood counts w times
(an empty slot, w = 0, not at all) and ``support_pulls`` (the sum of the squared one-hots) is the
number of pulls the set stands for.

Memories (frozen dataclasses with ``init()``, ``record(memory, context, arm, reward, key)`` and
``support(memory)``, so an agent is composed with one):

- ``ArmReservoir(per_arm)``: for each arm a uniform sample of ``per_arm`` of its pulls
  (Vitter's algorithm R, one reservoir per arm), each slot weighted N_a / kept_a. Every arm
  pulled so far is present, and the weighted log-likelihood is an unbiased estimate of the
  whole history's, at a cost of 5 · per_arm slots once the history is that long.
- ``RecentWindow(capacity)``: the last ``capacity`` pulls, each of weight 1 (older pulls are
  forgotten).

A memory fills its slots in order, so after t pulls ``support(memory, rows)`` with a static
``rows`` >= t is the same support set without its empty slots, in fewer rows (up to the
rounding of a shorter sum). ``support_sizes()`` lists the row counts an agent chooses from
with ``jax.lax.switch`` on the pull counter (``first_size_at_least``); the counter is the same
in every trial, so the switch stays a real branch when trials are vmapped and a short history
costs its own size, not the memory's.

``History`` (every pull, in order; NeuralLinear's memory) is the window's ring buffer.
"""
import dataclasses
from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from metabayes.bandit.wheel import CONTEXT_DIM, INPUT_DIM, NUM_ARMS, encode


def support_pulls(support) -> jax.Array:
    """The number of pulls a support set (inputs [R, 7], targets) stands for: Σ of its squared
    one-hot entries."""
    return jnp.sum(jnp.square(support[0][..., CONTEXT_DIM:]))


def weighted_support(contexts: jax.Array, arms: jax.Array, rewards: jax.Array,
                     weights: jax.Array):
    """Slots (contexts [R, 2], arms [R], rewards [R], weights [R] >= 0) as a support set."""
    root = jnp.sqrt(weights)[:, None]
    return encode(contexts, arms).at[:, CONTEXT_DIM:].multiply(root), rewards[:, None] * root


def support_sizes(full: int, smallest: int) -> Tuple[int, ...]:
    """Row counts smallest · 4^k below ``full``, then ``full``: (16, 64, 256, 1024, 2048) for
    2,048 from 16; (full,) when smallest >= full."""
    sizes = []
    while smallest < full:
        sizes.append(smallest)
        smallest *= 4
    return (*sizes, full)


def first_size_at_least(sizes: Tuple[int, ...], pulls) -> jax.Array:
    """The index of the first of the increasing ``sizes`` >= ``pulls``, the last if none."""
    return jnp.minimum(jnp.searchsorted(jnp.asarray(sizes), pulls), len(sizes) - 1)


class History(NamedTuple):
    """The last ``capacity`` pulls as encoded inputs [H, 7] and rewards [H, 1] in a ring buffer;
    ``count`` pulls so far. Empty slots are all-zero rows (weight 0)."""

    inputs: jax.Array
    targets: jax.Array
    count: jax.Array


def empty_history(capacity: int) -> History:
    return History(jnp.zeros((capacity, INPUT_DIM)), jnp.zeros((capacity, 1)),
                   jnp.zeros((), jnp.int32))


def record(history: History, context, arm, reward) -> History:
    """The history with one more pull, overwriting the oldest once full."""
    index = history.count % history.inputs.shape[0]
    return History(history.inputs.at[index].set(encode(context[None], arm[None])[0]),
                   history.targets.at[index, 0].set(reward), history.count + 1)


@dataclasses.dataclass(frozen=True)
class RecentWindow:
    """The last ``capacity`` pulls, weight 1 each; ``smallest``: the smallest of
    ``support_sizes`` (module docstring)."""

    capacity: int = 512
    smallest: int = 16

    def init(self) -> History:
        return empty_history(self.capacity)

    def record(self, memory: History, context, arm, reward, key) -> History:
        return record(memory, context, arm, reward)

    def support_sizes(self) -> Tuple[int, ...]:
        return support_sizes(self.capacity, self.smallest)

    def support(self, memory: History, rows: Optional[int] = None):
        """[rows or capacity] slots; ``rows`` >= the pulls so far (module docstring)."""
        return memory.inputs[:rows], memory.targets[:rows]


class Reservoirs(NamedTuple):
    """Per arm: ``per_arm`` slots of contexts [A, R, 2] and rewards [A, R], the number of
    filled slots ``kept`` [A] and the number of pulls ``counts`` [A] they stand for."""

    contexts: jax.Array
    rewards: jax.Array
    kept: jax.Array
    counts: jax.Array


@dataclasses.dataclass(frozen=True)
class ArmReservoir:
    """A uniform sample of each arm's pulls, ``per_arm`` slots per arm; ``smallest``: the
    smallest of ``support_sizes`` per arm (module docstring)."""

    per_arm: int = 102
    smallest: int = 16

    def init(self) -> Reservoirs:
        return Reservoirs(jnp.zeros((NUM_ARMS, self.per_arm, CONTEXT_DIM)),
                          jnp.zeros((NUM_ARMS, self.per_arm)), jnp.zeros(NUM_ARMS, jnp.int32),
                          jnp.zeros(NUM_ARMS))

    def record(self, memory: Reservoirs, context, arm, reward, key) -> Reservoirs:
        """Algorithm R: the arm's c-th pull fills slot c while c <= per_arm, else replaces a
        uniformly chosen slot with probability per_arm / c."""
        count = memory.counts[arm] + 1
        draw = jax.random.randint(key, (), 0, count.astype(jnp.int32))
        slot = jnp.where(count <= self.per_arm, memory.kept[arm], draw)
        keep = slot < self.per_arm
        slot = jnp.minimum(slot, self.per_arm - 1)
        return Reservoirs(
            memory.contexts.at[arm, slot].set(jnp.where(keep, context, memory.contexts[arm, slot])),
            memory.rewards.at[arm, slot].set(jnp.where(keep, reward, memory.rewards[arm, slot])),
            memory.kept.at[arm].set(jnp.minimum(memory.kept[arm] + 1, self.per_arm)),
            memory.counts.at[arm].set(count))

    def support_sizes(self) -> Tuple[int, ...]:
        return support_sizes(self.per_arm, self.smallest)

    def support(self, memory: Reservoirs, rows: Optional[int] = None):
        """[5 · R] slots, R = ``rows`` or per_arm (>= the pulls so far: module docstring), arm
        a's filled ones weighted counts_a / kept_a."""
        rows = rows or self.per_arm
        filled = jnp.arange(rows) < memory.kept[:, None]                           # [A, R]
        weight = memory.counts / jnp.maximum(memory.kept, 1)                       # [A]
        arms = jnp.broadcast_to(jnp.arange(NUM_ARMS)[:, None], filled.shape)
        return weighted_support(memory.contexts[:, :rows].reshape(-1, CONTEXT_DIM),
                                arms.reshape(-1), memory.rewards[:, :rows].reshape(-1),
                                (filled * weight[:, None]).reshape(-1))


def subsample_pulls(contexts: jax.Array, arms: jax.Array, rewards: jax.Array, length,
                    per_arm: int) -> Reservoirs:
    """The reservoirs an agent would hold after ``length`` pulls like these i.i.d. ones
    (contexts [P, 2], arms [P], rewards [P]): each arm keeps its first ``per_arm`` pulls among
    the first min(length, P), and stands for length / min(length, P) times its count there."""
    seen = jnp.minimum(length, arms.shape[0])
    one_hot = jax.nn.one_hot(arms, NUM_ARMS) * (jnp.arange(arms.shape[0]) < seen)[:, None]
    rank = jnp.sum((jnp.cumsum(one_hot, axis=0) - 1) * one_hot, axis=1).astype(jnp.int32)
    kept_row = (one_hot.sum(1) > 0) & (rank < per_arm)
    slot = jnp.where(kept_row, arms * per_arm + rank, NUM_ARMS * per_arm)          # off the end
    scatter = lambda values, shape: (jnp.zeros((NUM_ARMS * per_arm,) + shape)
                                     .at[slot].set(values, mode="drop")
                                     .reshape((NUM_ARMS, per_arm) + shape))
    counts = one_hot.sum(0)
    return Reservoirs(scatter(contexts, (CONTEXT_DIM,)), scatter(rewards, ()),
                      jnp.minimum(counts, per_arm).astype(jnp.int32), counts * length / seen)
