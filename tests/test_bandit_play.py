"""Play at long horizons (issue 19): the meta-learned agent's warm start, support sizes and
re-adaptation schedule, NeuralLinear's whole-history posterior, vmapped trials equal to one
trial at a time, and the diagnostic benchmarks' scoring."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metabayes as mb
from metabayes.bandit.agents import MetaAgent, arm_rewards, play, play_trials, readapt_now
from metabayes.bandit.episodes import ArmRewardMLP
from metabayes.bandit.history import ArmReservoir, RecentWindow, support_pulls
from metabayes.bandit.neural_linear import NeuralLinear, blr_posterior
from metabayes.bandit.wheel import NUM_ARMS, mean_rewards, sample_contexts
from helpers import fast_jit


def test_warm_started_agent_adapts_from_its_last_posterior():
    """A warm-started MetaAgent's second re-adaptation starts from its first λ; a cold one's
    from θ."""
    learner = tiny_learner()
    params = learner.init_params(jax.random.PRNGKey(0), jnp.zeros((20, 7)))
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    contexts = jnp.array([[0.3, -0.2], [0.1, 0.6]])
    for warm in (True, False):
        agent = MetaAgent(learner, memory=ArmReservoir(4), warm_start=warm)
        first = agent.update(agent.init(params), 1, contexts[0], 2, 1.5, keys[0])
        second = agent.update(first, 2, contexts[1], 4, 0.5, keys[1])
        expected = learner.adapt(params, params.q_theta.mean, agent.memory.support(second.memory),
                                 jax.random.split(keys[1])[1], first.posterior if warm else None)
        for got, want in zip(jax.tree_util.tree_leaves(second.posterior),
                             jax.tree_util.tree_leaves(expected)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("memory", [ArmReservoir(16, smallest=2), RecentWindow(40, smallest=2)])
def test_agent_adapts_on_the_smallest_support_that_holds_its_pulls(memory):
    """Re-adapting on the first of ``support_sizes`` (2, 8, 16 slots per arm | 2, 8, 32, 40
    rows) that holds the t pulls so far gives, after every one of 50 pulls, the λ of adapting
    on the whole memory: the rows left out are the empty ones."""
    learner = tiny_learner()
    params = learner.init_params(jax.random.PRNGKey(0), jnp.zeros((20, 7)))
    whole = dataclasses.replace(memory, smallest=10_000)
    assert whole.support_sizes() == memory.support_sizes()[-1:]
    assert memory.support_sizes() == ((2, 8, 16) if isinstance(memory, ArmReservoir)
                                      else (2, 8, 32, 40))

    def posteriors(memory):
        agent = MetaAgent(learner, memory=memory)
        def step(state, inputs):
            state = agent.update(state, *inputs)
            return state, state.posterior.mean
        inputs = (jnp.arange(1, 51), sample_contexts(jax.random.PRNGKey(1), 50),
                  jnp.arange(50) * 3 % NUM_ARMS, jnp.linspace(0.0, 50.0, 50),
                  jax.random.split(jax.random.PRNGKey(2), 50))
        return jax.lax.scan(step, agent.init(params), inputs)[1]
    for got, want in zip(jax.tree_util.tree_leaves(fast_jit(posteriors, static_argnums=0)(memory)),
                         jax.tree_util.tree_leaves(fast_jit(posteriors, static_argnums=0)(whole))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_readapt_schedule_thins_out():
    steps = jnp.arange(1, 80_001)
    chosen = np.flatnonzero(np.asarray(readapt_now(steps, 1, 1 / 16))) + 1
    assert list(chosen[:31]) == list(range(1, 32))                       # every pull to 31
    gaps = np.diff(chosen)
    assert gaps.max() == 4096 and np.all(np.diff(gaps) >= 0)            # doubling intervals
    assert len(chosen) == 211
    np.testing.assert_array_equal(np.asarray(readapt_now(steps[:50], 5, 0.0)),
                                  np.asarray(steps[:50]) % 5 == 0)


def tiny_learner():
    return mb.abml(ArmRewardMLP(hidden=(8,)), likelihood=mb.Gaussian(1.0), inner_lr=1e-3,
                   inner_steps=2, kl_weight=0.1,
                   inner_step_scale=mb.per_point_step(20.0, support_pulls))


def test_neural_linear_posterior_is_the_closed_form_on_the_whole_history(x64):
    """After 130 pulls (retrained at 50 and 100, statistics summed over 16-row chunks and then
    updated pull by pull), each arm's NIG posterior equals the closed form on the features of
    its pulls under the final net: Λ = ZᵀZ + λI, μ = Λ⁻¹Zᵀy, a = a0 + n/2,
    b = b0 + (yᵀy − μᵀΛμ)/2."""
    agent = NeuralLinear(ArmRewardMLP(hidden=(6,), init_scale=0.3), capacity=130,
                         retrain_every=50, train_steps=5, batch_size=16, stats_chunk=16)
    state = agent.init(jax.random.PRNGKey(0))

    def run(state, key):
        final, _ = jax.lax.scan(
            lambda s, inputs: (agent.update(s, inputs[0], inputs[1], inputs[2], inputs[3],
                                            inputs[4]), None),
            state, (jnp.arange(1, 131), sample_contexts(key, 130), jnp.arange(130) % NUM_ARMS,
                    jnp.linspace(0.0, 50.0, 130), jax.random.split(key, 130)))
        return final
    final = jax.jit(run)(state, jax.random.PRNGKey(1))
    posterior = blr_posterior(final.stats, 0.25, 6.0, 6.0)
    inputs = np.asarray(final.history.inputs[:130])
    targets = np.asarray(final.history.targets[:130, 0])
    features = np.asarray(agent.features(final.params, jnp.asarray(inputs[:, :2])))
    for arm in range(NUM_ARMS):
        rows = inputs[:, 2 + arm] == 1
        z, y = features[rows], targets[rows]
        precision = z.T @ z + 0.25 * np.eye(6)
        mean = np.linalg.solve(precision, z.T @ y)
        np.testing.assert_allclose(posterior.precision[arm], precision, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(posterior.mean[arm], mean, rtol=1e-7, atol=1e-7)
        assert float(posterior.a[arm]) == 6.0 + rows.sum() / 2
        assert float(posterior.b[arm]) == pytest.approx(
            6.0 + (y @ y - mean @ precision @ mean) / 2, rel=1e-7)


def test_neural_linear_starts_round_robin():
    agent = NeuralLinear(ArmRewardMLP(hidden=(6,), init_scale=0.3), capacity=40,
                         retrain_every=50, train_steps=2, batch_size=8)
    arms, _ = play(agent, agent.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), 0.5, 12)
    np.testing.assert_array_equal(arms[:10], np.arange(10) % NUM_ARMS)


@pytest.mark.parametrize("which", ["abml", "neural_linear"])
def test_vmapped_trials_equal_one_trial_at_a_time(which):
    """play_trials over 3 (key, δ) pairs gives each trial's arms and regrets as ``play`` alone,
    and its scheduled work (and ABML's choice of support size) stays a ``cond`` (not a
    ``select`` that runs every branch on every pull)."""
    if which == "abml":
        learner = tiny_learner()
        params = learner.init_params(jax.random.PRNGKey(0), jnp.zeros((20, 7)))
        agent = MetaAgent(learner, memory=ArmReservoir(8, smallest=2), readapt_every=1,
                          readapt_growth=0.25)
        init = lambda key: agent.init(params)
    else:
        agent = NeuralLinear(ArmRewardMLP(hidden=(6,), init_scale=0.3), capacity=40,
                             retrain_every=10, train_steps=3, batch_size=8, stats_chunk=16)
        init = agent.init
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    deltas = jnp.array([0.5, 0.9, 0.99])
    states = jax.vmap(init)(keys)
    arms, regrets = play_trials(agent, states, keys, deltas, 40)
    for i in range(3):
        alone_arms, alone_regrets = play(agent, init(keys[i]), keys[i], deltas[i], 40)
        np.testing.assert_array_equal(arms[i], alone_arms)
        np.testing.assert_allclose(regrets[i], alone_regrets, rtol=1e-6)
    jaxpr = str(jax.make_jaxpr(lambda s: play_trials.__wrapped__(agent, s, keys, deltas, 40))(
        states))
    assert jaxpr.count("cond[") == (2 if which == "abml" else 1)


def test_regret_sources_split_by_region():
    """``benchmarks.wheel_bandit_mistakes.regret_sources`` by hand at δ = 0.5: an inside pull
    of arm 1 (regret 0.2) 0.28 inside δ; two wrong quadrant arms (49 each), one 0.56° from the
    x-axis and 0.01 outside δ, the other 9.5° from the y-axis and 0.11 outside; a right pull
    outside, and one of arm 0 0.01 inside δ."""
    from benchmarks.wheel_bandit_mistakes import regret_sources
    contexts = np.array([[0.1, 0.2], [0.51, 0.005], [0.1, 0.6], [0.6, -0.5], [0.49, 0.0]])
    arms = np.array([1, 4, 2, 4, 0])
    means = np.asarray(mean_rewards(jnp.asarray(contexts), 0.5))
    regrets = means.max(1) - means[np.arange(5), arms]
    sources = regret_sources(contexts, arms, regrets, 0.5)
    assert sources["regret_per_pull"] == pytest.approx((0.2 + 2 * 49.0) / 5, rel=1e-5)
    assert sources["inside_regret_per_pull"] == pytest.approx(0.04, rel=1e-5)
    assert sources["inside_wrong_share"] == 0.5 and sources["outside_wrong_share"] == 2 / 3
    assert sources["inside_arm_shares"] == [0.5, 0.5, 0, 0, 0]
    assert sources["inside_wrong_share_by_depth"] == [0.0, None, None, None, 1.0]
    assert sources["outside_mistakes_by_angle"] == [1, 0, 0, 1, 0]
    assert sources["outside_mistakes_by_distance"] == [1, 0, 0, 1, 0]
    # Uniform's expected regret: 0.16 at each of the two inside contexts, 39.16 at the three
    # outside ones.
    uniform = (2 * 0.16 + 3 * 39.16) / 5
    assert sources["normalised_regret"] == pytest.approx(100 * (0.2 + 2 * 49.0) / 5 / uniform,
                                                         rel=1e-5)
    assert sources["inside_normalised_regret"] == pytest.approx(100 * 0.04 / uniform, rel=1e-5)
    assert sources["outside_normalised_regret"] == pytest.approx(100 * 2 * 49.0 / 5 / uniform,
                                                                 rel=1e-5)


def test_fit_scores_by_hand():
    """``benchmarks.wheel_bandit_fit.fit_scores`` at δ = 0.5: two inside contexts (quadrants 1
    and 3), one greedy arm wrong (the quadrant's 3.0 over arm 0's 1.2: regret 0.2), one right;
    one outside context, right. Uniform's expected regret: 1.2 - 5.2 / 5 = 0.16 inside and
    50 - 54.2 / 5 = 39.16 outside."""
    from benchmarks.wheel_bandit_fit import fit_scores
    contexts = jnp.array([[0.1, 0.2], [0.6, 0.5], [-0.1, -0.1]])
    rewards = jnp.array([[1.2, 3.0, 0.0, 0.0, 0.0], [1.2, 40.0, 0.0, 0.0, 0.0],
                         [1.3, 0.0, 0.0, 1.0, 0.0]])
    scores = fit_scores(rewards, contexts, 0.5)
    assert scores == pytest.approx({"quadrant_inside": 2.0, "quadrant_outside": 40.0,
                                    "arm0_inside": 1.25, "right_inside": 0.5,
                                    "right_outside": 1.0, "regret_per_pull": 0.2 / 3,
                                    "inside_regret_per_pull": 0.2 / 3,
                                    "normalised_regret": 100 * 0.2 / (0.16 + 0.16 + 39.16)})
    outside_wrong = fit_scores(rewards.at[1, 0].set(60.0), contexts, 0.5)   # arm 0: 50 - 1.2
    assert outside_wrong["right_outside"] == 0.0
    assert outside_wrong["regret_per_pull"] == pytest.approx((0.2 + 48.8) / 3)
    assert outside_wrong["inside_regret_per_pull"] == pytest.approx(0.2 / 3)


def test_fit_history_pulls_the_quadrant_arm():
    """The fit benchmark's history: 1,000 pulls, all but ~5% of the context's quadrant arm (so
    arm 0 has ~1%), held in 50 slots per arm; with ``exploration`` = 1, every arm ~1/5."""
    from benchmarks.wheel_bandit_fit import agent_history
    reservoirs = agent_history(jax.random.PRNGKey(0), 0.99, 1_000, 50)
    counts = np.asarray(reservoirs.counts)
    assert counts.sum() == pytest.approx(1_000) and 0 < counts[0] < 25
    np.testing.assert_allclose(reservoirs.kept, np.minimum(counts, 50), rtol=1e-6)
    uniform = np.asarray(agent_history(jax.random.PRNGKey(0), 0.99, 1_000, 50, 1.0).counts)
    assert uniform.sum() == pytest.approx(1_000) and np.all(np.abs(uniform - 200) < 50)


def test_capacity_fit_is_exact_where_the_wheel_is_constant():
    """``benchmarks.wheel_bandit_capacity.fit_wheel`` fits the wheel's expected rewards at δ:
    at δ = 1 every context is inside, the rewards are constant (1.2 for arm 0, 1.0 for the
    rest), and a network fits them exactly, so the squared error goes to 0 and every greedy arm
    is arm 0; at δ = 0.5 the jump from 1 to 50 stays in the error."""
    from benchmarks.wheel_bandit_capacity import fit_wheel
    from benchmarks.wheel_bandit_fit import fit_scores
    model = ArmRewardMLP(hidden=(8,))
    contexts = sample_contexts(jax.random.PRNGKey(1), 1_000)
    params, losses = fit_wheel(model, 1.0, 400, 64, 0.03, jax.random.PRNGKey(0))
    assert float(losses[-20:].mean()) < 1e-3
    scores = fit_scores(arm_rewards(model, params, contexts), contexts, 1.0)
    assert scores["right_inside"] == 1.0 and np.isnan(scores["right_outside"])
    assert float(fit_wheel(model, 0.5, 400, 64, 0.03, jax.random.PRNGKey(0))[1][-20:].mean()) > 1.0


def test_adaptation_errors_by_history_length_by_hand():
    """``benchmarks.wheel_bandit_adaptation.by_length``: the mean error overall and per bin of
    history lengths [lo, hi), None for an empty bin."""
    from benchmarks.wheel_bandit_adaptation import by_length
    means = by_length([1.0, 3.0, 10.0, 20.0], [1, 29, 30, 5_000], bins=(1, 30, 300, 3_000, 80_001))
    assert means == {"all": 8.5, "T in [1, 30)": 2.0, "T in [30, 300)": 10.0,
                     "T in [300, 3000)": None, "T in [3000, 80001)": 20.0}


def test_choices_print_the_meta_learners_the_run_trained():
    """A run that trained ABML alone prints ABML's rows (it raised KeyError on 'MAML')."""
    from metabayes.bandit.trials import variant_rows

    cell = lambda mean: {"normalised": {"mean": mean, "se": 0.01}}
    summary = {"Uniform": {"0.5": cell(100.0)}, "ABML": {"0.5": cell(0.46), "0.99": cell(20.3)}}
    (line,) = variant_rows("default", summary, {"ABML": {"per_1000_pulls": 0.5}}).splitlines()
    assert line.split() == ["default", "ABML", "0.46", "±", "0.01", "20.30", "±", "0.01",
                            "0.500", "s"]
