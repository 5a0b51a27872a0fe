r"""Meta-learned Thompson sampling on the wheel bandit (Ravi & Beatson, ICLR 2019, Table 1).

    python -m experiments.wheel_bandit --workdir=runs/wheel_bandit
    python -m experiments.wheel_bandit --workdir=runs/wheel_bandit --config.n=80000 --config.trials=3

Meta-trains ABML and MAML on wheel problems (checkpoints in ``workdir/checkpoints/<algorithm>``,
resumed automatically), then plays Uniform, NeuralLinear, ABML (Thompson sampling) and MAML
(greedy; ``policy``) for ``n`` pulls at every δ in ``deltas``, ``trials`` times, all agents of a
trial on the same contexts and rewards. Prints cumulative regret normalised to Uniform = 100
(mean ± standard error over trials) and writes results.json and regret.png (mean cumulative
regret vs steps).
"""
import dataclasses
import functools
import itertools
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
from absl import flags
from ml_collections import config_flags

from experiments.cli import run
import metabayes as mb
from experiments.configs.wheel_bandit import RESUMABLE_CHANGES, RULES, get_config
from experiments.run_config import write_run_config
from metabayes.bandit.agents import HandOver, MetaAgent, UniformAgent
from metabayes.bandit.episodes import ArmRewardMLP, sample_episodes
from metabayes.bandit.exact_head import ExactHead, task_networks
from metabayes.bandit.history import ArmReservoir, RecentWindow, support_pulls
from metabayes.bandit.neural_linear import NeuralLinear
from metabayes.bandit.profile_steps import ProfileSteps
from metabayes.bandit.trials import kept_curves, play_all, summarise, table
from metabayes.bandit.wheel import INPUT_DIM, NUM_ARMS
from metabayes.training.checkpointing import Checkpointer
from metabayes.training.config import ALGORITHMS, make_evaluator, make_learner
from metabayes.config_checks import check_config
from metabayes.evaluation.plotting import plot_regret
from metabayes.training import fit

def check_settings(config: ml_collections.ConfigDict) -> None:
    """Every key against its rule (``RULES``), ``eval_body_from`` against ``eval_body_steps``,
    and ``eval_body_steps`` against ABML's head."""
    check_config(config, RULES)
    if config.eval_body_from and not config.eval_body_steps:
        raise ValueError(f"--config.eval_body_from={config.eval_body_from} hands over to body "
                         f"steps: it needs --config.eval_body_steps >= 1, got 0")
    if not (config.eval_body_steps and "abml" in config.algorithms):
        return
    head = play_head(config)
    if head != "exact":
        raise ValueError(f"--config.eval_body_steps={config.eval_body_steps} needs ABML's exact "
                         f"head at play (--config.eval_head=exact), got {head!r}")
    if config.eval_head_anchor or config.eval_head_task_prior:
        raise ValueError(f"--config.eval_body_steps={config.eval_body_steps} needs the unanchored "
                         f"exact head (--config.eval_head_anchor=0 --config.eval_head_task_prior"
                         f"=0), got {config.eval_head_anchor} and {config.eval_head_task_prior}")


def play_head(config) -> str:
    """ABML's head at play: ``eval_head``, or (None) the one it was meta-trained with."""
    return config.head if config.eval_head is None else config.eval_head


def bandit_learner(config, algorithm: str) -> mb.MetaLearner:
    """The MetaLearner that meta-trains ``algorithm``: the config's, with that algorithm's
    ``meta_sgd``, on ``ArmRewardMLP`` with a Gaussian likelihood, its inner steps scaled by
    ``per_point_step`` unless ``step_reference`` is None, its outer KL by ``outer_kl`` and
    ABML's head by ``head``."""
    learner_config = config.copy_and_resolve_references()
    with learner_config.unlocked():
        learner_config.algorithm = algorithm
        del learner_config["meta_sgd"]
        learner_config.meta_sgd = config.meta_sgd[algorithm]
    model = ArmRewardMLP(hidden=tuple(config.hidden), activation=config.activation)
    learner = make_learner(learner_config, model, mb.Gaussian(config.noise_std))
    if config.step_reference is not None:
        learner = dataclasses.replace(learner, inner_step_scale=mb.per_point_step(
            config.step_reference, support_pulls))
    if config.outer_kl == "per_point":
        learner = dataclasses.replace(learner, outer_kl_scale=mb.per_point_kl(support_pulls))
    return with_head(learner, algorithm, config.head)


def with_head(learner: mb.MetaLearner, algorithm: str, head, kl_weight=None,
              anchor_share: float = 0.0, task_prior_share: float = 0.0, body_steps: int = 0,
              body_lr: float = 1e-3) -> mb.MetaLearner:
    """``learner`` with ABML's head ``head`` (``HEADS``; None: "inner_steps"): "exact" refits
    it after the inner steps (``ExactHead``, solving at β = ``kl_weight``, None: the learner's
    β, anchored to the K steps' head by ``anchor_share`` and to the meta-training tasks by
    ``task_prior_share``), after ``body_steps`` Adam steps at ``body_lr`` on the hidden layers
    through it if > 0 (``ProfileSteps``); MAML's is always the inner steps'."""
    if head != "exact" or algorithm != "abml":
        return dataclasses.replace(learner, refit=None)
    beta = learner.kl_weight if kl_weight is None else kl_weight
    refit = ExactHead(learner.likelihood.noise_std, beta, anchor_share, task_prior_share)
    if body_steps:
        refit = ProfileSteps(refit, body_steps, body_lr)
    return dataclasses.replace(learner, refit=refit)


def play_learner(config, algorithm: str, learner: mb.MetaLearner) -> mb.MetaLearner:
    """The learner ``algorithm`` plays with: ``learner`` with ``eval_inner_steps`` at
    ``eval_inner_lr``, σ_λ by ``eval_local_variance``, and the head by ``eval_head`` (None: as
    meta-trained), an exact one solved at β = ``eval_head_kl_weight`` (None: ``kl_weight``),
    anchored by ``eval_head_anchor`` and ``eval_head_task_prior``, after ``eval_body_steps``
    steps on the hidden layers through it (ABML's; MAML's head is always the inner steps')."""
    return with_head(make_evaluator(config, learner), algorithm, play_head(config),
                     config.eval_head_kl_weight, config.eval_head_anchor,
                     config.eval_head_task_prior, config.eval_body_steps, config.eval_body_lr)


def meta_train(config, algorithm: str, workdir: str, key: jax.Array, progress: bool):
    """Meta-train (or resume) one algorithm: (the learner to play with, ``play_learner``,
    MetaParams, train seconds, history).

    A workdir trained beyond ``steps`` plays its checkpoint at ``steps`` (a model chosen among a
    longer run's checkpoints), and refuses a ``steps`` without one."""
    learner = bandit_learner(config, algorithm)
    evaluator = play_learner(config, algorithm, learner)   # before training: bad flags fail fast
    init_key, batch_key, step_key = jax.random.split(key, 3)
    state = learner.init(init_key, jnp.zeros((NUM_ARMS * config.per_arm, INPUT_DIM)))
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints", algorithm),
                                config.checkpoint_every, config.keep_checkpoints)
    sample = jax.jit(functools.partial(sample_episodes, num_problems=config.meta_batch,
                                       per_arm=config.per_arm, num_query=config.query,
                                       max_pulls=config.max_pulls, pool=config.pool))
    try:
        restored = checkpointer.resume(state, config.steps, f"{algorithm} in {workdir}")
        if restored is not None:
            state = restored[0]
        batches = (sample(jax.random.fold_in(batch_key, t))[0]
                   for t in itertools.count(int(state.step)))
        start = time.perf_counter()
        state, history = fit(learner, state, batches, step_key, config.steps,
                             log_every=config.log_every, checkpointer=checkpointer,
                             progress=progress)
    finally:
        checkpointer.close()
    return evaluator, state.params, time.perf_counter() - start, history


def evaluation_key(config) -> jax.Array:
    """The key Table 1's problems are drawn from (``play_all``): played once per setting, at
    the end."""
    return jax.random.split(jax.random.PRNGKey(config.seed))[1]


def validation_key(config) -> jax.Array:
    """The key of the validation problems, on which play-time settings are chosen
    (``benchmarks.wheel_bandit_choices``): other contexts and rewards than Table 1's."""
    return jax.random.split(jax.random.PRNGKey(config.seed), 3)[2]


def finished_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The default config with the meta-training settings (every key outside
    ``RESUMABLE_CHANGES``, and ``steps`` and ``algorithms``) of the finished run in
    ``workdir``, read from its config.json, so that a program playing its models trains
    nothing (not even an algorithm the run did not train), and without NeuralLinear, which
    has no trained model to play. ValueError for a workdir without a finished run."""
    if not os.path.isfile(os.path.join(workdir, "results.json")):
        raise ValueError(f"--workdir must hold a finished `python -m experiments."
                         f"wheel_bandit` run (its results.json); {workdir!r} has none")
    with open(os.path.join(workdir, "config.json")) as f:
        recorded = json.load(f)
    play_keys = {key.split(".")[0] for key in RESUMABLE_CHANGES} - {"steps", "algorithms"}
    config = get_config()
    with config.unlocked():
        for key, value in recorded.items():
            if key not in config or key in play_keys:
                continue
            if isinstance(config[key], ml_collections.ConfigDict):   # per algorithm
                # a run recorded before ``meta_sgd`` was per algorithm holds one for both
                config[key].update(value if isinstance(value, dict)
                                   else dict.fromkeys(config[key], value))
            else:
                config[key] = tuple(value) if isinstance(config[key], tuple) else value
        config.neural_linear.enabled = False
    return config


def train_key(config) -> jax.Array:
    """The key of meta-training: algorithm a's is fold_in(key, ALGORITHMS.index(a))."""
    return jax.random.split(jax.random.PRNGKey(config.seed))[0]


def play_task_networks(config, algorithm: str, learner: mb.MetaLearner, params):
    """The networks of ``task_prior_tasks`` meta-training episodes, adapted as in meta-training,
    that the play ``learner``'s exact head takes as its prior in function space; None unless it
    has one (``eval_head_task_prior`` > 0)."""
    if not (config.eval_head_task_prior > 0 and learner.refit is not None):   # ABML's exact head
        return None
    key = jax.random.fold_in(train_key(config), len(ALGORITHMS))   # not an algorithm's stream
    episodes_key, adapt_key = jax.random.split(key)
    tasks, _ = sample_episodes(episodes_key, config.task_prior_tasks, per_arm=config.per_arm,
                               num_query=config.query, max_pulls=config.max_pulls,
                               pool=config.pool)
    return jax.jit(task_networks, static_argnums=0)(bandit_learner(config, algorithm), params,
                                                     tasks.support, adapt_key)


def meta_train_all(config, workdir: str, progress: bool = False):
    """``meta_train`` every algorithm of the config: ({algorithm: (learner, params)},
    {algorithm: train seconds}, {algorithm: history})."""
    learners, seconds, histories = {}, {}, {}
    for algorithm in config.algorithms:
        learner, params, seconds[algorithm], histories[algorithm] = meta_train(
            config, algorithm, workdir,
            jax.random.fold_in(train_key(config), ALGORITHMS.index(algorithm)), progress)
        learners[algorithm] = (learner, params)
    return learners, seconds, histories


def play_memory(config):
    """What the meta-learned agents keep of their pulls at play: ``play_per_arm`` slots per arm
    (None: meta-training's ``per_arm``), re-adapting on supports from ``smallest_support``."""
    per_arm = config.per_arm if config.play_per_arm is None else config.play_per_arm
    smallest = per_arm if config.smallest_support is None else config.smallest_support
    return (ArmReservoir(per_arm, smallest) if config.memory == "reservoir"
            else RecentWindow(NUM_ARMS * per_arm, NUM_ARMS * smallest))


def make_agents(config, learners) -> dict:
    """name -> (agent, init(key) -> state) for every agent the config asks for."""
    agents = {"Uniform": (UniformAgent(), lambda key: ())}
    if config.neural_linear.enabled:
        nl = config.neural_linear
        neural_linear = NeuralLinear(
            ArmRewardMLP(hidden=tuple(nl.hidden), activation=config.activation,
                         init_scale=nl.init_scale),
            capacity=config.n, retrain_every=nl.retrain_every, train_steps=nl.train_steps,
            batch_size=nl.batch_size, learning_rate=nl.learning_rate, lr_decay=nl.lr_decay,
            max_grad_norm=nl.max_grad_norm, initial_pulls=nl.initial_pulls,
            prior_precision=nl.prior_precision, a0=nl.a0, b0=nl.b0)
        agents["NeuralLinear"] = (neural_linear, neural_linear.init)
    memory = play_memory(config)
    for algorithm, (learner, params) in learners.items():
        agent = MetaAgent(learner, policy=config.policy[algorithm], memory=memory,
                          readapt_every=config.readapt_every,
                          readapt_growth=config.readapt_growth,
                          warm_start=config.warm_start)
        if config.eval_body_from and isinstance(learner.refit, ProfileSteps):
            agent = HandOver(dataclasses.replace(agent, learner=dataclasses.replace(
                                 learner, refit=learner.refit.head)),
                             dataclasses.replace(agent, learner=learner.replace_inner_steps(0),
                                                 warm_start=True),
                             config.eval_body_from)
        networks = play_task_networks(config, algorithm, learner, params)
        agents[algorithm.upper()] = (agent, lambda key, a=agent, p=params, t=networks: a.init(p, t))
    return agents


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       progress: bool = True) -> dict:
    """Meta-train every algorithm, play every agent, write results.json and regret.png. Every
    key is checked first; a run that resumes must have the settings of its config.json, but for
    ``RESUMABLE_CHANGES``."""
    check_settings(config)
    write_run_config(workdir, config, resumable=RESUMABLE_CHANGES, force=config.force_resume)
    learners, train_seconds, histories = meta_train_all(config, workdir, progress)
    start = time.perf_counter()
    final, curves, play_seconds = play_all(make_agents(config, learners), config.deltas,
                                           config.trials, config.n, evaluation_key(config),
                                           progress)
    eval_seconds = time.perf_counter() - start
    summary = summarise(config.deltas, final)
    kept = kept_curves(config.deltas, config.n, config.curve_points, curves)
    plot_regret(os.path.join(workdir, "regret.png"), config.deltas, config.trials, kept["steps"],
                {name: kept[name] for name in curves})
    results = {"n": config.n, "trials": config.trials, "deltas": list(config.deltas),
               "agents": summary,
               "table": table(config.deltas, config.n, config.trials, summary),
               "curves": kept,
               "train_seconds": train_seconds, "eval_seconds": eval_seconds,
               "play_seconds": play_seconds,
               "history": histories, "config": config.to_dict()}
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return results


def main(argv):
    results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    print(results["table"])
    training = ", ".join(f"{a} {s:.0f} s" for a, s in results["train_seconds"].items())
    print(f"meta-training: {training}; evaluation {results['eval_seconds']:.0f} s; wrote "
          f"{_WORKDIR.value}/results.json, regret.png")


if __name__ == "__main__":  # flags exist only when run as a program, so modules import freely
    _CONFIG = config_flags.DEFINE_config_file(
        "config", os.path.join(os.path.dirname(__file__), "configs", "wheel_bandit.py"),
        "The wheel-bandit config file (experiments/configs/wheel_bandit.py).")
    _WORKDIR = flags.DEFINE_string("workdir", "runs/wheel_bandit", "Outputs and checkpoints go here.")
    run(main, _CONFIG)
