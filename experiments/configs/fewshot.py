"""miniImageNet, CIFAR-FS and FC100 configs, the ABML paper's Table 2 (Ravi & Beatson 2019):
``--config=experiments/configs/fewshot.py:NAME`` or ``NAME,ALGORITHM``, with NAME one of
miniimagenet_5w1s, miniimagenet_5w5s, cifarfs_5w1s, cifarfs_5w5s, cifarfs_10w1s, cifarfs_10w5s,
fc100_5w1s, fc100_5w5s and ALGORITHM abml (default) or maml.

The starting point is MAML's published miniImageNet setting (Finn et al., 2017), which the ABML
paper's MAML baseline follows and which CIFAR-FS's MAML baselines reuse: Conv4 with 32 filters,
inner step size 0.01 for the mean cross-entropy (``inner_lr`` = 0.01 / (N·K) for our summed
likelihood), 5 inner steps in training and 10 at test, meta-batch 4 for 1-shot and 2 for 5-shot,
Adam 1e-3, 60,000 steps, Q = 15 query images per class. The paper's evaluation: 1,000 test
episodes of 15 queries per class; validation episodes score the intervals, as for Omniglot
(``experiments/configs/omniglot.py``; the final evaluation scores ``evaluate_on``).

ABML's σ_θ, β and log σ's step are the Omniglot config's (``experiments/configs/
classification.py``). Unlike Omniglot's, these settings are not validation-selected: no machine
here has the data, so no search has run (``SELECTED`` is empty). Run
experiments/studies/omniglot_search.sh's recipe with ``evaluate_on=validation`` on these configs
before quoting a test number.
"""
import ml_collections

from experiments.configs import classification
from experiments.configs.classification import classification_config
from metabayes.config_checks import one_of
from metabayes.data.fewshot import DATASETS

TITLES = {"miniimagenet": "miniImageNet", "cifarfs": "CIFAR-FS", "fc100": "FC100"}
# ways, shots, meta_batch, MAML's mean-loss inner lr, train steps K, test steps
SETTINGS = {f"{dataset}_{ways}w{shots}s": (ways, shots, 4 if shots == 1 else 2, 0.01, 5, 10)
            for dataset in TITLES for ways in (5, 10) for shots in (1, 5)
            if ways == 5 or dataset == "cifarfs"}
SELECTED = {"abml": {}, "maml": {}}   # nothing validation-selected yet (module docstring)


def get_config(name: str = "miniimagenet_5w1s") -> ml_collections.ConfigDict:
    """NAME or NAME,ALGORITHM (abml, the default, or maml)."""
    setting, _, algorithm = name.partition(",")
    algorithm = algorithm or "abml"
    if setting not in SETTINGS or algorithm not in SELECTED:
        raise ValueError(f"unknown fewshot config {name!r}; use NAME or NAME,ALGORITHM with NAME "
                         f"one of {[*SETTINGS]} and ALGORITHM one of {[*SELECTED]}")
    c = classification_config(name, algorithm, SETTINGS[setting], SELECTED[algorithm])
    c.dataset = setting.split("_")[0]
    c.filters = 32
    c.eval_meta_batch = 10
    return c


RULES = {**classification.RULES, "dataset": one_of(*DATASETS)}
