"""Play at long horizons (issue 19): the agents' memories and support sets, the per-pull inner
step against a linear model's exact posterior, the re-adaptation schedule and its support
sizes, NeuralLinear's whole-history posterior, vmapped trials equal to one trial at a time, and
the diagnostic benchmarks' scoring."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metabayes as mb
from metabayes.bandit.agents import MetaAgent, play, play_trials, readapt_now
from metabayes.bandit.episodes import ArmRewardMLP, sample_episodes
from metabayes.bandit.history import (ArmReservoir, RecentWindow, subsample_pulls,
                                      support_pulls, weighted_support)
from metabayes.bandit.neural_linear import NeuralLinear, blr_posterior
from metabayes.bandit.wheel import NUM_ARMS, mean_rewards, sample_contexts
from helpers import fast_jit
from metabayes.training.config import INNER_OPTIMIZERS


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


def linear_data(num_points, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_points, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.5 * rng.normal(size=num_points)
    return jnp.asarray(x, jnp.float32), jnp.asarray(y[:, None], jnp.float32)


def linear_learner(inner_lr, steps, step_scale):
    """MAML on a linear-Gaussian model (noise sd 1): w = [kernel; bias]."""
    return mb.maml(mb.MLP(hidden=()), likelihood=mb.Gaussian(1.0), inner_lr=inner_lr,
                   inner_steps=steps, inner_step_scale=step_scale)


def least_squares(x, y):
    """(Φ = [x, 1], w* = the exact posterior mean under a flat prior) in float64."""
    design = np.concatenate([np.asarray(x, np.float64), np.ones((x.shape[0], 1))], 1)
    return design, np.linalg.lstsq(design, np.asarray(y, np.float64)[:, 0], rcond=None)[0]


def weights(posterior):
    """A linear model's mean weights as one vector [kernel; bias]."""
    return np.concatenate([np.ravel(posterior.mean["Dense_0"]["kernel"]),
                           np.ravel(posterior.mean["Dense_0"]["bias"])])


def remaining_error(num_points, step_scale, inner_lr=0.4 / 64, steps=5):
    """‖w_K − w*‖ / ‖w_0 − w*‖ after K inner steps of a linear-Gaussian model (noise sd 1) from
    θ, with w* the exact posterior mean (flat prior: least squares); and the same ratio
    predicted by K steps of (I − η c ΦᵀΦ) on w_0 − w*, Φ = [x, 1], c the step scale."""
    x, y = linear_data(num_points)
    learner = linear_learner(inner_lr, steps, step_scale)
    params = learner.init_params(jax.random.PRNGKey(0), x)
    theta = params.q_theta.mean
    adapted = fast_jit(lambda p, t, d: learner.adapt(p, t, d, jax.random.PRNGKey(1)))(
        params, theta, (x, y))
    design, exact = least_squares(x, y)
    scale = 1.0 if step_scale is None else float(step_scale((x, y)))
    contraction = np.eye(4) - inner_lr * scale * design.T @ design
    start = weights(theta) - exact
    predicted = np.linalg.matrix_power(contraction, steps) @ start
    norm = np.linalg.norm
    return norm(weights(adapted) - exact) / norm(start), norm(predicted) / norm(start)


def test_per_point_step_makes_the_inner_step_independent_of_the_history_size():
    """On a Bayesian linear model the summed likelihood's curvature is ΦᵀΦ, N times its
    per-point one. With per_point_step(64) each step is η (64/N) ΦᵀΦ: the error left after 5
    steps is as predicted, and it tends to (1 − 0.4)^5 (x ~ N(0, I), η · 64 = 0.4) whatever
    N; with the summed objective the same step size diverges (|1 − 0.4 N/64| > 1)."""
    scale = mb.per_point_step(64.0)
    for n in (640, 6_400, 64_000):
        error, predicted = remaining_error(n, scale)
        assert error == pytest.approx(predicted, rel=1e-3)
        if n > 640:
            assert error == pytest.approx(0.6 ** 5, rel=0.05)
    assert remaining_error(640, None)[0] > 100.0
    assert remaining_error(32, scale)[0] == pytest.approx(remaining_error(32, None)[0])


def test_inner_adam_steps_do_not_depend_on_the_history_size():
    """Adam's update m / √v does not change when the objective is scaled: on a linear-Gaussian
    model, 5 inner Adam steps (the bandit config's ``inner_optimizer="adam"``) on a history
    repeated 10 times (its summed likelihood × 10) give the λ of the history itself, with no
    ``per_point_step``; each weight moves at most K · η. SGD's first step on the repeated
    history is 10 times as long."""
    x, y = linear_data(640)
    repeated = (jnp.tile(x, (10, 1)), jnp.tile(y, (10, 1)))

    def moved(inner_optimizer, data, steps=5):
        learner = dataclasses.replace(linear_learner(0.05, steps, None),
                                      inner_optimizer=inner_optimizer)
        params = learner.init_params(jax.random.PRNGKey(0), x)
        theta = params.q_theta.mean
        return weights(learner.adapt(params, theta, data, jax.random.PRNGKey(1))) - weights(theta)

    adam = INNER_OPTIMIZERS["adam"](0.05)
    np.testing.assert_allclose(moved(adam, repeated), moved(adam, (x, y)), rtol=1e-4, atol=1e-6)
    assert np.abs(moved(adam, (x, y))).max() <= 5 * 0.05 * 1.01
    sgd = optax.sgd(1e-5)
    np.testing.assert_allclose(moved(sgd, repeated, 1), 10 * moved(sgd, (x, y), 1), rtol=1e-3)


def test_fisher_posterior_narrows_with_the_history_and_the_gradient_rule_does_not():
    """The play learner's σ_λ after one inner step on the same 50 slots standing for 1,000 or
    100,000 pulls. Under the gradient rule, ``per_point_step`` scales the step by 1/N as the
    likelihood's gradient grows with N, so σ_λ is the same (Thompson sampling would keep
    sampling at that width forever). Under ``eval_local_variance="fisher"`` σ_λ⁻² − σ_θ⁻² =
    ρ F/β, and F of the weighted slots grows with the pulls they stand for: 100× here."""
    from experiments.configs.wheel_bandit import get_config
    from experiments.wheel_bandit import bandit_learner
    from metabayes.training.config import make_evaluator

    contexts = sample_contexts(jax.random.PRNGKey(0), 50)
    arms, rewards = jnp.arange(50) % NUM_ARMS, jnp.linspace(1.0, 50.0, 50)

    def log_sigmas(rule, pulls_per_slot):
        config = get_config()
        config.update(hidden=(8,), eval_inner_steps=1, eval_local_variance=rule)
        learner = make_evaluator(config, bandit_learner(config, "abml"))
        support = weighted_support(contexts, arms, rewards, jnp.full(50, pulls_per_slot))
        params = learner.init_params(jax.random.PRNGKey(1), support[0])
        local = learner.adapt(params, params.q_theta.mean, support, jax.random.PRNGKey(2))
        return (jax.tree_util.tree_leaves(local.log_sigma),
                jax.tree_util.tree_leaves(params.q_theta.mean.log_sigma))

    for short, long in zip(log_sigmas("gradient", 20.0)[0], log_sigmas("gradient", 2000.0)[0]):
        np.testing.assert_allclose(short, long, rtol=1e-5, atol=1e-7)
    (short, prior), (long, _) = log_sigmas("fisher", 20.0), log_sigmas("fisher", 2000.0)
    added = lambda local, theta: np.exp(-2.0 * local) - np.exp(-2.0 * theta)
    for s, l, p in zip(short, long, prior):
        assert np.all(added(s, p) > 0)
        # float32: σ⁻² = e^6 ≈ 403 holds the short history's F/β to ~1e-4, × 100 here
        np.testing.assert_allclose(added(l, p), 100.0 * added(s, p), rtol=1e-3, atol=0.02)


def test_warm_start_continues_the_inner_loop():
    """K steps from a warm start λ^K are steps K+1..2K of one 2K-step loop (MAML with SGD is
    deterministic), so on a linear-Gaussian model the error to the exact posterior mean after
    R warm re-adaptations is (I − η c ΦᵀΦ)^(K R) of the start, where cold ones stay at the K-th
    power. Guards ``start`` being ignored (the warm error would stay at 0.6^5)."""
    x, y = linear_data(640)
    make = lambda steps: linear_learner(0.4 / 64, steps, mb.per_point_step(64.0))
    learner = make(5)
    params = learner.init_params(jax.random.PRNGKey(0), x)
    theta = params.q_theta.mean
    adapt = fast_jit(lambda t, s: learner.adapt(params, theta, (x, y), jax.random.PRNGKey(1), s))
    once = adapt(theta, None)
    twice = adapt(theta, once)
    ten_steps = make(10).adapt(params, theta, (x, y), jax.random.PRNGKey(1))
    for got, want in zip(jax.tree_util.tree_leaves(twice), jax.tree_util.tree_leaves(ten_steps)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    _, exact = least_squares(x, y)
    error = lambda t: np.linalg.norm(weights(t) - exact)
    local = once
    for _ in range(3):
        local = adapt(theta, local)
    assert error(local) < 0.6 ** 15 * error(theta) < error(once)


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


def test_fit_scores_by_hand():
    """``benchmarks.wheel_bandit_fit.fit_scores`` at δ = 0.5: two inside contexts (quadrants 1
    and 3), one greedy arm wrong (the quadrant's 3.0 over arm 0's 1.2), one right; one outside
    context, right."""
    from benchmarks.wheel_bandit_fit import fit_scores
    contexts = jnp.array([[0.1, 0.2], [0.6, 0.5], [-0.1, -0.1]])
    rewards = jnp.array([[1.2, 3.0, 0.0, 0.0, 0.0], [1.2, 40.0, 0.0, 0.0, 0.0],
                         [1.3, 0.0, 0.0, 1.0, 0.0]])
    scores = fit_scores(rewards, contexts, 0.5)
    assert scores == pytest.approx({"quadrant_inside": 2.0, "quadrant_outside": 40.0,
                                    "arm0_inside": 1.25, "right_inside": 0.5,
                                    "right_outside": 1.0})


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
