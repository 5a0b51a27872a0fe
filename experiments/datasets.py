"""The data sets of ``experiments.classification``, as a config names them (``dataset``):
the rules of the config's keys, a title for figures, how the config loads the data's
meta-train / validation / test pools, and the normalisation of their pixels."""
from typing import Callable, NamedTuple

import ml_collections

from experiments.configs import fewshot as fewshot_configs
from experiments.configs import omniglot as omniglot_configs
from metabayes.data.fewshot import DATASETS as FEWSHOT_DATASETS, load_fewshot
from metabayes.data.omniglot import load_omniglot
from metabayes.data.omniglot_splits import as_pool
from metabayes.data.pools import FewShotSplit, Normalization
from metabayes.errors import options_set_by

SPLIT_SIZES = ("train_characters", "validation_characters", "validation_alphabets")


class DataSet(NamedTuple):
    """A data set as the experiment sees it: the rules of its config's keys, its display name,
    and how a config loads its split (pools) and normalisation."""

    rules: dict
    title: str
    load: Callable[[ml_collections.ConfigDict], FewShotSplit]
    normalization: Normalization


def load_omniglot_pools(config: ml_collections.ConfigDict) -> FewShotSplit:
    with options_set_by({"source": "data_source", "rotate_train": "rotate"}):
        data = load_omniglot(config.split, data_dir=config.data_dir, source=config.data_source,
                             verify_md5=config.verify_md5, seed=config.seed,
                             rotate_train=config.rotate, **{key: config[key] for key in SPLIT_SIZES})
    where = f"Omniglot's {config.split!r} split"
    return FewShotSplit(*(as_pool(part, where) for part in data))


def load_fewshot_pools(config: ml_collections.ConfigDict) -> FewShotSplit:
    with options_set_by({"source": "data_source"}):
        return load_fewshot(config.dataset, data_dir=config.data_dir, source=config.data_source,
                            verify_md5=config.verify_md5)


DATASETS = {
    "omniglot": DataSet(omniglot_configs.RULES, "Omniglot", load_omniglot_pools, Normalization()),
    **{name: DataSet(fewshot_configs.RULES, fewshot_configs.TITLES[name], load_fewshot_pools,
                     dataset.normalization) for name, dataset in FEWSHOT_DATASETS.items()},
}


def dataset_of(config: ml_collections.ConfigDict) -> DataSet:
    """DATASETS[config.dataset], or a ValueError naming the key."""
    name = config.get("dataset")
    if name not in DATASETS:
        raise ValueError(f"`dataset` must be one of {sorted(DATASETS)}; got {name!r}")
    return DATASETS[name]
