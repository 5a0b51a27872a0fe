"""ABML's wheel-bandit meta-learning (Ravi & Beatson, ICLR 2019): the meta-training episodes
and the network whose weights are φ."""
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from metabayes.bandit.history import ArmReservoir, subsample_pulls
from metabayes.bandit.wheel import (CONTEXT_DIM, NUM_ARMS, encode, optimal_arms,
                                    sample_contexts, sample_rewards)
from metabayes.layers import Dense
from metabayes.models import activation_by_name
from metabayes.tasks import Task


def sample_episodes(key: jax.Array, num_problems: int, per_arm: int = 102, num_query: int = 50,
                    max_pulls: int = 80_000, pool: int = 2_048) -> Tuple[Task, jax.Array]:
    """A meta-batch of wheel problems whose support sets look like an agent's at play.

    Each problem draws δ ~ U(0, 1), an exploration rate ε ~ U(0, 1) and a history length
    T = ⌊exp(U · log(max_pulls + 1))⌋ (log-uniform in [1, max_pulls]). Its pulls choose a
    uniformly random arm with probability ε and the optimal arm otherwise (greedy pulls of a
    reference policy that plays well, as the agent's own do once it has learned); the support
    set is the ``ArmReservoir(per_arm)`` the agent would hold after T such pulls
    (``subsample_pulls`` of ``pool`` i.i.d. pulls), weighted as in ``metabayes.bandit.history``.
    The ``num_query`` query pulls are of uniformly random arms at fresh contexts, weight 1: the
    agent needs every arm's reward.

    Returns a Task with support (inputs [M, 5 · per_arm, 7], targets [M, 5 · per_arm, 1]) and
    query ([M, num_query, 7], [M, num_query, 1]), and the problems' δ [M].
    """
    def problem(problem_key):
        (delta_key, epsilon_key, length_key, context_key, explore_key, arm_key, reward_key,
         query_key) = jax.random.split(problem_key, 8)
        delta, epsilon = jax.random.uniform(delta_key), jax.random.uniform(epsilon_key)
        length = jnp.floor(jnp.exp(jax.random.uniform(length_key) * jnp.log(max_pulls + 1.0)))
        contexts = sample_contexts(context_key, pool)
        arms = jnp.where(jax.random.uniform(explore_key, (pool,)) < epsilon,
                         jax.random.randint(arm_key, (pool,), 0, NUM_ARMS),
                         optimal_arms(contexts, delta))
        rewards = pulled_rewards(reward_key, contexts, arms, delta)
        support = ArmReservoir(per_arm).support(
            subsample_pulls(contexts, arms, rewards, length, per_arm))
        query_contexts_key, query_arms_key, query_rewards_key = jax.random.split(query_key, 3)
        query_contexts = sample_contexts(query_contexts_key, num_query)
        query_arms = jax.random.randint(query_arms_key, (num_query,), 0, NUM_ARMS)
        query_rewards = pulled_rewards(query_rewards_key, query_contexts, query_arms, delta)
        query = (encode(query_contexts, query_arms), query_rewards[:, None])
        return Task(support, query), delta
    return jax.vmap(problem)(jax.random.split(key, num_problems))


def pulled_rewards(key: jax.Array, contexts: jax.Array, arms: jax.Array, delta) -> jax.Array:
    """The rewards of the pulled arms: contexts [P, 2], arms [P] -> [P]."""
    return jnp.take_along_axis(sample_rewards(key, contexts, delta), arms[:, None], axis=1)[:, 0]


class ArmRewardMLP(nn.Module):
    """An MLP from a context to the 5 arms' expected rewards; its params are φ.

    ``__call__`` takes encoded pulls [B, 7] and returns the pulled arm's output [B, 1] (the
    Gaussian likelihood sees only that arm's reward): Σ_a f_a(x) · input_a, so a slot whose
    one-hot is scaled by √w (and its target too) counts w times in the Gaussian log-likelihood,
    and an all-zero row (w = 0) adds a constant and nothing to any gradient: padded and
    weighted slots (``metabayes.bandit.history``) need no mask argument.
    ``arm_rewards`` (contexts [B, 2] -> [B, 5]) is the net used for acting; ``features``
    (-> [B, hidden[-1]]) its last hidden layer (NeuralLinear's basis).
    """

    hidden: Sequence[int] = (100, 100)
    activation: str = "relu"
    init_scale: Optional[float] = None   # None: LeCun normal; s: weights U(-s, s) (Riquelme's)

    def setup(self):
        init = ({} if self.init_scale is None else
                {"kernel_init": lambda key, shape, dtype=jnp.float32: jax.random.uniform(
                    key, shape, dtype, -self.init_scale, self.init_scale)})
        self.layers = [Dense(width, **init) for width in self.hidden]
        self.head = Dense(NUM_ARMS, **init)

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
