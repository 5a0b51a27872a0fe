"""NeuralLinear (Riquelme, Tucker & Snoek, 2018) on the wheel bandit, as in their reference code
(tensorflow/models research/deep_contextual_bandits, ``NeuralLinearPosteriorSampling``): an
``ArmRewardMLP`` retrained on the whole history every ``retrain_every`` pulls; Bayesian linear
regression per arm on its last hidden layer with a Normal-inverse-gamma prior, on the whole
history's features; Thompson sampling. An agent with the protocol of
``metabayes.bandit.agents`` (``init``, ``act``, ``update``; played by ``play``)."""
import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metabayes.bandit.history import History, empty_history, record
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
    """NeuralLinear over an ``ArmRewardMLP``'s last hidden layer, with the reference code's
    settings as defaults (its ``hparams_nlinear``):

    - the net: one hidden layer of 50 ReLU units (``model``), weights U(−0.3, 0.3), biases 0;
    - every ``retrain_every`` = 50 pulls, ``train_steps`` = 100 RMSProp steps (decay 0.9,
      ε = 1e-10, mean-square accumulator starting at 1, as TF1's) on minibatches of
      ``batch_size`` = 512 pulls drawn with replacement from the whole history, squared error on
      the pulled arm, gradients clipped to global norm 5, step size 0.1 / (1 + 0.5 k) at the
      k-th step of each retraining (``reset_lr``); the net continues from its last weights;
    - the first ``initial_pulls`` = 2 pulls of each arm are round robin;
    - per arm, β | σ² ~ N(0, σ²/λ I), σ² ~ InvGamma(a0, b0), λ = 0.25, a0 = b0 = 6, updated
      after every pull on the whole history's features (``blr_posterior``).

    The reference recomputes each arm's regression from all its features after every pull. The
    features change only when the net is retrained, so here the statistics ZᵀZ, Zᵀy, yᵀy, n
    are recomputed from the whole history at each retraining (in chunks of ``stats_chunk``
    rows, up to the pulls so far) and updated by one row in between: the same posterior, at
    O(n · d²) per retraining instead of per pull.
    """

    model: ArmRewardMLP
    capacity: int
    retrain_every: int = 50
    train_steps: int = 100
    batch_size: int = 512
    learning_rate: float = 0.1
    lr_decay: float = 0.5
    max_grad_norm: float = 5.0
    initial_pulls: int = 2
    prior_precision: float = 0.25
    a0: float = 6.0
    b0: float = 6.0
    stats_chunk: int = 4_096

    @functools.cached_property
    def optimizer(self) -> optax.GradientTransformation:
        """Clipping and RMSProp's scaling; the step size is applied per step (``_retrain``)."""
        return optax.chain(optax.clip_by_global_norm(self.max_grad_norm),
                           optax.scale_by_rms(decay=0.9, eps=1e-10, initial_scale=1.0))

    @property
    def chunk(self) -> int:
        return min(self.stats_chunk, self.capacity)

    def init(self, key: jax.Array) -> NeuralLinearState:
        params = self.model.init(key, jnp.zeros((1, INPUT_DIM)))["params"]
        capacity = -(-self.capacity // self.chunk) * self.chunk      # whole chunks
        return NeuralLinearState(params, self.optimizer.init(params), empty_history(capacity),
                                 self.empty_stats())

    def features(self, params: PyTree, contexts: jax.Array) -> jax.Array:
        return self.model.apply({"params": params}, contexts, method="features")

    def act(self, state: NeuralLinearState, context, key):
        weights = sample_nig(key, blr_posterior(state.stats, self.prior_precision, self.a0,
                                                self.b0))
        thompson = jnp.argmax(weights @ self.features(state.params, context[None])[0])
        pulls = state.history.count
        return jnp.where(pulls < self.initial_pulls * NUM_ARMS, pulls % NUM_ARMS, thompson)

    def _retrain(self, params, opt_state, history: History, step, key):
        def loss(p, batch):
            inputs, targets = batch
            return jnp.mean(jnp.square(self.model.apply({"params": p}, inputs) - targets))

        def train_step(carry, inputs):
            p, s = carry
            k, step_key = inputs
            index = jax.random.randint(step_key, (self.batch_size,), 0, step)
            grads = jax.grad(loss)(p, (history.inputs[index], history.targets[index]))
            updates, s = self.optimizer.update(grads, s, p)
            rate = self.learning_rate / (1.0 + self.lr_decay * k)
            return (optax.apply_updates(p, jax.tree_util.tree_map(lambda u: -rate * u, updates)),
                    s), None

        (params, opt_state), _ = jax.lax.scan(
            train_step, (params, opt_state),
            (jnp.arange(self.train_steps), jax.random.split(key, self.train_steps)))
        return params, opt_state, self.history_stats(params, history, step)

    def history_stats(self, params, history: History, step) -> LinearStats:
        """The statistics of the first ``step`` pulls of ``history`` under ``params``' features,
        summed over chunks of ``chunk`` rows (empty rows add nothing)."""
        def add_chunk(i, stats):
            rows = lambda a: jax.lax.dynamic_slice_in_dim(a, i * self.chunk, self.chunk)
            inputs, targets = rows(history.inputs), rows(history.targets)
            new = linear_stats(self.features(params, inputs[:, :CONTEXT_DIM]),
                               inputs[:, CONTEXT_DIM:], targets[:, 0])
            return jax.tree_util.tree_map(jnp.add, stats, new)

        return jax.lax.fori_loop(0, (step + self.chunk - 1) // self.chunk, add_chunk,
                                 self.empty_stats())

    def empty_stats(self) -> LinearStats:
        dim = self.model.hidden[-1]
        return LinearStats(jnp.zeros((NUM_ARMS, dim, dim)), jnp.zeros((NUM_ARMS, dim)),
                           jnp.zeros(NUM_ARMS), jnp.zeros(NUM_ARMS))

    def update(self, state: NeuralLinearState, step, context, arm, reward,
               key) -> NeuralLinearState:
        history = record(state.history, context, arm, reward)

        def incremental():
            new = linear_stats(self.features(state.params, context[None]),
                               jax.nn.one_hot(arm[None], NUM_ARMS), reward[None])
            return state.params, state.opt_state, jax.tree_util.tree_map(jnp.add, state.stats, new)

        params, opt_state, stats = jax.lax.cond(
            step % self.retrain_every == 0,
            lambda: self._retrain(state.params, state.opt_state, history, step, key),
            incremental)
        return NeuralLinearState(params, opt_state, history, stats)
