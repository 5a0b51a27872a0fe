"""What every few-shot classification config shares (``experiments/configs/omniglot.py`` and
``fewshot.py``): the keys, their rules, the derived values and the keys a resumed run may change.

``classification_config`` starts from a published MAML setting: N ways, K shots, meta-batch M,
MAML's inner step size for the *mean* cross-entropy over the N·K support examples, K inner
steps in training and at test. Our likelihood is summed (MATH.md §1), so ``inner_lr`` is MAML's
/ (N·K). ABML's prior scale σ_θ = e^−4.5 and KL weight β = 0.05·σ_θ²/inner_lr (``kl_pull``: the
KL's pull towards θ per inner step) and log σ's inner step 20× smaller than μ's
(``log_sigma_lr_divisor``) are explained in the Omniglot config's docstring. ``selected``
holds an algorithm's validation-chosen changes: ``inner_lr_scale`` multiplies the inner step
size (β and log σ's step stay at their published-step values), ``eval_inner_steps`` replaces
the test-time steps.

Derived values follow the flags they come from: ``resolve`` computes ``kl_weight`` =
kl_pull·σ_θ²/inner_lr, ``inner_lr_log_sigma`` = inner_lr / log_sigma_lr_divisor and
``num_tasks`` = steps × meta_batch (N of the 1/N global KL: the tasks a run sees) when the run
starts, unless they are set explicitly.
"""
import math
from typing import Mapping, Tuple

import ml_collections

from metabayes.config_checks import BOOLEAN, TEXT, integer, number, one_of, optional, positive
from metabayes.data.fewshot import SOURCES
from metabayes.layers import CONVOLUTIONS
from metabayes.training.config import LEARNER_RULES, add_learner_defaults

# A published setting: ways, shots, meta_batch, MAML's mean-loss inner lr, train steps, test steps.
Setting = Tuple[int, int, int, float, int, int]


def classification_config(name: str, algorithm: str, setting: Setting,
                          selected: Mapping[str, float]) -> ml_collections.ConfigDict:
    """The shared keys at ``setting`` with the algorithm's ``selected`` changes (docstring)."""
    ways, shots, meta_batch, maml_lr, inner_steps, eval_inner_steps = setting
    c = add_learner_defaults(ml_collections.ConfigDict())
    c.name = name
    c.algorithm = algorithm
    c.seed = 0
    c.ways, c.shots, c.query = ways, shots, 15   # query: Q per class at test (the paper's 15)
    c.train_query = ml_collections.config_dict.placeholder(int)   # Q in meta-training; None: query
    c.meta_batch = meta_batch
    scale = selected.get("inner_lr_scale", 1.0)
    c.inner_lr = maml_lr / (ways * shots) * scale
    c.inner_steps = inner_steps
    c.eval_inner_steps = selected.get("eval_inner_steps", eval_inner_steps)
    c.init_log_sigma = -4.5
    c.kl_pull = 0.05 * scale         # inner_lr·β/σ_θ²: the KL's pull towards θ per inner step
    c.kl_weight = ml_collections.config_dict.placeholder(float)   # None: kl_pull·σ_θ²/inner_lr
    c.log_sigma_lr_divisor = 20 * scale   # inner_lr_log_sigma (None) = inner_lr / this
    c.filters = 64
    c.conv = "auto"                # auto (direct on CPU, xla on GPU / TPU) | direct | im2col | xla
    c.steps = 60_000
    c.num_tasks = ml_collections.config_dict.placeholder(int)   # N of the 1/N global KL; None:
    #                                steps × meta_batch, the tasks a run sees
    c.eval_every = 5_000
    c.eval_tasks = 1_000
    c.evaluate_on = "test"         # test | validation (the final evaluation's split; intervals
    #                                always score validation tasks)
    c.eval_meta_batch = 20
    c.num_bins = 10
    c.log_every = 100
    c.checkpoint_every = 1_000
    c.keep_checkpoints = 3
    c.data_source = "files"        # files | tfds (the data set's module says which it reads)
    c.data_dir = ml_collections.config_dict.placeholder(str)
    c.verify_md5 = True            # check official archives against their md5 (False: custom ones)
    c.prefetch = 2
    c.shard_tasks = True           # split meta-batches over all local devices when there are several
    c.multihost = False            # jax.distributed.initialize first (run the command on every host)
    c.coordinator_address = ml_collections.config_dict.placeholder(str)   # None: auto-detected
    c.num_processes = ml_collections.config_dict.placeholder(int)         # (Cloud TPU, SLURM, ...)
    c.process_id = ml_collections.config_dict.placeholder(int)
    c.force_resume = False         # resume even where the flags differ from the run's config.json
    return c


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy with the derived values that are unset (None) computed from the flags they follow
    (module docstring): kl_weight, inner_lr_log_sigma, num_tasks."""
    resolved = config.copy_and_resolve_references()
    with resolved.unlocked():
        if resolved.kl_weight is None:
            resolved.kl_weight = (resolved.kl_pull * math.exp(2 * resolved.init_log_sigma)
                                  / resolved.inner_lr)
        if resolved.inner_lr_log_sigma is None:
            resolved.inner_lr_log_sigma = resolved.inner_lr / resolved.log_sigma_lr_divisor
        if resolved.num_tasks is None:
            resolved.num_tasks = resolved.steps * resolved.meta_batch
    return resolved


# Keys that may change when a run resumes: they do not touch the training state or its data.
# num_tasks is not among them: when it follows steps, extending a run changes N (the global
# KL's weight), so the refusal names it and --config.num_tasks keeps the old N.
RESUMABLE_CHANGES = ("name", "steps", "eval_every", "eval_tasks", "eval_meta_batch",
                     "eval_samples", "eval_inner_steps", "eval_inner_lr", "eval_batch_norm",
                     "eval_local_variance",
                     "evaluate_on", "num_bins", "log_every", "checkpoint_every",
                     "keep_checkpoints", "prefetch", "data_dir", "verify_md5", "shard_tasks",
                     "multihost", "coordinator_address", "num_processes", "process_id",
                     "force_resume")

RULES = {
    **LEARNER_RULES,
    "kl_weight": optional(number(0.0)), "num_tasks": optional(integer(1)),
    "kl_pull": number(0.0), "log_sigma_lr_divisor": positive(),
    "name": TEXT, "seed": integer(0), "ways": integer(2), "shots": integer(1),
    "query": integer(1), "train_query": optional(integer(1)), "meta_batch": integer(1),
    "filters": integer(1), "conv": one_of(*CONVOLUTIONS), "steps": integer(1),
    "eval_every": integer(1), "eval_tasks": integer(1), "evaluate_on": one_of("test", "validation"),
    "eval_meta_batch": integer(1), "num_bins": integer(1), "log_every": integer(1),
    "checkpoint_every": integer(1), "keep_checkpoints": integer(1),
    "data_source": one_of(*SOURCES), "data_dir": optional(TEXT), "verify_md5": BOOLEAN,
    "prefetch": integer(1), "shard_tasks": BOOLEAN, "multihost": BOOLEAN,
    "coordinator_address": optional(TEXT), "num_processes": optional(integer(1)),
    "process_id": optional(integer(0)), "force_resume": BOOLEAN,
}
