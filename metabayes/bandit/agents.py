"""Agents that play the wheel bandit online, and their regret (``metabayes.bandit.wheel``).

Every agent is a frozen dataclass (static, hashable) with a pytree state and two pure methods,
``act(state, context [2], key) -> arm`` and
``update(state, step, context, arm, reward, key) -> state``, where ``step`` is the number of
pulls so far (1 after the first). ``step`` is the same in every trial, so a schedule that
depends on it stays a ``lax.cond`` (work skipped, not masked) when trials are vmapped.
``play`` runs one agent for n pulls inside ``lax.scan``; ``play_trials`` vmaps it over trials
and δ values, jitted once per agent.

- ``UniformAgent``: a random arm. ``OracleAgent``: the optimal arm (zero regret).
- ``MetaAgent``: a MetaLearner's amortised posterior q(φ; λ(support)), re-adapted from θ on a
  support set built from its memory (``metabayes.bandit.history``) on a schedule that thins out
  with time (``readapt_now``), acting by Thompson sampling (one φ ~ q per decision; ABML) or
  greedily on the mean network (MAML).
- ``HandOver``: one ``MetaAgent``'s re-adaptations up to a pull, another's after it.
- ``NeuralLinear`` (``metabayes.bandit.neural_linear``) follows the same protocol.
"""
import dataclasses
import functools
from typing import NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp

from metabayes.algorithms import MetaLearner, MetaParams
from metabayes.bandit.history import ArmReservoir, RecentWindow, first_size_at_least
from metabayes.bandit.wheel import (NUM_ARMS, mean_rewards, optimal_arms, sample_contexts,
                                    sample_rewards)
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

    def update(self, state, step, context, arm, reward, key):
        return state


@dataclasses.dataclass(frozen=True)
class OracleAgent:
    """Pulls the optimal arm; its state is the problem's δ."""

    def init(self, delta) -> jax.Array:
        return jnp.asarray(delta, jnp.float32)

    def act(self, state, context, key):
        return optimal_arms(context[None], state)[0]

    def update(self, state, step, context, arm, reward, key):
        return state


def readapt_now(step, every: int, growth: float) -> jax.Array:
    """Whether to re-adapt after pull ``step`` (>= 1): every ``interval(step)`` pulls, with

        interval(t) = max(every, 2^⌊log₂(growth · t)⌋)

    so every ``every`` pulls while growth · t < 2, then at intervals that double as t doubles:
    about 1/(growth · ln 2) re-adaptations per doubling of t (growth = 0: a fixed interval).
    """
    interval = jnp.maximum(every, jnp.exp2(jnp.floor(jnp.log2(jnp.maximum(growth * step, 1.0)))))
    return step % interval.astype(jnp.int32) == 0


def arm_rewards(model, params: PyTree, contexts: jax.Array) -> jax.Array:
    """The network's expected rewards of every arm: contexts [B, 2] -> [B, 5]."""
    return model.apply({"params": params}, contexts, method="arm_rewards")


class MetaAgentState(NamedTuple):
    params: MetaParams
    posterior: MeanFieldGaussian
    memory: PyTree
    task_networks: Optional[PyTree] = None   # the head's prior in function space, if any


@dataclasses.dataclass(frozen=True)
class MetaAgent:
    """Acts with q(φ; λ(S)), λ = ``learner.adapt`` from θ = E_q(θ)[θ] on the support set S of
    its ``memory`` (``ArmReservoir``: the whole history, subsampled; ``RecentWindow``: the last
    pulls). It re-adapts after pull t when ``readapt_now(t, readapt_every, readapt_growth)``, and
    keeps acting with the last λ in between (before the first, with p(φ | θ) itself). A
    re-adaptation costs K inner steps on the first of the memory's ``support_sizes`` that holds
    t pulls (a ``lax.switch`` on t), so at most its full size however long the history.

    ``warm_start``: each re-adaptation takes its K steps from the last λ instead of from θ
    (θ stays the prior of the KL term). λ is then no longer the amortised q(φ; λ(S)) of
    meta-training but K · (re-adaptations so far) steps of stochastic VI on the changing
    history, which keeps moving towards the optimum of ℓ(λ, θ) as pulls accumulate.
    """

    learner: MetaLearner
    policy: str = "thompson"
    memory: Union[ArmReservoir, RecentWindow] = ArmReservoir()
    readapt_every: int = 1
    readapt_growth: float = 0.0
    warm_start: bool = False

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"`policy` must be one of {POLICIES}, got {self.policy!r}")
        if not isinstance(self.readapt_every, int) or self.readapt_every < 1:
            raise ValueError(f"`readapt_every` must be an integer >= 1, "
                             f"got {self.readapt_every!r}")

    def init(self, params: MetaParams, task_networks: Optional[PyTree] = None) -> MetaAgentState:
        """``task_networks``: ``metabayes.bandit.exact_head.task_networks``, passed to the
        learner's ``refit`` at every re-adaptation (an ``ExactHead`` with a task prior)."""
        return MetaAgentState(params, params.q_theta.mean, self.memory.init(), task_networks)

    def act(self, state: MetaAgentState, context, key):
        weights = (state.posterior.sample(key) if self.policy == "thompson"
                   else state.posterior.mean)
        return jnp.argmax(arm_rewards(self.learner.model, weights, context[None])[0])

    def update(self, state: MetaAgentState, step, context, arm, reward, key) -> MetaAgentState:
        record_key, adapt_key = jax.random.split(key)
        memory = self.memory.record(state.memory, context, arm, reward, record_key)
        sizes = self.memory.support_sizes()
        learner = (self.learner if state.task_networks is None else dataclasses.replace(
            self.learner, refit=functools.partial(self.learner.refit,
                                                  task_networks=state.task_networks)))

        def adapt_on(rows):
            def adapt():
                theta, support = state.params.q_theta.mean, self.memory.support(memory, rows)
                return learner.adapt(state.params, theta, support, adapt_key,
                                     state.posterior if self.warm_start else None)
            return adapt

        posterior = jax.lax.cond(
            readapt_now(step, self.readapt_every, self.readapt_growth),
            lambda: jax.lax.switch(first_size_at_least(sizes, step), list(map(adapt_on, sizes))),
            lambda: state.posterior)
        return MetaAgentState(state.params, posterior, memory, state.task_networks)


@dataclasses.dataclass(frozen=True)
class HandOver:
    """``first`` re-adapts after pulls 1..``at``, ``then`` after every later pull: e.g. K steps
    from θ while the history is short, then steps from the last λ that keep training the
    network on it (``metabayes.bandit.profile_steps``). Both must act alike (the same model and
    policy) on the same memory, so they share one state; ``then`` starts from the λ ``first``
    left (with ``warm_start``). The pull counter is unbatched, so the switch is a ``lax.cond``
    that runs one of the two."""

    first: MetaAgent
    then: MetaAgent
    at: int

    def __post_init__(self):
        if not (isinstance(self.at, int) and self.at >= 1):
            raise ValueError(f"HandOver needs `at` >= 1, got {self.at!r}")
        if (self.first.policy, self.first.memory, self.first.learner.model) != (
                self.then.policy, self.then.memory, self.then.learner.model):
            raise ValueError("HandOver needs two agents with the same policy, memory and model")

    def init(self, params: MetaParams, task_networks: Optional[PyTree] = None) -> MetaAgentState:
        return self.first.init(params, task_networks)

    def act(self, state: MetaAgentState, context, key):
        return self.first.act(state, context, key)

    def update(self, state: MetaAgentState, step, context, arm, reward, key) -> MetaAgentState:
        return jax.lax.cond(step <= self.at, self.first.update, self.then.update,
                            state, step, context, arm, reward, key)


def sample_problem(key: jax.Array, delta, num_steps: int):
    """The problem ``play`` meets with ``key``: contexts [n, 2], rewards [n, 5] and expected
    rewards [n, 5] at δ, and the key left to the agent."""
    context_key, reward_key, agent_key = jax.random.split(key, 3)
    contexts = sample_contexts(context_key, num_steps)
    return (contexts, sample_rewards(reward_key, contexts, delta), mean_rewards(contexts, delta),
            agent_key)


@functools.partial(jax.jit, static_argnames=("agent", "num_steps"))
def play(agent, state, key: jax.Array, delta, num_steps: int):
    """``agent`` plays ``num_steps`` wheel-bandit rounds at δ: (arms [n], regrets [n]).

    The contexts and rewards come from ``key`` alone, so every agent played with the same key
    meets the same problem. The regret of a round is the optimal arm's expected reward minus
    the pulled arm's (cumulative regret: ``jnp.cumsum``).
    """
    contexts, rewards, means, agent_key = sample_problem(key, delta, num_steps)

    def round_(state, inputs):
        step, context, reward, mean, round_key = inputs
        act_key, update_key = jax.random.split(round_key)
        arm = agent.act(state, context, act_key)
        state = agent.update(state, step, context, arm, reward[arm], update_key)
        return state, (arm, jnp.max(mean) - mean[arm])

    steps = jnp.arange(1, num_steps + 1)
    _, (arms, regrets) = jax.lax.scan(round_, state, (steps, contexts, rewards, means,
                                                      jax.random.split(agent_key, num_steps)))
    return arms, regrets


@functools.partial(jax.jit, static_argnames=("agent", "num_steps"))
def play_trials(agent, states, keys: jax.Array, deltas: jax.Array, num_steps: int):
    """``play`` vmapped over trials: states (leading axis T), keys [T], deltas [T] ->
    (arms [T, n], regrets [T, n]). The pull counter stays unbatched, so scheduled work
    (re-adaptation, retraining) runs only when scheduled."""
    return jax.vmap(lambda s, k, d: play(agent, s, k, d, num_steps))(states, keys, deltas)
