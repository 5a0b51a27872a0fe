"""Agents that play the wheel bandit online, and their regret (``metabayes.bandit.wheel``).

Every agent is a frozen dataclass (static, hashable) with a pytree state and two pure methods,
``act(state, context [2], key) -> arm`` and ``update(state, context, arm, reward, key) -> state``;
``play`` runs one of them for n steps inside ``lax.scan``, jitted once per agent.

- ``UniformAgent``: a random arm. ``OracleAgent``: the optimal arm (zero regret).
- ``MetaAgent``: a MetaLearner's amortised posterior q(φ; λ(history)), re-adapted from θ every
  ``readapt_every`` pulls on the last ``max_history`` pulls, acting by Thompson sampling (one
  φ ~ q per decision; ABML) or greedily on the mean network (MAML).
- ``NeuralLinear`` (``metabayes.bandit.neural_linear``) follows the same protocol.
"""
import dataclasses
import functools
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp

from metabayes.algorithms import MetaLearner, MetaParams
from metabayes.bandit.wheel import (INPUT_DIM, NUM_ARMS, encode, mean_rewards, optimal_arms,
                                    sample_contexts, sample_rewards)
from metabayes.posterior import MeanFieldGaussian, PyTree

POLICIES = ("thompson", "greedy")


def normalised_regret(regret, uniform_regret):
    """Cumulative regret in percent of the uniform agent's: 100 · regret / uniform_regret."""
    return 100.0 * regret / uniform_regret


@dataclasses.dataclass(frozen=True)
class UniformAgent:
    """Pulls an arm uniformly at random; stateless."""

    def init(self) -> Tuple[()]:
        return ()

    def act(self, state, context, key):
        return jax.random.randint(key, (), 0, NUM_ARMS)

    def update(self, state, context, arm, reward, key):
        return state


@dataclasses.dataclass(frozen=True)
class OracleAgent:
    """Pulls the optimal arm; its state is the problem's δ."""

    def init(self, delta) -> jax.Array:
        return jnp.asarray(delta, jnp.float32)

    def act(self, state, context, key):
        return optimal_arms(context[None], state)[0]

    def update(self, state, context, arm, reward, key):
        return state


class History(NamedTuple):
    """The last ``capacity`` pulls as encoded inputs [H, 7] and rewards [H, 1] in a ring buffer;
    ``count`` pulls so far. Empty slots are all-zero rows, masked out by ``ArmRewardMLP``."""

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


def arm_rewards(model, params: PyTree, contexts: jax.Array) -> jax.Array:
    """The network's expected rewards of every arm: contexts [B, 2] -> [B, 5]."""
    return model.apply({"params": params}, contexts, method="arm_rewards")


class MetaAgentState(NamedTuple):
    params: MetaParams
    posterior: MeanFieldGaussian
    history: History


@dataclasses.dataclass(frozen=True)
class MetaAgent:
    """Acts with q(φ; λ(history)), λ = ``learner.adapt`` from θ = E_q(θ)[θ] on the history.

    Re-adapting after every ``readapt_every``-th pull costs K inner steps on ``max_history``
    pulls (padded slots included), whatever the history's length; between re-adaptations the
    agent keeps acting with the last λ (before the first, with p(φ | θ) itself).
    """

    learner: MetaLearner
    policy: str = "thompson"
    readapt_every: int = 1
    max_history: int = 512

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"`policy` must be one of {POLICIES}, got {self.policy!r}")
        for name in ("readapt_every", "max_history"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, "
                                 f"got {getattr(self, name)!r}")

    def init(self, params: MetaParams) -> MetaAgentState:
        return MetaAgentState(params, params.q_theta.mean, empty_history(self.max_history))

    def act(self, state: MetaAgentState, context, key):
        weights = (state.posterior.sample(key) if self.policy == "thompson"
                   else state.posterior.mean)
        return jnp.argmax(arm_rewards(self.learner.model, weights, context[None])[0])

    def update(self, state: MetaAgentState, context, arm, reward, key) -> MetaAgentState:
        history = record(state.history, context, arm, reward)
        posterior = jax.lax.cond(
            history.count % self.readapt_every == 0,
            lambda: self.learner.adapt(state.params, state.params.q_theta.mean,
                                       (history.inputs, history.targets), key),
            lambda: state.posterior)
        return MetaAgentState(state.params, posterior, history)


@functools.partial(jax.jit, static_argnames=("agent", "num_steps"))
def play(agent, state, key: jax.Array, delta, num_steps: int):
    """``agent`` plays ``num_steps`` wheel-bandit rounds at δ: (arms [n], regrets [n]).

    The contexts and rewards come from ``key`` alone, so every agent played with the same key
    meets the same problem. The regret of a round is the optimal arm's expected reward minus
    the pulled arm's (cumulative regret: ``jnp.cumsum``).
    """
    context_key, reward_key, agent_key = jax.random.split(key, 3)
    contexts = sample_contexts(context_key, num_steps)
    rewards = sample_rewards(reward_key, contexts, delta)
    means = mean_rewards(contexts, delta)

    def round_(state, inputs):
        context, reward, mean, round_key = inputs
        act_key, update_key = jax.random.split(round_key)
        arm = agent.act(state, context, act_key)
        state = agent.update(state, context, arm, reward[arm], update_key)
        return state, (arm, jnp.max(mean) - mean[arm])

    _, (arms, regrets) = jax.lax.scan(round_, state, (contexts, rewards, means,
                                                      jax.random.split(agent_key, num_steps)))
    return arms, regrets
