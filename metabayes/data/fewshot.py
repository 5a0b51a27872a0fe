"""The few-shot image classification data sets, by name: ``load_fewshot(name, ...)``.

| name | classes (train / validation / test) | images | input | normalisation |
|---|---|---|---|---|
| miniimagenet | 64 / 16 / 20 ImageNet classes | 600 a class | 84×84×3 | per channel |
| cifarfs | 64 / 16 / 20 CIFAR-100 classes | 600 a class | 32×32×3 | per channel |
| fc100 | 60 / 20 / 20 (12 / 4 / 4 superclasses) | 600 a class | 32×32×3 | per channel |

(Omniglot, 28×28×1 with ink 1 and background 0, has its own loader with its splits and
rotations: ``metabayes.data.omniglot``.) Inputs are (pixel / 255 − mean) / std per channel, with
the mean and standard deviation of the set's images that MetaOptNet (Lee et al. 2019) uses; batch
norm after every convolution makes the network nearly indifferent to this choice, but not the
first layer's padding. Pools stay uint8 until a batch is drawn (``metabayes.data.pools``).
"""
import os
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Tuple

from metabayes.data import cifar100, miniimagenet
from metabayes.data.array_cache import cache_root
from metabayes.data.pools import FewShotSplit, Normalization

SOURCES = ("files", "tfds")


class DataSet(NamedTuple):
    """How to read a data set (data_dir, source, cache_dir, verify_md5 -> its split), its
    input shape and its normalisation."""

    load: Callable[[Optional[os.PathLike], str, Path, bool], FewShotSplit]
    input_shape: Tuple[int, int, int]
    normalization: Normalization
    sources: Tuple[str, ...]


def miniimagenet_split(data_dir, source: str, cache_dir: Path, verify_md5: bool) -> FewShotSplit:
    folder = Path(data_dir or os.environ.get("MINIIMAGENET_DIR") or ".").expanduser()
    return miniimagenet.load_miniimagenet(folder, cache_dir)


def cifar_benchmark(benchmark: str):
    def load(data_dir, source: str, cache_dir: Path, verify_md5: bool) -> FewShotSplit:
        arrays, where = cifar100.load_cifar100_pool(data_dir, source, cache_dir, verify_md5)
        return cifar100.split_cifar100(benchmark, arrays, where)
    return load


def per_channel(mean_pixel, std_pixel) -> Normalization:
    """Normalization from a mean and standard deviation in pixel units (0..255)."""
    return Normalization(tuple(v / 255 for v in mean_pixel), tuple(v / 255 for v in std_pixel))


# MetaOptNet's (data/mini_imagenet.py, data/CIFAR_FS.py, data/FC100.py) mean_pix and std_pix.
CIFAR100_NORMALIZATION = per_channel((129.37731888, 124.10583864, 112.47758569),
                                     (68.20947949, 65.43124043, 70.45866994))
DATASETS = {
    "miniimagenet": DataSet(miniimagenet_split, (84, 84, 3),
                            per_channel((120.39586422, 115.59361427, 104.54012653),
                                        (70.68188272, 68.27635443, 72.54505529)),
                            ("files",)),
    "cifarfs": DataSet(cifar_benchmark("cifarfs"), (32, 32, 3), CIFAR100_NORMALIZATION, SOURCES),
    "fc100": DataSet(cifar_benchmark("fc100"), (32, 32, 3), CIFAR100_NORMALIZATION, SOURCES),
}


def load_fewshot(name: str, *, data_dir: Optional[os.PathLike] = None, source: str = "files",
                 cache_dir: Optional[os.PathLike] = None, verify_md5: bool = True) -> FewShotSplit:
    """Meta-train, validation and meta-test pools of data set ``name`` (module docstring).

    data_dir: the folder holding the files (else $MINIIMAGENET_DIR / $CIFAR100_DIR, else the
    working directory); with source="tfds", a TensorFlow Datasets data directory. cache_dir:
    where decoded pools are kept (default $METABAYES_CACHE, else ~/.cache/metabayes).
    verify_md5: check official archives against their published md5.
    """
    if name not in DATASETS:
        raise ValueError(f"`dataset` must be one of {sorted(DATASETS)}; got {name!r}")
    dataset = DATASETS[name]
    if source not in dataset.sources:
        raise ValueError(f"`data_source` for {name} must be one of {dataset.sources}; got "
                         f"{source!r}")
    return dataset.load(data_dir, source, cache_root(cache_dir), verify_md5)
