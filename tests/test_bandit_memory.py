"""The wheel-bandit agents' memories (issue 19): the per-arm reservoir keeps every arm and stands
for every pull, it is a uniform sample of each arm's pulls, the window keeps the last pulls, a
weighted slot counts as that many pulls, and meta-training episodes' supports are reservoirs of
their histories."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metabayes as mb
from metabayes.bandit.episodes import ArmRewardMLP, sample_episodes
from metabayes.bandit.history import (ArmReservoir, RecentWindow, subsample_pulls,
                                      support_pulls, weighted_support)
from metabayes.bandit.wheel import NUM_ARMS, sample_contexts
from helpers import fast_jit


def fill(memory, arms, key=jax.random.PRNGKey(0)):
    """``memory`` after pulls of ``arms`` (contexts (i, −i), reward i for the i-th pull)."""
    def step(state, inputs):
        i, arm, k = inputs
        context = jnp.stack([i, -i]).astype(jnp.float32)
        return memory.record(state, context, arm, i.astype(jnp.float32), k), None
    arms = jnp.asarray(arms)
    state, _ = jax.lax.scan(step, memory.init(), (jnp.arange(arms.shape[0]), arms,
                                                  jax.random.split(key, arms.shape[0])))
    return state


def test_reservoir_keeps_every_arm_and_stands_for_every_pull():
    """After 5,000 pulls, 97% of them arm 0: every arm keeps min(count, per_arm) real pulls,
    each slot weighs count / kept, so the support stands for exactly the 5,000 pulls."""
    arms = np.zeros(5_000, np.int32)
    arms[::40], arms[1::400], arms[2::400], arms[3::1000] = 1, 2, 3, 4    # 125, 13, 13, 5 pulls
    memory = ArmReservoir(per_arm=20)
    state = fast_jit(fill, static_argnums=0)(memory, arms)
    counts = np.bincount(arms, minlength=NUM_ARMS)
    np.testing.assert_array_equal(state.counts, counts)
    np.testing.assert_array_equal(state.kept, np.minimum(counts, 20))
    inputs, targets = memory.support(state)
    assert float(support_pulls((inputs, targets))) == pytest.approx(5_000, rel=1e-6)
    for arm in range(NUM_ARMS):
        rows = np.asarray(inputs[:, 2 + arm]) > 0
        assert rows.sum() == min(counts[arm], 20)
        pulls = np.asarray(targets[rows, 0]) / np.asarray(inputs[rows, 2 + arm])   # the index i
        assert set(pulls.astype(int)) <= set(np.flatnonzero(arms == arm))          # its own pulls
        np.testing.assert_allclose(np.asarray(inputs[rows, 2 + arm]) ** 2, counts[arm] /
                                   min(counts[arm], 20), rtol=1e-6)


def test_reservoir_is_a_uniform_sample_of_each_arm():
    """Algorithm R: each of an arm's 60 pulls is kept with probability 10/60, early or late."""
    memory = ArmReservoir(per_arm=10)
    kept = fast_jit(jax.vmap(lambda k: fill(memory, jnp.zeros(60, jnp.int32), k).rewards[0]))(
        jax.random.split(jax.random.PRNGKey(7), 4_000))                     # [4000, 10]
    frequency = np.bincount(np.asarray(kept, int).ravel(), minlength=60) / 4_000
    np.testing.assert_allclose(frequency, 10 / 60, atol=5 * math.sqrt(10 / 60 * 50 / 60 / 4_000))


def test_window_keeps_the_last_pulls():
    memory = RecentWindow(capacity=8)
    inputs, targets = memory.support(fast_jit(fill, static_argnums=0)(memory,
                                                                       np.arange(30) % NUM_ARMS))
    assert sorted(np.asarray(targets[:, 0]).astype(int)) == list(range(22, 30))
    assert float(support_pulls((inputs, targets))) == 8


def test_a_slot_of_weight_w_counts_as_w_pulls():
    """The network's Gaussian log-likelihood of one slot of weight 3 equals that of the pull
    repeated 3 times, up to the normaliser's constant; and so does its gradient."""
    model = ArmRewardMLP(hidden=(6,))
    contexts = sample_contexts(jax.random.PRNGKey(0), 2)
    params = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 7)))["params"]
    likelihood = mb.Gaussian(1.0)
    weighted = weighted_support(contexts, jnp.array([2, 4]), jnp.array([50.0, 1.0]),
                                jnp.array([3.0, 1.0]))
    repeated = weighted_support(contexts[jnp.array([0, 0, 0, 1])], jnp.array([2, 2, 2, 4]),
                                jnp.array([50.0, 50.0, 50.0, 1.0]), jnp.ones(4))
    log_lik = lambda p, data: likelihood.log_prob(model.apply({"params": p}, data[0]), data[1])
    constant = -0.5 * math.log(2 * math.pi) * 2          # two fewer rows in the weighted set
    assert float(log_lik(params, weighted)) == pytest.approx(
        float(log_lik(params, repeated)) - constant, rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(jax.grad(log_lik)(params, weighted)),
                    jax.tree_util.tree_leaves(jax.grad(log_lik)(params, repeated))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_episode_support_is_the_reservoir_of_its_history():
    """Every support set stands for its T ∈ [1, max_pulls] pulls, keeps ≤ per_arm pulls per arm,
    and holds every arm that was pulled among the first min(T, pool) pulls."""
    task, _ = fast_jit(sample_episodes, static_argnums=(1, 2, 3, 4, 5))(
        jax.random.PRNGKey(0), 64, 8, 5, 1_000, 64)
    inputs = np.asarray(task.support[0])                                  # [64, 40, 7]
    totals = (inputs[..., 2:] ** 2).sum((1, 2))
    assert totals.min() >= 1 and totals.max() <= 1_000 and np.ptp(np.log(totals)) > 4
    present = (inputs[..., 2:] > 0).reshape(64, NUM_ARMS, 8, NUM_ARMS)   # slots grouped by arm
    for arm in range(NUM_ARMS):
        assert not present[:, arm, :, np.arange(NUM_ARMS) != arm].any()  # arm a's slots hold a
    np.testing.assert_array_equal(task.query[0][..., 2:].sum(-1), 1.0)


def test_subsample_keeps_each_arms_first_pulls():
    contexts = sample_contexts(jax.random.PRNGKey(0), 12)
    arms = jnp.array([0, 0, 0, 1, 0, 2, 1, 1, 1, 0, 3, 4])
    rewards = jnp.arange(12.0)
    state = subsample_pulls(contexts, arms, rewards, 10, per_arm=2)   # the first 10 pulls
    np.testing.assert_array_equal(state.kept, [2, 2, 1, 0, 0])
    np.testing.assert_array_equal(state.counts, [5, 4, 1, 0, 0])
    np.testing.assert_array_equal(state.rewards[:3], [[0, 1], [3, 6], [5, 0]])
    scaled = subsample_pulls(contexts, arms, rewards, 120, per_arm=2)   # 120 pulls like these 12
    np.testing.assert_allclose(scaled.counts, np.bincount(arms, minlength=5) * 10)
