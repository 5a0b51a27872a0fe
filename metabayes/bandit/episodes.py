"""ABML's wheel-bandit meta-learning (Ravi & Beatson, ICLR 2019): the meta-training episodes
and the network whose weights are φ."""
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from metabayes.bandit.wheel import (CONTEXT_DIM, NUM_ARMS, encode, sample_contexts,
                                    sample_rewards)
from metabayes.layers import Dense
from metabayes.models import activation_by_name
from metabayes.tasks import Task


def sample_episodes(key: jax.Array, num_problems: int, num_support: int = 512,
                    num_query: int = 50, min_support: Optional[int] = None
                    ) -> Tuple[Task, jax.Array]:
    """A meta-batch of wheel problems, δ ~ U(0, 1) each, pulled by uniformly random arms.

    Returns a Task with inputs [M, N, 7] (``encode``) and rewards of the pulled arms [M, N, 1],
    N = ``num_support`` / ``num_query``, and the problems' δ [M]. With ``min_support`` each
    problem keeps a uniform number in [min_support, num_support] of its support pulls and pads
    the rest with empty (all-zero) rows, as a bandit's history is padded while it grows.
    """
    def problem(problem_key):
        delta_key, context_key, arm_key, reward_key, keep_key = jax.random.split(problem_key, 5)
        delta = jax.random.uniform(delta_key)
        total = num_support + num_query
        contexts = sample_contexts(context_key, total)
        arms = jax.random.randint(arm_key, (total,), 0, NUM_ARMS)
        rewards = jnp.take_along_axis(sample_rewards(reward_key, contexts, delta),
                                      arms[:, None], axis=1)
        inputs = encode(contexts, arms)
        if min_support is not None:
            kept = jax.random.randint(keep_key, (), min_support, num_support + 1)
            mask = (jnp.arange(total) < kept) | (jnp.arange(total) >= num_support)
            inputs, rewards = inputs * mask[:, None], rewards * mask[:, None]
        split = lambda a: (a[:num_support], a[num_support:])
        (s_in, q_in), (s_out, q_out) = split(inputs), split(rewards)
        return Task((s_in, s_out), (q_in, q_out)), delta
    return jax.vmap(problem)(jax.random.split(key, num_problems))


class ArmRewardMLP(nn.Module):
    """An MLP from a context to the 5 arms' expected rewards; its params are φ.

    ``__call__`` takes encoded pulls [B, 7] and returns the pulled arm's output [B, 1] (the
    Gaussian likelihood sees only that arm's reward). An all-zero row (no arm) outputs exactly
    0, so with target 0 it adds a constant to the log-likelihood and nothing to any gradient:
    padded history slots are masked out without any mask argument.
    ``arm_rewards`` (contexts [B, 2] -> [B, 5]) is the net used for acting; ``features``
    (-> [B, hidden[-1]]) its last hidden layer (NeuralLinear's basis).
    """

    hidden: Sequence[int] = (100, 100)
    activation: str = "relu"

    def setup(self):
        self.layers = [Dense(width) for width in self.hidden]
        self.head = Dense(NUM_ARMS)

    def features(self, contexts: jax.Array) -> jax.Array:
        act = activation_by_name(self.activation)
        for layer in self.layers:
            contexts = act(layer(contexts))
        return contexts

    def arm_rewards(self, contexts: jax.Array) -> jax.Array:
        return self.head(self.features(contexts))

    def __call__(self, inputs: jax.Array) -> jax.Array:
        rewards = self.arm_rewards(inputs[..., :CONTEXT_DIM])
        return jnp.sum(rewards * inputs[..., CONTEXT_DIM:], axis=-1, keepdims=True)
