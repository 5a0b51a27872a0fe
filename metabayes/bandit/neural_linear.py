"""NeuralLinear (Riquelme, Tucker & Snoek, 2018) on the wheel bandit: an ``ArmRewardMLP``
retrained on the history every ``retrain_every`` pulls; Bayesian linear regression per arm on
its last hidden layer with a Normal-inverse-gamma prior; Thompson sampling. An agent with the
protocol of ``metabayes.bandit.agents`` (``init``, ``act``, ``update``; played by ``play``)."""
import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metabayes.bandit.agents import History, empty_history, record
from metabayes.bandit.episodes import ArmRewardMLP
from metabayes.bandit.wheel import CONTEXT_DIM, INPUT_DIM, NUM_ARMS
from metabayes.posterior import PyTree


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
