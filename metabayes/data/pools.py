"""Few-shot image pools: every class's images in one uint8 array, split into meta-train,
validation and meta-test classes, and how a data set's pixels become network inputs.

A pool stays uint8 ([C classes, D images, H, W, channels], 1 byte a pixel, memory-mapped from
the cache) until ``EpisodeSampler`` draws a batch from it; only the batch becomes float32,
normalised per channel by the data set's ``Normalization``.
"""
from importlib import resources
from typing import NamedTuple, Sequence, Tuple

import numpy as np

from metabayes.errors import DataError


class ClassPool(NamedTuple):
    """images [C, D, H, W, channels] uint8 (D images of each of C classes); classes [C] their
    names (e.g. ImageNet wnids); source: the file or folder they were read from, for errors."""

    images: np.ndarray
    classes: np.ndarray
    source: str = ""


class FewShotSplit(NamedTuple):
    """Meta-train, validation and meta-test classes, pairwise disjoint."""

    train: ClassPool
    validation: ClassPool
    test: ClassPool


class Normalization(NamedTuple):
    """x = (pixel / 255 − mean) / std per channel; mean and std have one entry per channel or
    one for all. The identity on [0, 1] (mean 0, std 1) is Omniglot's: ink 1, background 0."""

    mean: Tuple[float, ...] = (0.0,)
    std: Tuple[float, ...] = (1.0,)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """float32 inputs [..., channels] from uint8 pixels [..., channels]."""
        x = pixels * np.float32(1 / 255)
        return (x - np.float32(self.mean)) / np.float32(self.std)


def group_by_class(images: np.ndarray, labels: np.ndarray, names: Sequence[str], where: str
                   ) -> ClassPool:
    """The pool [C, D, ...] of images [N, ...] with labels [N] (an index into ``names``; −1
    leaves an image out), in the order of ``names``; the images of one class keep their order,
    and the pool is one copy of them. DataError naming ``where`` if some class of ``names`` has
    no image or the classes differ in size (a pool is rectangular; nothing is dropped silently)."""
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels >= 0], minlength=len(names))[:len(names)]
    if counts.min() == 0 or counts.min() != counts.max():
        sizes = dict(zip(names, counts.tolist()))
        raise DataError(f"{where}: every class needs the same number of images; got {sizes}")
    order = np.argsort(labels, kind="stable")[np.count_nonzero(labels < 0):]
    pool = images[order].reshape(len(names), counts[0], *images.shape[1:])
    return ClassPool(pool, np.asarray(names), where)


def class_list(name: str) -> Tuple[str, ...]:
    """A split's class names, shipped as package data in ``metabayes/data/splits/NAME.txt``."""
    text = resources.files("metabayes.data").joinpath("splits", f"{name}.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def check_classes(found: Sequence[str], official: Sequence[str], where: str, split: str) -> None:
    """DataError naming ``where`` unless every class found is one of the ``official`` split's."""
    unknown = sorted(set(found) - set(official))
    if unknown:
        raise DataError(f"{where}: {len(unknown)} classes are not in the official {split} split "
                        f"({len(official)} classes), e.g. {unknown[:3]}; the file belongs to "
                        "another split or release")
