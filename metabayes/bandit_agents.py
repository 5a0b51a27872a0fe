"""Agents that play the wheel bandit online, and their regret (``metabayes.bandits``).

Every agent is a frozen dataclass (static, hashable) with a pytree state and two pure methods,
``act(state, context [2], key) -> arm`` and ``update(state, context, arm, reward, key) -> state``;
``play`` runs one of them for n steps inside ``lax.scan``, jitted once per agent.

- ``UniformAgent``: a random arm. ``OracleAgent``: the optimal arm (zero regret).
- ``MetaAgent``: a MetaLearner's amortised posterior q(φ; λ(history)), re-adapted from θ every
  ``readapt_every`` pulls on the last ``max_history`` pulls, acting by Thompson sampling (one
  φ ~ q per decision; ABML) or greedily on the mean network (MAML).
- ``NeuralLinear`` (Riquelme et al., 2018): an MLP retrained on the history every
  ``retrain_every`` pulls; Bayesian linear regression per arm on its last hidden layer with a
  Normal-inverse-gamma prior; Thompson sampling.
"""
import dataclasses
import functools
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
import optax

from metabayes.algorithms import MetaLearner, MetaParams
from metabayes.bandits import (CONTEXT_DIM, INPUT_DIM, NUM_ARMS, ArmRewardMLP, encode,
                               mean_rewards, optimal_arms, sample_contexts, sample_rewards)
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


class LinearStats(NamedTuple):
    """Per-arm sufficient statistics of y = zᵀβ + ε: ZᵀZ [A, d, d], Zᵀy [A, d], yᵀy [A], n [A]."""

    gram: jax.Array
    moment: jax.Array
    square: jax.Array
    count: jax.Array


class NormalInverseGamma(NamedTuple):
    """β | σ² ~ N(mean, σ² precision⁻¹), σ² ~ InvGamma(a, b); per arm: [A, d], [A, d, d], [A], [A]."""

    mean: jax.Array
    precision: jax.Array
    a: jax.Array
    b: jax.Array


def linear_stats(features: jax.Array, one_hot_arms: jax.Array, rewards: jax.Array) -> LinearStats:
    """Statistics of pulls: features [N, d], one-hot arms [N, A] (zero rows: none), rewards [N]."""
    return LinearStats(jnp.einsum("na,nd,ne->ade", one_hot_arms, features, features),
                       jnp.einsum("na,nd,n->ad", one_hot_arms, features, rewards),
                       jnp.einsum("na,n->a", one_hot_arms, rewards ** 2),
                       jnp.sum(one_hot_arms, axis=0))


def blr_posterior(stats: LinearStats, prior_precision: float, a0: float,
                  b0: float) -> NormalInverseGamma:
    """The conjugate posterior of every arm under β | σ² ~ N(0, σ²/λ I), σ² ~ InvGamma(a0, b0):

        Λ = ZᵀZ + λI,  μ = Λ⁻¹Zᵀy,  a = a0 + n/2,  b = b0 + (yᵀy − μᵀΛμ)/2

    (b ≥ b0 exactly; it is clipped there against float rounding).
    """
    dim = stats.gram.shape[-1]
    precision = stats.gram + prior_precision * jnp.eye(dim)
    mean = jnp.linalg.solve(precision, stats.moment[..., None])[..., 0]
    fit = jnp.einsum("ad,ad->a", mean, stats.moment)   # μᵀΛμ = μᵀZᵀy
    return NormalInverseGamma(mean, precision, a0 + stats.count / 2,
                              jnp.maximum(b0 + (stats.square - fit) / 2, b0))


def sample_nig(key: jax.Array, posterior: NormalInverseGamma) -> jax.Array:
    """One β per arm from the Normal-inverse-gamma posterior: [A, d]."""
    variance_key, weight_key = jax.random.split(key)
    variance = posterior.b / jax.random.gamma(variance_key, posterior.a)
    cholesky = jnp.linalg.cholesky(posterior.precision)          # Λ = L Lᵀ
    noise = jax.random.normal(weight_key, posterior.mean.shape)
    offsets = jax.scipy.linalg.solve_triangular(
        jnp.swapaxes(cholesky, -1, -2), noise[..., None], lower=False)[..., 0]   # ~ N(0, Λ⁻¹)
    return posterior.mean + jnp.sqrt(variance)[:, None] * offsets


class NeuralLinearState(NamedTuple):
    params: PyTree
    opt_state: optax.OptState
    history: History
    stats: LinearStats


@dataclasses.dataclass(frozen=True)
class NeuralLinear:
    """NeuralLinear (Riquelme et al., 2018) over an ``ArmRewardMLP``'s last hidden layer.

    The history holds ``capacity`` pulls (the run's length, so nothing is forgotten). Every
    ``retrain_every`` pulls the net takes ``train_steps`` Adam steps on minibatches of
    ``batch_size`` pulls from the history (squared error on the pulled arm), and the per-arm
    statistics are recomputed with the new features, O(capacity · d²); in between they are
    updated with each pull.
    """

    model: ArmRewardMLP
    capacity: int
    retrain_every: int = 50
    train_steps: int = 100
    batch_size: int = 512
    learning_rate: float = 1e-3
    prior_precision: float = 0.25
    a0: float = 6.0
    b0: float = 6.0

    @functools.cached_property
    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.learning_rate)

    def init(self, key: jax.Array) -> NeuralLinearState:
        params = self.model.init(key, jnp.zeros((1, INPUT_DIM)))["params"]
        dim = self.model.hidden[-1]
        stats = LinearStats(jnp.zeros((NUM_ARMS, dim, dim)), jnp.zeros((NUM_ARMS, dim)),
                            jnp.zeros(NUM_ARMS), jnp.zeros(NUM_ARMS))
        return NeuralLinearState(params, self.optimizer.init(params),
                                 empty_history(self.capacity), stats)

    def features(self, params: PyTree, contexts: jax.Array) -> jax.Array:
        return self.model.apply({"params": params}, contexts, method="features")

    def act(self, state: NeuralLinearState, context, key):
        weights = sample_nig(key, blr_posterior(state.stats, self.prior_precision, self.a0,
                                                self.b0))
        return jnp.argmax(weights @ self.features(state.params, context[None])[0])

    def _retrain(self, params, opt_state, history: History, key):
        def loss(p, batch):
            inputs, targets = batch
            return jnp.mean(jnp.square(self.model.apply({"params": p}, inputs) - targets))

        def step(carry, step_key):
            p, s = carry
            index = jax.random.randint(step_key, (self.batch_size,), 0,
                                       jnp.minimum(history.count, self.capacity))
            grads = jax.grad(loss)(p, (history.inputs[index], history.targets[index]))
            updates, s = self.optimizer.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        (params, opt_state), _ = jax.lax.scan(step, (params, opt_state),
                                              jax.random.split(key, self.train_steps))
        stats = linear_stats(self.features(params, history.inputs[:, :CONTEXT_DIM]),
                             history.inputs[:, CONTEXT_DIM:], history.targets[:, 0])
        return params, opt_state, stats

    def update(self, state: NeuralLinearState, context, arm, reward, key) -> NeuralLinearState:
        history = record(state.history, context, arm, reward)

        def incremental():
            new = linear_stats(self.features(state.params, context[None]),
                               jax.nn.one_hot(arm[None], NUM_ARMS), reward[None])
            return state.params, state.opt_state, jax.tree_util.tree_map(jnp.add, state.stats, new)

        params, opt_state, stats = jax.lax.cond(
            history.count % self.retrain_every == 0,
            lambda: self._retrain(state.params, state.opt_state, history, key), incremental)
        return NeuralLinearState(params, opt_state, history, stats)


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
