"""Omniglot configs: ``--config=experiments/configs/omniglot.py:NAME`` or ``NAME,ALGORITHM``,
with NAME one of cpu_demo (default), 5w1s, 5w5s, 20w1s, 20w5s and ALGORITHM abml (default) or
maml.

Starting points are MAML's published Omniglot hyperparameters (Finn et al., 2017): 5-way inner
step size 0.4, 1 step in training and 3 at test, meta-batch 32; 20-way 0.1, 5 steps, meta-batch
16; Adam 1e-3; 60,000 steps. MAML's step size is for the *mean* cross-entropy over the N·K
support examples; our likelihood is summed (MATH.md §1), so the published ``inner_lr`` is
MAML's / (N·K). ABML's prior scale σ_θ = e^−4.5 and KL weight β = 0.05·σ_θ²/inner_lr (a KL pull
of 5% per inner step at the published step size: ``kl_pull``) come from a trade-off: a step Δμ
from θ costs β·Δμ²/(2σ_θ²) of KL, so near the edge of inner-SGD stability (inner_lr·β/σ_θ² = 2)
the KL cancels what the step gains, and a large σ_θ drowns Conv4's weights (scale ≈ 0.06) in
sampling noise. log σ takes inner steps 20× smaller than μ (``log_sigma_lr_divisor``; its
reparameterised summed-likelihood gradient is of order σ·|∂ℓ/∂φ|). N of the 1/N global KL is the
number of tasks a full run sees, ``steps`` × ``meta_batch``.

Derived values follow the flags they come from: ``resolve`` computes ``kl_weight`` =
kl_pull·σ_θ²/inner_lr, ``inner_lr_log_sigma`` = inner_lr / log_sigma_lr_divisor and
``num_tasks`` = steps × meta_batch when the run starts, unless they are set explicitly, so
``--config.inner_lr=0.01`` moves β and log σ's step with it.

Each algorithm then gets the changes that validation tasks chose (``SELECTED``; the search is
experiments/studies/omniglot_search.sh, on the cpu_demo setting and on 150-step 20-way runs, with
its tables in docs/omniglot.md): at 5-way, for ABML half the inner step size for μ and 5 test-time
inner steps instead of 3
(validation NLL 0.611 against 0.833), with β and log σ's step kept at their published-step
values (so ``kl_pull`` and ``log_sigma_lr_divisor`` scale with it); for MAML half the inner step
size (0.538 against 0.664). Against ABML's defaults, σ_θ = e^−3.5 (0.850) and 10× β (1.385) were
worse on validation; a smaller β at the selected settings was better (0.598 at β/10, 0.585 at
0), measured after the test runs had started and not adopted. At 20-way both keep the published
step size (½ and 1.5× were worse for both); MAML takes 10 test-time steps instead of 5 (1.703
against 1.758), ABML keeps 5 (1.838 against 1.845 with 10). Meta-training uses Q = 15 query
images per class, as the test tasks do, unless ``train_query`` sets its own Q; a smaller one
makes each step cheaper.
"""
import ml_collections

from experiments.configs import classification
from experiments.configs.classification import (RESUMABLE_CHANGES, classification_config,
                                                resolve)
from metabayes.config_checks import BOOLEAN, integer, one_of
from metabayes.data.omniglot import SOURCES, SPLITS

SETTINGS = {  # ways, shots, meta_batch, MAML's mean-loss inner lr, train steps K, test steps
    "5w1s": (5, 1, 32, 0.4, 1, 3),
    "5w5s": (5, 5, 32, 0.4, 1, 3),
    "20w1s": (20, 1, 16, 0.1, 5, 5),
    "20w5s": (20, 5, 16, 0.1, 5, 5),
}


# Chosen on validation tasks (experiments/studies/omniglot_search.sh; results in docs/omniglot.md):
# each algorithm's changes from the published starting point, per number of ways: 5 from the
# cpu_demo setting (5-way 1-shot, 300 steps), 20 from 20-way 1-shot runs of 150 steps.
# inner_lr_scale multiplies the inner step size.
SELECTED = {"abml": {5: {"inner_lr_scale": 0.5, "eval_inner_steps": 5}, 20: {}},
            "maml": {5: {"inner_lr_scale": 0.5}, 20: {"eval_inner_steps": 10}}}


def get_config(name: str = "cpu_demo") -> ml_collections.ConfigDict:
    """NAME or NAME,ALGORITHM (abml, the default, or maml): the setting with that algorithm's
    validation-selected settings (``SELECTED``)."""
    setting, _, algorithm = name.partition(",")
    algorithm = algorithm or "abml"
    if setting not in (*SETTINGS, "cpu_demo") or algorithm not in SELECTED:
        raise ValueError(f"unknown omniglot config {name!r}; use NAME or NAME,ALGORITHM with NAME "
                         f"one of {[*SETTINGS, 'cpu_demo']} and ALGORITHM one of {[*SELECTED]}")
    ways = SETTINGS.get(setting, SETTINGS["5w1s"])[0]
    c = classification_config(name, algorithm, SETTINGS.get(setting, SETTINGS["5w1s"]),
                              SELECTED[algorithm][ways])
    c.dataset = "omniglot"
    c.split = "small"              # small | vinyals | lake (each with a validation part)
    c.train_characters = 1028      # vinyals: train / validation characters (the rest test)
    c.validation_characters = 172
    c.validation_alphabets = 5     # lake: background alphabets held out for validation
    c.rotate = True                # 90/180/270° rotations as extra training classes
    if setting == "cpu_demo":      # 5-way 1-shot on the shipped data in minutes on 2 cores
        c.filters = 32
        c.meta_batch = 4
        c.steps = 300
        c.eval_every = 300
        c.eval_tasks = 100
        c.eval_samples = 5
        c.checkpoint_every = 100
    return c


RULES = {
    **classification.RULES,
    "dataset": one_of("omniglot"), "data_source": one_of(*SOURCES), "split": one_of(*SPLITS),
    "train_characters": integer(1), "validation_characters": integer(1),
    "validation_alphabets": integer(1), "rotate": BOOLEAN,
}
__all__ = ["get_config", "resolve", "RESUMABLE_CHANGES", "RULES", "SETTINGS", "SELECTED"]
