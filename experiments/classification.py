"""Few-shot classification with ABML or MAML, for every data set: one ``train_and_evaluate``
behind ``experiments.omniglot`` and ``experiments.fewshot``.

``config.dataset`` picks the data (``experiments.datasets``): Omniglot through its own loader (splits,
rotations), miniImageNet, CIFAR-FS and FC100 through ``metabayes.data.fewshot``. Everything
else, meta-training, validation, the final evaluation and the outputs, is the same code.
"""
import itertools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections

from experiments.cli import explain_out_of_memory
from experiments.configs.classification import RESUMABLE_CHANGES, resolve
from experiments.datasets import dataset_of
from experiments.run_config import write_run_config
from metabayes.config_checks import check_config
from metabayes.data.episodes import EpisodeSampler, Prefetcher
from metabayes.data.pools import ClassPool, Normalization
from metabayes.errors import options_set_by
from metabayes.evaluation import classification_evaluation, posterior_scales, split_out_of_episode
from metabayes.evaluation.plotting import (plot_entropy_cdf, plot_posterior_scales,
                                           plot_reliability_diagram)
from metabayes.training import MetricWriter, fit
from metabayes.training.checkpointing import Checkpointer
from metabayes.training.config import EVALUATION_KEYS, make_evaluator
from metabayes.training.predictor import classifier_learner, input_shape
from metabayes.training.sharding import (host_local, initialize_multihost, replicate, shard_tasks,
                                         task_mesh)

TRAINING_MEMORY = ("Lower --config.meta_batch or --config.train_query, or set --config.task_chunk "
                   "to vmap that many tasks at a time.")
EVALUATION_MEMORY = ("Set --config.task_chunk to evaluate that many tasks at a time, or lower "
                     "--config.eval_meta_batch (which changes the test tasks).")
EVALUATION_SEEDS = {"test": 1, "validation": 2}   # added to --config.seed


def checked_sampler(split: str, flags: str, **episodes) -> EpisodeSampler:
    """EpisodeSampler(**episodes).check(), its ValueError naming the flags that size it."""
    try:
        return EpisodeSampler(**episodes).check()
    except ValueError as error:
        raise ValueError(f"bad {flags} for the {split}: {error}") from None


def evaluation_sampler(pool: ClassPool, config, normalization: Normalization,
                       part: str = "test") -> EpisodeSampler:
    """Episodes of the ``part`` ("test" or "validation") split: ``ways`` classes in the episode
    and up to ``ways`` more out of it (as many as the split has left, MATH.md §5)."""
    outside = max(1, min(config.ways, len(pool.images) - config.ways))
    return checked_sampler(f"{part} split (its episodes take ways classes and up to ways more "
                           "out of the episode)",
                           "--config.ways / shots / query / eval_meta_batch", images=pool.images,
                           ways=config.ways + outside, shots=config.shots, query=config.query,
                           meta_batch=config.eval_meta_batch,
                           seed=config.seed + EVALUATION_SEEDS[part],
                           normalization=normalization, source=pool.source)


def evaluate(evaluator, params, sampler, config, num_tasks, key):
    """The evaluation of MATH.md §5 on ``num_tasks`` tasks of the ``evaluation_sampler`` (the
    same tasks for every run with this seed): (report, in-episode entropies, out-of-episode
    ones)."""
    batches = (sampler.batch(t) for t in range(math.ceil(num_tasks / config.eval_meta_batch)))
    with explain_out_of_memory("evaluation", EVALUATION_MEMORY), options_set_by(EVALUATION_KEYS):
        return classification_evaluation(evaluator, params, batches, key, config.ways,
                                          config.eval_samples, config.num_bins)


def report_line(report) -> str:
    accuracy = report["accuracy"]
    return (f"accuracy {100 * accuracy['mean']:.2f} ± {100 * accuracy['ci95']:.2f}%  "
            f"NLL {report['nll']:.4f}  Brier {report['brier']:.4f}  ECE {report['ece']:.4f}  "
            f"MCE {report['mce']:.4f}  out-of-episode AUROC {report['out_of_episode_auroc']:.4f}")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, progress: bool = True):
    """Meta-train (resuming from the workdir's last checkpoint), evaluate, write the outputs.

    Interval evaluations (every ``eval_every`` steps) score validation tasks. The final
    evaluation scores ``eval_tasks`` tasks of the ``evaluate_on`` split: "test" once, at the
    end of a run whose settings are chosen; "validation" for the runs that choose them, which
    never see a test task. The final parameters are evaluated (no checkpoint selection).

    Every key is checked (``RULES``) and the derived ones resolved before any work. A run that
    resumes must have the settings of its config.json, but for ``RESUMABLE_CHANGES``.

    On several hosts every process runs this: each samples its own M / hosts tasks per step,
    all write the checkpoints together (orbax; ``workdir`` must be shared storage) and only
    process 0 writes the logs and results.
    """
    dataset = dataset_of(config)
    check_config(config, dataset.rules)
    config = resolve(config)
    hosts, host = jax.process_count(), jax.process_index()
    if config.meta_batch % hosts:
        raise ValueError(f"--config.meta_batch={config.meta_batch} must be a multiple of the "
                         f"number of hosts ({hosts})")
    learner = classifier_learner(config)          # bad learner flags fail before the data load
    evaluator = make_evaluator(config, learner)
    primary = host == 0
    write_run_config(workdir, config, resumable=RESUMABLE_CHANGES,
                     force=config.force_resume, write=primary)
    data = dataset.load(config)
    train_query = config.query if config.train_query is None else config.train_query
    sampler = checked_sampler("training split", "--config.ways / shots / train_query / meta_batch",
                              images=data.train.images, ways=config.ways, shots=config.shots,
                              query=train_query, meta_batch=config.meta_batch // hosts,
                              seed=config.seed, process=host, normalization=dataset.normalization,
                              source=data.train.source)
    validation_episodes = evaluation_sampler(data.validation, config, dataset.normalization,
                                             "validation")
    scale_support = split_out_of_episode(validation_episodes.batch(0), config.ways)[0].support
    final_episodes = evaluation_sampler(getattr(data, config.evaluate_on), config,
                                        dataset.normalization, config.evaluate_on)
    # (bad flags fail before training)
    init_key, train_key, eval_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    state = learner.init(init_key, jnp.zeros((config.ways * config.shots,
                                              *input_shape(config.dataset))))
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint_every,
                                config.keep_checkpoints)
    try:
        restored = checkpointer.resume(state, config.steps, f"the run in {workdir}")
        trained_before = 0.0  # seconds of training before this process, from the checkpoint
        if restored is not None:
            state, metadata = restored
            trained_before = metadata.get("train_seconds", 0.0)
            print(f"resumed from step {int(state.step)} in {workdir}")
        shard = hosts > 1 or config.shard_tasks and jax.local_device_count() > 1
        mesh = task_mesh() if shard else None
        if mesh is not None:
            state = replicate(state, mesh)
            print(f"meta-batch sharded over {mesh.size} devices on {hosts} host(s)")
        writer = MetricWriter(workdir) if primary else None
        write = writer.write if primary else lambda *args, **kwargs: None
        local_params = lambda: host_local(state.params) if mesh is not None else state.params
        start = time.perf_counter()
        trained = lambda: trained_before + time.perf_counter() - start   # seconds, over all parts

        def log_scales(step):   # σ_θ and σ_λ per parameter (none for MAML)
            scales = posterior_scales(evaluator, local_params(), scale_support, eval_key)
            if scales:
                write(step, scales, prefix="scales")

        restored_step = int(state.step)
        if restored_step == 0:
            log_scales(0)
        with Prefetcher(sampler, start=int(state.step), buffer=config.prefetch) as batches:
            if mesh is not None:
                batches = (shard_tasks(batch, mesh) for batch in batches)
            for stop in itertools.chain(range(config.eval_every, config.steps, config.eval_every),
                                        [config.steps]):
                if stop <= int(state.step):
                    continue
                with explain_out_of_memory("meta-training", TRAINING_MEMORY):
                    state, _ = fit(learner, state, batches, train_key, stop,
                                   log_every=config.log_every, on_log=write,
                                   checkpointer=checkpointer, progress=progress and primary,
                                   train_seconds=trained())
                if stop < config.steps:
                    log_scales(stop)
                    interval, _, _ = evaluate(evaluator, local_params(), validation_episodes,
                                              config, config.eval_meta_batch * 5, eval_key)
                    write(stop, {k: v for k, v in interval.items() if isinstance(v, float)},
                          prefix="validation")
        if config.steps > restored_step:   # trained in this process (not a rerun of a done run)
            train_seconds = trained()
            log_scales(config.steps)
        else:   # the checkpoint's time, not this process's start-up
            train_seconds = trained_before
        report, entropy_in, entropy_out = evaluate(evaluator, local_params(), final_episodes,
                                                   config, config.eval_tasks, eval_key)
    finally:
        checkpointer.close()
    report.update(algorithm=config.algorithm, steps=config.steps, train_seconds=train_seconds,
                  eval_tasks=config.eval_tasks, evaluated_on=config.evaluate_on,
                  outer_data=learner.outer_data, batch_norm=evaluator.batch_norm)
    if not primary:
        return report
    writer.write(config.steps, {k: v for k, v in report.items() if isinstance(v, float)},
                 prefix=config.evaluate_on)
    writer.close()
    with open(os.path.join(workdir, "eval.json"), "w") as f:
        json.dump(report, f, indent=1)
    title = f"{config.algorithm.upper()} {dataset.title} {config.ways}-way {config.shots}-shot"
    plot_reliability_diagram(os.path.join(workdir, "reliability.png"), report["calibration"], title)
    plot_entropy_cdf(os.path.join(workdir, "entropy_cdf.png"),
                     {config.algorithm.upper(): (entropy_in, entropy_out)}, title)
    scales = [row for row in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))
              if row["split"] == "scales"]
    if scales:
        plot_posterior_scales(os.path.join(workdir, "posterior_scales.png"), scales, title)
    with open(os.path.join(workdir, "entropies.json"), "w") as f:
        json.dump({"in_episode": entropy_in.tolist(), "out_of_episode": entropy_out.tolist()}, f)
    return report


def run_experiment(config: ml_collections.ConfigDict, workdir: str) -> None:
    """A program's main: join the other hosts if asked, train and evaluate, print the result."""
    if config.multihost:
        initialize_multihost(config.coordinator_address, config.num_processes, config.process_id)
    report = train_and_evaluate(config, workdir)
    if jax.process_index():
        return
    print(f"{config.algorithm} {config.dataset} {config.ways}-way {config.shots}-shot, "
          f"{config.eval_tasks} {config.evaluate_on} tasks: {report_line(report)}\n"
          f"training {report['train_seconds']:.0f} s; wrote {workdir}/eval.json, "
          "reliability.png, entropy_cdf.png")
