"""The wheel bandit and its agents (issue 7), against hand-computed rewards, closed forms and
Monte-Carlo frequencies."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import metabayes as mb
from metabayes.bandit.agents import (MetaAgent, MetaAgentState, OracleAgent, UniformAgent,
                                     normalised_regret, play)
from metabayes.bandit.history import empty_history
from metabayes.bandit.episodes import ArmRewardMLP, sample_episodes
from metabayes.bandit.neural_linear import (NormalInverseGamma, blr_posterior, linear_stats,
                                            sample_nig)
from metabayes.bandit.wheel import (encode, mean_rewards, optimal_arms, sample_contexts,
                                    sample_rewards, uniform_regret)
from helpers import fast_jit

S, B, W = 1.2, 1.0, 50.0   # safe arm 0, base, the wheel's quadrant arm
INSIDE = [S, B, B, B, B]
# (context, δ, expected mean rewards, optimal arm), by hand.
CASES = [
    ((0.1, 0.2), 0.5, INSIDE, 0),
    ((0.6, 0.5), 0.5, [S, W, B, B, B], 1),
    ((-0.6, 0.5), 0.5, [S, B, W, B, B], 2),
    ((-0.6, -0.5), 0.5, [S, B, B, W, B], 3),
    ((0.6, -0.5), 0.5, [S, B, B, B, W], 4),
    ((0.75, 0.0), 0.5, [S, W, B, B, B], 1),    # positive x-axis: arm 1
    ((0.0, 0.75), 0.5, [S, B, W, B, B], 2),    # positive y-axis: arm 2
    ((-0.75, 0.0), 0.5, [S, B, B, W, B], 3),   # negative x-axis: arm 3
    ((0.0, -0.75), 0.5, [S, B, B, B, W], 4),   # negative y-axis: arm 4
    ((0.5, 0.0), 0.5, INSIDE, 0),              # exactly on the circle ‖X‖ = δ: inside
    ((0.0, -0.5), 0.5, INSIDE, 0),
    ((0.0, 0.0), 0.0, INSIDE, 0),              # δ = 0: only the origin is inside
    ((0.01, 0.0), 0.0, [S, W, B, B, B], 1),
    ((-0.3, -0.2), 0.0, [S, B, B, W, B], 3),
    ((1.0, 0.0), 1.0, INSIDE, 0),              # δ = 1: the whole disc, its rim included
    ((-0.7, 0.7), 1.0, INSIDE, 0),
]


def test_mean_rewards_and_optimal_arms_by_hand():
    for delta in sorted({case[1] for case in CASES}):
        cases = [case for case in CASES if case[1] == delta]
        contexts = jnp.array([case[0] for case in cases], jnp.float32)
        np.testing.assert_array_equal(mean_rewards(contexts, delta),
                                      np.array([case[2] for case in cases], np.float32))
        np.testing.assert_array_equal(optimal_arms(contexts, delta), [case[3] for case in cases])


def test_contexts_uniform_in_disc_and_reward_noise():
    contexts = np.asarray(sample_contexts(jax.random.PRNGKey(0), 40_000))
    radius = np.linalg.norm(contexts, axis=1)
    assert radius.max() <= 1.0
    assert abs(np.mean(radius <= 0.5) - 0.25) < 0.01          # P(‖X‖ ≤ r) = r²
    quadrant_arms = optimal_arms(jnp.asarray(contexts), 0.0)
    np.testing.assert_allclose(np.bincount(quadrant_arms, minlength=5)[1:] / 40_000, 0.25, atol=0.01)
    noise = np.asarray(sample_rewards(jax.random.PRNGKey(1), jnp.asarray(contexts), 0.5)
                       - mean_rewards(jnp.asarray(contexts), 0.5))
    assert abs(noise.mean()) < 2e-4 and abs(noise.std() - 0.01) < 2e-4


def test_episodes_hold_pulled_arm_rewards_and_padding():
    """Support and query targets are the pulled arms' rewards (scaled by √w in the support),
    empty slots are all zero, and the support mixes greedy (optimal-arm) and random pulls."""
    sample = fast_jit(sample_episodes, static_argnums=(1, 2, 3, 4, 5))
    task, deltas = sample(jax.random.PRNGKey(0), 40, 8, 6, 500, 64)
    (s_in, s_out), (q_in, q_out) = task
    assert s_in.shape == (40, 40, 7) and s_out.shape == (40, 40, 1) and q_in.shape == (40, 6, 7)
    assert np.all((0 <= deltas) & (deltas <= 1))
    root = np.asarray(s_in[..., 2:]).max(-1)                             # √w, 0 for empty slots
    real = root > 0
    assert 0 < real.mean() < 1
    arms = np.argmax(np.asarray(s_in[..., 2:]), -1)
    contexts = np.asarray(s_in[..., :2])
    means = np.asarray(jax.vmap(mean_rewards)(jnp.asarray(contexts), deltas))   # [M, N, 5]
    pulled = np.take_along_axis(means, arms[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(s_out[..., 0])[real] / root[real], pulled[real],
                               atol=0.05)
    assert np.all(np.asarray(s_in)[~real][:, 2:] == 0) and np.all(np.asarray(s_out)[~real] == 0)
    optimal = np.asarray(jax.vmap(optimal_arms)(jnp.asarray(contexts), deltas))
    greedy = (arms == optimal)[real].mean()
    assert 0.3 < greedy < 0.95                   # neither all random (~0.2+) nor all greedy
    np.testing.assert_array_equal(q_in[..., 2:].sum(-1), 1.0)
    q_means = np.asarray(jax.vmap(mean_rewards)(q_in[..., :2], deltas))
    np.testing.assert_allclose(q_out[..., 0], np.take_along_axis(
        q_means, np.argmax(np.asarray(q_in[..., 2:]), -1)[..., None], -1)[..., 0], atol=0.05)


def test_network_selects_the_pulled_arm_and_empty_rows_are_masked():
    """The pulled arm's output; adapting on a history padded with empty rows equals adapting
    on its real rows alone."""
    learner = mb.abml(ArmRewardMLP(hidden=(6,)), likelihood=mb.Gaussian(1.0), inner_lr=1e-3,
                      inner_steps=2, kl_weight=0.5)
    key = jax.random.PRNGKey(0)
    contexts = sample_contexts(key, 7)
    arms = jnp.array([0, 1, 2, 3, 4, 1, 3])
    inputs, rewards = encode(contexts, arms), sample_rewards(key, contexts, 0.6)[jnp.arange(7), arms]
    params = learner.init_params(key, inputs)
    phi = params.q_theta.mean.mean
    all_arms = learner.model.apply({"params": phi}, contexts, method="arm_rewards")
    np.testing.assert_allclose(learner.model.apply({"params": phi}, inputs)[:, 0],
                               all_arms[jnp.arange(7), arms], rtol=1e-6)
    real = (inputs, rewards[:, None])
    padded = tuple(jnp.concatenate([a, jnp.zeros((9, a.shape[1]))]) for a in real)
    adapt = fast_jit(lambda data: learner.adapt(params, params.q_theta.mean, data,
                                               jax.random.PRNGKey(3)))
    from_real, from_padded = adapt(real), adapt(padded)
    assert not np.allclose(phi["head"]["bias"], from_real.mean["head"]["bias"])   # it adapted
    for a, b in zip(jax.tree_util.tree_leaves(from_real), jax.tree_util.tree_leaves(from_padded)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_oracle_has_zero_regret():
    arms, regrets = play(OracleAgent(), OracleAgent().init(0.7), jax.random.PRNGKey(0), 0.7, 300)
    np.testing.assert_array_equal(regrets, 0.0)
    assert len(set(np.asarray(arms).tolist())) == 5


def test_uniform_regret_matches_its_expectation_and_normalises_to_100():
    """E[regret per step] = δ²(1.2 − 1.04) + (1 − δ²)(50 − 10.84) for uniform arms."""
    delta, n = 0.7, 20_000
    _, regrets = play(UniformAgent(), (), jax.random.PRNGKey(1), delta, n)
    regrets = np.asarray(regrets, np.float64)
    expected = delta ** 2 * (1.2 - 1.04) + (1 - delta ** 2) * (50 - 10.84)
    assert abs(regrets.mean() - expected) < 4 * regrets.std() / math.sqrt(n)
    # ``uniform_regret`` per context: 1.2 − 1.04 inside the disc, 50 − 10.84 outside.
    np.testing.assert_allclose(uniform_regret(jnp.array([[0.1, 0.2], [0.6, -0.5]]), delta),
                               [1.2 - 1.04, 50 - 10.84], rtol=1e-6)
    total = regrets.sum()
    assert normalised_regret(total, total) == pytest.approx(100.0)
    assert normalised_regret(0.25 * total, total) == pytest.approx(25.0)


class ConstantArms(nn.Module):
    """A "network" whose φ is the 5 arms' rewards, whatever the context."""

    def setup(self):
        self.rewards = self.param("rewards", nn.initializers.zeros, (5,))

    def arm_rewards(self, contexts):
        return jnp.broadcast_to(self.rewards, (contexts.shape[0], 5))

    def __call__(self, inputs):
        return jnp.sum(self.arm_rewards(inputs) * inputs[:, 2:], -1, keepdims=True)


@pytest.mark.parametrize("policy", ["thompson", "greedy"])
def test_thompson_sampling_frequencies_match_the_posterior(policy):
    """Arms 0 and 1 with posteriors N(1, 0.3²) and N(0.8, 0.4²), the others far below: Thompson
    sampling picks arm 0 with probability Φ(0.2 / 0.5); greedy always."""
    agent = MetaAgent(mb.abml(ConstantArms(), likelihood=mb.Gaussian(1.0)), policy=policy)
    posterior = mb.MeanFieldGaussian({"rewards": jnp.array([1.0, 0.8, -50.0, -50.0, -50.0])},
                                     {"rewards": jnp.log(jnp.array([0.3, 0.4, 0.1, 0.1, 0.1]))})
    state = MetaAgentState(None, posterior, empty_history(4))
    draws = 40_000
    arms = np.asarray(fast_jit(jax.vmap(lambda k: agent.act(state, jnp.zeros(2), k)))(
        jax.random.split(jax.random.PRNGKey(0), draws)))
    assert set(arms.tolist()) <= {0, 1}
    expected = stats.norm.cdf(0.2 / math.hypot(0.3, 0.4)) if policy == "thompson" else 1.0
    assert abs(np.mean(arms == 0) - expected) < 4 * math.sqrt(0.25 / draws)


def test_blr_posterior_is_bayes_rule(x64):
    """log NIG posterior − (log NIG prior + log likelihood) is the same constant at every
    (β, σ²), arm by arm; an empty (all-zero) arm row is ignored."""
    rng = np.random.default_rng(0)
    n, dim, lam, a0, b0 = 30, 3, 0.25, 6.0, 6.0
    features = rng.normal(size=(n, dim))
    arms = rng.integers(0, 5, n)
    one_hot = np.eye(5)[arms]
    one_hot[-1] = 0.0                                           # an empty history slot
    rewards = features @ rng.normal(size=dim) + 0.3 * rng.normal(size=n)
    post = blr_posterior(linear_stats(jnp.asarray(features), jnp.asarray(one_hot),
                                      jnp.asarray(rewards)), lam, a0, b0)

    def log_nig(beta, variance, mean, precision, a, b):
        return (stats.multivariate_normal.logpdf(beta, mean, variance * np.linalg.inv(precision))
                + stats.invgamma.logpdf(variance, a, scale=b))

    for arm in range(5):
        rows = one_hot[:, arm] == 1
        z, y = features[rows], rewards[rows]
        gaps = []
        for _ in range(4):
            beta, variance = rng.normal(size=dim), rng.uniform(0.2, 2.0)
            log_joint = (log_nig(beta, variance, np.zeros(dim), lam * np.eye(dim), a0, b0)
                         + stats.norm.logpdf(y, z @ beta, math.sqrt(variance)).sum())
            gaps.append(log_nig(beta, variance, post.mean[arm], post.precision[arm],
                                post.a[arm], post.b[arm]) - log_joint)
        np.testing.assert_allclose(gaps, gaps[0], rtol=0, atol=1e-8)


def test_nig_samples_have_the_posterior_moments():
    """E[β] = μ and Cov[β] = b/(a − 1) Λ⁻¹ for a correlated precision Λ."""
    precision = jnp.array([[[2.0, 1.2], [1.2, 1.0]]])
    posterior = NormalInverseGamma(jnp.array([[1.0, -2.0]]), precision, jnp.array([8.0]),
                                   jnp.array([3.5]))
    draws = np.asarray(fast_jit(jax.vmap(lambda k: sample_nig(k, posterior)))(
        jax.random.split(jax.random.PRNGKey(0), 40_000)))[:, 0]
    np.testing.assert_allclose(draws.mean(0), [1.0, -2.0], atol=0.03)
    np.testing.assert_allclose(np.cov(draws.T), 3.5 / 7.0 * np.linalg.inv(precision[0]), rtol=0.05)
