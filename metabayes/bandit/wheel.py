"""The wheel bandit (Riquelme, Tucker & Snoek, ICLR 2018), vectorised and jit-friendly.

Contexts X are uniform in the unit disc; k = 5 arms; the exploration parameter is δ ∈ [0, 1]:

    ‖X‖ ≤ δ:  arm 0 has mean reward 1.2, arms 1-4 mean 1.0;
    ‖X‖ > δ:  the arm of X's quadrant has mean 50, arm 0 1.2, the other three 1.0;

every reward has Gaussian noise of sd 0.01. Quadrants are half-open angular sectors, so every
point has exactly one: arm q ∈ {1, 2, 3, 4} owns the angles [(q − 1)π/2, qπ/2), i.e.
arm 1: x > 0, y ≥ 0;  arm 2: x ≤ 0, y > 0;  arm 3: x < 0, y ≤ 0;  arm 4: x ≥ 0, y < 0
(the positive x-axis is arm 1's, the positive y-axis arm 2's, and so on counter-clockwise; the
origin, always inside the disc, is given arm 1).

A pull (context, arm) is encoded as one network input [x, y, one-hot(arm)] of 7 numbers; an
all-zero row is an empty slot (see ``metabayes.bandit.episodes.ArmRewardMLP``), which is how
fixed-size histories are padded.
"""
import math

import jax
import jax.numpy as jnp

NUM_ARMS = 5
CONTEXT_DIM = 2
INPUT_DIM = CONTEXT_DIM + NUM_ARMS
SAFE_MEAN, BASE_MEAN, WHEEL_MEAN = 1.2, 1.0, 50.0
NOISE_STD = 0.01


def sample_contexts(key: jax.Array, n: int) -> jax.Array:
    """n contexts uniform in the unit disc (radius √U, angle 2πU'): [n, 2]."""
    radius_key, angle_key = jax.random.split(key)
    radius = jnp.sqrt(jax.random.uniform(radius_key, (n,)))
    angle = jax.random.uniform(angle_key, (n,), maxval=2 * math.pi)
    return jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=-1)


def quadrant_arms(contexts: jax.Array) -> jax.Array:
    """The arm (1-4) of each context's quadrant, as in the module docstring: [n] int32."""
    x, y = contexts[..., 0], contexts[..., 1]
    return jnp.where(y > 0, jnp.where(x > 0, 1, 2),
                     jnp.where(x < 0, 3, jnp.where(y < 0, 4, 1))).astype(jnp.int32)


def mean_rewards(contexts: jax.Array, delta) -> jax.Array:
    """Expected reward of every arm: contexts [n, 2], δ scalar (or [n]) -> [n, 5]."""
    inside = jnp.sqrt(jnp.sum(jnp.square(contexts), axis=-1)) <= delta
    arms = jnp.arange(NUM_ARMS)
    outside_means = jnp.where(arms == quadrant_arms(contexts)[:, None], WHEEL_MEAN,
                              jnp.where(arms == 0, SAFE_MEAN, BASE_MEAN))
    inside_means = jnp.where(arms == 0, SAFE_MEAN, BASE_MEAN)
    return jnp.where(inside[:, None], inside_means, outside_means)


def optimal_arms(contexts: jax.Array, delta) -> jax.Array:
    """The arm of highest expected reward for each context: [n] int32."""
    return jnp.argmax(mean_rewards(contexts, delta), axis=-1).astype(jnp.int32)


def uniform_regret(contexts: jax.Array, delta) -> jax.Array:
    """The expected regret of a uniformly random arm at each context: [n, 2] -> [n]."""
    means = mean_rewards(contexts, delta)
    return jnp.max(means, axis=-1) - jnp.mean(means, axis=-1)


def sample_rewards(key: jax.Array, contexts: jax.Array, delta) -> jax.Array:
    """Rewards of every arm, mean + N(0, 0.01²): [n, 5]."""
    means = mean_rewards(contexts, delta)
    return means + NOISE_STD * jax.random.normal(key, means.shape, means.dtype)


def encode(contexts: jax.Array, arms: jax.Array) -> jax.Array:
    """Pulls as network inputs [context, one-hot(arm)]: contexts [n, 2], arms [n] -> [n, 7]."""
    return jnp.concatenate([contexts, jax.nn.one_hot(arms, NUM_ARMS, dtype=contexts.dtype)], -1)
