"""The wheel bandit, its agents and ``experiments.wheel_bandit`` (issue 7), against hand-computed
rewards, closed forms and Monte-Carlo frequencies."""
import json
import math
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import metabayes as mb
from experiments import wheel_bandit
from experiments.configs.wheel_bandit import get_config
from metabayes.bandit.agents import (MetaAgent, MetaAgentState, OracleAgent, UniformAgent,
                                     normalised_regret, play, sample_problem)
from metabayes.bandit.history import ArmReservoir, RecentWindow, empty_history
from metabayes.bandit.episodes import ArmRewardMLP, sample_episodes
from metabayes.bandit.neural_linear import (NormalInverseGamma, blr_posterior, linear_stats,
                                            sample_nig)
from metabayes.bandit.wheel import (encode, mean_rewards, optimal_arms, sample_contexts,
                                    sample_rewards)
from helpers import fast_jit

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def tiny_config(**overrides):
    config = get_config()
    config.update(steps=3, meta_batch=2, per_arm=4, query=4, pool=64, hidden=(8,),
                  inner_steps=1, eval_inner_steps=1, n=20, trials=2, deltas=(0.5, 0.95),
                  readapt_every=2, log_every=1, checkpoint_every=2, curve_points=10)
    config.neural_linear.update(hidden=(8,), retrain_every=5, train_steps=2, batch_size=8)
    config.update(**overrides)
    return config


@pytest.mark.parametrize("memory,play_per_arm,smallest,expected", [
    ("reservoir", None, 2, ArmReservoir(4, 2)), ("reservoir", 32, 2, ArmReservoir(32, 2)),
    ("reservoir", 32, None, ArmReservoir(32, 32)), ("window", None, 2, RecentWindow(20, 10)),
    ("window", 32, 2, RecentWindow(160, 10)), ("window", 32, None, RecentWindow(160, 160))])
def test_play_memory_takes_play_per_arm(memory, play_per_arm, smallest, expected):
    """The agents' memory at play has ``play_per_arm`` slots per arm (None: meta-training's
    ``per_arm``, 4 in the tiny config), and support sizes from ``smallest_support`` per arm
    (None: the whole memory only)."""
    config = tiny_config(memory=memory, play_per_arm=play_per_arm, smallest_support=smallest)
    agents = wheel_bandit.make_agents(config, {"abml": (None, None), "maml": (None, None)})
    assert agents["ABML"][0].memory == expected and agents["MAML"][0].memory == expected


def test_finished_run_config_keeps_the_runs_algorithms(tmp_path):
    """A program that plays a finished run's models plays the algorithms it trained, not the
    default ones (it would meta-train the missing one), and no NeuralLinear."""
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "config.json").write_text(json.dumps({"algorithms": ["maml"], "steps": 7,
                                                      "n": 5}))
    played = wheel_bandit.finished_run_config(str(tmp_path))
    assert (tuple(played.algorithms), played.steps, played.n) == (("maml",), 7, get_config().n)
    assert not played.neural_linear.enabled


def test_meta_sgd_is_set_per_algorithm(tmp_path):
    """ABML learns its inner step scales (Meta-SGD) and MAML stays Finn et al.'s by default;
    each can be set alone. A finished run recorded with one ``meta_sgd`` for both (before it
    was per algorithm) is played with that value for both."""
    config = tiny_config()
    assert wheel_bandit.bandit_learner(config, "abml").meta_sgd
    assert not wheel_bandit.bandit_learner(config, "maml").meta_sgd
    config.meta_sgd.update(abml=False, maml=True)
    assert not wheel_bandit.bandit_learner(config, "abml").meta_sgd
    assert wheel_bandit.bandit_learner(config, "maml").meta_sgd
    (tmp_path / "results.json").write_text("{}")
    for recorded, expected in ((False, (False, False)), ({"abml": False, "maml": True},
                                                         (False, True))):
        (tmp_path / "config.json").write_text(json.dumps({"meta_sgd": recorded}))
        played = wheel_bandit.finished_run_config(str(tmp_path))
        assert (played.meta_sgd.abml, played.meta_sgd.maml) == expected


def test_validation_problems_are_not_the_tables():
    """Play-time settings are chosen on other contexts and rewards than Table 1's."""
    config = tiny_config()
    problems = [sample_problem(key, 0.5, 50)[0] for key in (
        wheel_bandit.evaluation_key(config), wheel_bandit.validation_key(config))]
    assert not np.allclose(*problems, atol=0.1)


def test_each_meta_learner_acts_by_its_configured_policy(tmp_path):
    """ABML samples q(φ; λ) by default and MAML acts on its point estimate; ``policy`` changes
    either (``benchmarks.wheel_bandit_choices``' "greedy" variant), and refuses other names."""
    config = tiny_config()
    policies = lambda: {name: agent.policy for name, (agent, _) in wheel_bandit.make_agents(
        config, {"abml": (None, None), "maml": (None, None)}).items() if name in ("ABML", "MAML")}
    assert policies() == {"ABML": "thompson", "MAML": "greedy"}
    config.policy.abml = "greedy"
    assert policies()["ABML"] == "greedy"
    config.policy.abml = "softmax"
    with pytest.raises(ValueError, match=r"^`policy.abml` must be one of"):
        wheel_bandit.train_and_evaluate(config, str(tmp_path), progress=False)


BAD_FLAGS = [({"deltas": (0.5, 1.5)}, "deltas"), ({"deltas": (-0.1,)}, "deltas"),
             ({"deltas": ()}, "deltas"), ({"n": 0}, "n"), ({"n": -5}, "n"),
             ({"trials": 0}, "trials"), ({"readapt_every": 0}, "readapt_every"),
             ({"readapt_growth": -0.5}, "readapt_growth"), ({"memory": "lru"}, "memory"),
             ({"step_reference": 0.0}, "step_reference"), ({"per_arm": 0}, "per_arm"),
             ({"play_per_arm": 0}, "play_per_arm"), ({"smallest_support": 0}, "smallest_support"),
             ({"max_pulls": 0}, "max_pulls"), ({"eval_head": "closed"}, "eval_head"),
             ({"head": "closed"}, "head"), ({"outer_kl": "mean"}, "outer_kl"),
             ({"eval_head_kl_weight": 0.0}, "eval_head_kl_weight"),
             ({"eval_head_anchor": -0.1}, "eval_head_anchor"),
             ({"algorithms": ("abml", "reptile")}, "algorithms")]


@pytest.mark.parametrize("overrides,flag", BAD_FLAGS, ids=[f for _, f in BAD_FLAGS])
def test_bad_flags_name_the_flag(overrides, flag, tmp_path):
    with pytest.raises(ValueError, match=rf"^`{flag}` must be"):
        wheel_bandit.train_and_evaluate(tiny_config(**overrides), str(tmp_path), progress=False)
    assert not os.listdir(tmp_path)                               # failed before any work


def test_short_run_writes_results(tmp_path):
    results = wheel_bandit.train_and_evaluate(tiny_config(), str(tmp_path), progress=False)
    with open(tmp_path / "results.json") as f:
        written = json.load(f)
    assert set(written["agents"]) == {"Uniform", "NeuralLinear", "ABML", "MAML"}
    for name, per_delta in written["agents"].items():
        for delta in ("0.5", "0.95"):
            normalised = per_delta[delta]["normalised"]
            assert len(normalised["trials"]) == 2 and np.isfinite(normalised["mean"])
            if name == "Uniform":
                assert normalised["mean"] == pytest.approx(100.0) and normalised["se"] == 0
    assert written["table"] == results["table"] and "δ = 0.95" in results["table"]
    assert written["curves"]["steps"][-1] == 20
    for name in written["agents"]:                     # compile and play time, per agent
        assert written["play_seconds"][name]["per_1000_pulls"] > 0
    assert os.path.getsize(tmp_path / "regret.png") > 10_000
    assert os.listdir(tmp_path / "checkpoints" / "abml")
    # Programs that play a finished run's models take its training settings, not the defaults
    # (which would train it on to the default number of steps).
    played = wheel_bandit.finished_run_config(str(tmp_path))
    assert (played.steps, played.hidden, played.meta_batch) == (3, (8,), 2)
    defaults = get_config()                              # play settings stay the defaults
    assert (played.n, played.neural_linear.train_steps) == (defaults.n,
                                                            defaults.neural_linear.train_steps)
    with pytest.raises(ValueError, match="--workdir must hold a finished"):
        wheel_bandit.finished_run_config(str(tmp_path / "checkpoints"))


def test_diagnostics_play_the_meta_learners_the_run_trained(tmp_path):
    """On a run that trained MAML alone, ``benchmarks.wheel_bandit_mistakes`` and
    ``benchmarks.wheel_bandit_fit`` report MAML's numbers (both raised KeyError on 'ABML');
    the mistakes play at the ``--variant`` asked for (they played at the defaults), and refuse
    an unknown one in one line."""
    config = tiny_config(algorithms=("maml",))
    config.neural_linear.enabled = False
    wheel_bandit.train_and_evaluate(config, str(tmp_path), progress=False)
    for benchmark, flags, read, expected in (
            ("wheel_bandit_mistakes", ["--n=20", "--variant=20 steps"],
             lambda written: (set(written["agents"]), written["eval_inner_steps"]), ({"MAML"}, 20)),
            ("wheel_bandit_fit", ["--pulls=20", "--steps=0,1"],
             lambda written: {row["algorithm"].upper() for row in written["rows"]}, {"MAML"})):
        out = tmp_path / f"{benchmark}.json"
        result = subprocess.run([sys.executable, "-m", f"benchmarks.{benchmark}",
                                 f"--workdir={tmp_path}", "--delta=0.5", *flags, f"--out={out}"],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        assert read(json.loads(out.read_text())) == expected, benchmark
    refused = subprocess.run([sys.executable, "-m", "benchmarks.wheel_bandit_mistakes",
                              f"--workdir={tmp_path}", "--variant=320 steps"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "--variant must be among" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_workdir_plays_the_checkpoint_of_the_steps_asked_for(tmp_path):
    """A run trained to 4 steps, asked for 2, plays its step-2 checkpoint, which is the model of
    a run trained to 2 (it played step 4's before); it refuses a step without a checkpoint; and
    ``benchmarks.wheel_bandit_choices --meta_steps`` plays each step asked for."""
    config = tiny_config(algorithms=("maml",), steps=4, keep_checkpoints=5)
    config.neural_linear.enabled = False
    long_run = tmp_path / "long"
    wheel_bandit.train_and_evaluate(config, str(long_run), progress=False)
    params = {}
    for name, workdir, steps in (("long at 2", long_run, 2), ("short", tmp_path / "short", 2),
                                 ("long at 4", long_run, 4)):
        config.steps = steps
        params[name] = wheel_bandit.meta_train_all(config, str(workdir))[0]["maml"][1]
    leaves = {name: jax.tree_util.tree_leaves(p) for name, p in params.items()}
    for at_2, short, at_4 in zip(leaves["long at 2"], leaves["short"], leaves["long at 4"]):
        np.testing.assert_array_equal(at_2, short)
    assert any(not np.array_equal(a, b) for a, b in zip(leaves["short"], leaves["long at 4"]))
    config.steps = 3
    with pytest.raises(ValueError, match=r"^`steps` = 3: maml in .* was trained further"):
        wheel_bandit.meta_train_all(config, str(long_run))

    command = [sys.executable, "-m", "benchmarks.wheel_bandit_choices", f"--workdir={long_run}",
               "--n=20", "--trials=1", "--deltas=0.5", "--variants=default"]
    out = tmp_path / "choices.json"
    done = subprocess.run(command + ["--meta_steps=2,4", "--per_pull=5,20", f"--out={out}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    variants = json.loads(out.read_text())["variants"]
    assert set(variants) == {"default, 2 steps", "default, 4 steps"}
    curves = variants["default, 4 steps"]["curves"]   # and each run's regret per pull printed
    assert curves["steps"][-1] == 20 and set(curves) == {"steps", "Uniform", "MAML"}
    maml = curves["MAML"]["0.5"]
    rise = (maml[-1] - maml[curves["steps"].index(5)]) / 15   # pulls 6-20
    assert "MAML                     δ = 0.5   " in done.stdout and f"{rise:10.3f}\n" in done.stdout
    for flag, error in (("--meta_steps=3", "--meta_steps [3]: no checkpoint of maml"),
                        ("--per_pull=30", "error: --per_pull must ascend within 1..20")):
        done = subprocess.run(command + [flag], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode != 0 and error in done.stderr, done.stderr[-3000:]


def test_regret_per_pull_is_the_slope_of_the_cumulative_regret():
    """Each window's regret per pull is its rise of the cumulative regret over its pulls, the
    first counted from pull 0 (3 regret on pull 1, then 1 a pull to pull 10, then 0.5 a pull),
    with each mark moved to the nearest pull count the curve was kept at."""
    from metabayes.bandit.trials import regret_per_pull
    steps = [1, 2, 5, 10, 20, 50, 100]
    cumulative = [s + 2 if s <= 10 else 12 + 0.5 * (s - 10) for s in steps]
    assert regret_per_pull(steps, cumulative, [10, 100]) == [(1, 10, 1.2), (11, 100, 0.5)]
    assert regret_per_pull(steps, cumulative, [1, 9, 60]) == [(1, 1, 3.0), (2, 10, 1.0),
                                                               (11, 50, 0.5)]


def test_plot_merges_runs_played_alike(tmp_path):
    """``benchmarks.wheel_bandit_plot`` draws each run's meta-learner under its label, the
    shared Uniform once, and refuses runs played on other problems or clashing names."""
    from benchmarks.wheel_bandit_plot import merge_curves
    def run(agent, scale, n=20):
        curve = {"0.5": [scale, 2 * scale], "0.99": [3 * scale, 4 * scale]}
        return {"n": n, "trials": 2, "deltas": [0.5, 0.99],
                "curves": {"steps": [1, n], "Uniform": {"0.5": [9, 9], "0.99": [9, 9]},
                           agent: curve}}
    runs = [run("ABML", 1.0), run("MAML", 2.0), run("MAML", 3.0)]
    merged = merge_curves(runs, ["", "", "MAML + Meta-SGD"])
    assert list(merged) == ["Uniform", "ABML", "MAML", "MAML + Meta-SGD"]
    assert merged["MAML + Meta-SGD"]["0.99"] == [9.0, 12.0] and merged["MAML"]["0.5"] == [2, 4]
    with pytest.raises(ValueError, match="both called 'MAML'"):
        merge_curves(runs, [])
    with pytest.raises(ValueError, match="played alike"):
        merge_curves([run("ABML", 1.0), run("MAML", 1.0, n=40)], [])
    paths = []
    for index, contents in enumerate(runs[:2]):
        paths.append(tmp_path / f"results_{index}.json")
        paths[-1].write_text(json.dumps(contents))
    done = subprocess.run([sys.executable, "-m", "benchmarks.wheel_bandit_plot",
                           f"--results={paths[0]},{paths[1]}", f"--out={tmp_path / 'r.png'}",
                           "--per_pull=1,20"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Uniform, ABML, MAML" in done.stdout, done.stderr[-3000:]
    assert "pulls 1-1, 2-20" in done.stdout
    assert "ABML                     δ = 0.99      3.000     0.053\n" in done.stdout
    assert os.path.getsize(tmp_path / "r.png") > 10_000
    done = subprocess.run([sys.executable, "-m", "benchmarks.wheel_bandit_plot",
                           f"--results={paths[0]}", f"--out={tmp_path / 'r2.png'}",
                           "--per_pull=20,1"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0 and done.stderr.strip() == (   # one line, no usage text
        "error: --per_pull must ascend within 1..20 (the runs' n), got 20,1")
    done = subprocess.run([sys.executable, "-m", "benchmarks.wheel_bandit_plot",
                           f"--results={tmp_path / 'r.png'}"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0 and "--results: cannot read" in done.stderr
