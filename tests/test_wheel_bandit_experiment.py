"""``experiments.wheel_bandit`` and the wheel-bandit benchmarks: its flags and configs, short
runs that write results, and the benchmarks that replay a run's meta-learners."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import wheel_bandit
from experiments.configs.wheel_bandit import get_config
from metabayes.bandit.agents import sample_problem
from metabayes.bandit.history import ArmReservoir, RecentWindow

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_variants_compose_with_plus_and_refuse_a_key_set_twice():
    """``20 steps+greedy`` is ``20 steps``' settings, then ``greedy``'s (K = 20 and ABML on q's
    mean, a callable of the config), the rest as the config's; an unknown part, or two parts
    that set one key, are refused in one line naming the flag."""
    from benchmarks.wheel_bandit_variants import check_variants, with_variant
    config = tiny_config(inner_lr=0.4)
    composed = with_variant(config, "20 steps+greedy")
    assert composed.eval_inner_steps == 20 and composed.policy.abml == "greedy"
    assert composed.policy.maml == config.policy.maml and config.eval_inner_steps == 1
    quarter = with_variant(config, "quarter training step+greedy")
    assert quarter.eval_inner_lr == pytest.approx(0.1)
    assert with_variant(config, "greedy+20 steps").to_dict() == composed.to_dict()
    check_variants(["20 steps+greedy", "default"], "variants")
    for names, error in ((["20 steps+nope"], r"^--variants must be among .*got \['nope'\]$"),
                         (["20 steps+40 steps"], "^--variants: '20 steps\\+40 steps' sets "
                          "eval_inner_steps more than once$")):
        with pytest.raises(ValueError, match=error):
            check_variants(names, "variants")


def test_choices_record_every_setting_a_variant_changes():
    """Each variant's results are recorded with the settings it changed: every key where a
    variant's config differs from the run's is in ``PLAY_SETTINGS`` (the body steps' and the
    task prior's keys were left out)."""
    from benchmarks.wheel_bandit_variants import PLAY_SETTINGS, VARIANTS, with_variant
    config = tiny_config()
    for name in VARIANTS:
        varied = with_variant(config, name)
        changed = {key for key in config.keys() if varied[key] != config[key]}
        assert changed <= set(PLAY_SETTINGS), (name, changed - set(PLAY_SETTINGS))


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
        "error: --per_pull must ascend within 1..20 (the pulls per run), got 20,1")
    done = subprocess.run([sys.executable, "-m", "benchmarks.wheel_bandit_plot",
                           f"--results={tmp_path / 'r.png'}"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0 and "--results: cannot read" in done.stderr
