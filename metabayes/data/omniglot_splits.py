"""Omniglot's meta-train / validation / meta-test classes (``split_characters``).

Every split has a validation part, disjoint from the other two, so that settings and
checkpoints are chosen on validation tasks and the test tasks are scored once, at the end:

- "small": train = images_background_small1 less its Korean alphabet (4 alphabets, 96
  characters); validation = Korean (40 characters); test = the alphabets of
  images_background_small2 absent from small1: Japanese_(katakana), Sanskrit and Tagalog (106
  characters). Greek and Latin are identical in both archives and stay in train only. The
  validation part is one whole alphabet, as the test part is unseen alphabets; Korean is the
  only small1 alphabet with the 40 characters that a 20-way evaluation episode needs (2 × 20
  classes, see ``metabayes.evaluation``). It costs training 40 of its 136 characters (29%).
- "vinyals": background + evaluation (1623 characters) pooled and shuffled with ``seed``; the
  first ``train_characters`` (1028) train, the next ``validation_characters`` (172) validate,
  the other 423 test: the 1028 / 172 / 423 convention of Ravi & Larochelle-style Omniglot loaders
  (torchmeta, learn2learn). By character, as in Vinyals et al. (2016) and Finn et al. (2017),
  so one alphabet may appear in two parts. The test part is the one that a 1200 / 423 split with
  the same seed tests on.
- "lake": train = images_background less ``validation_alphabets`` (5) of its 30 alphabets,
  drawn with ``seed``; validation = those 5; test = images_evaluation (20 alphabets, 659
  characters), as in Lake et al. (2015).

Rotations by 90, 180 and 270° make three more classes of every character
(``with_rotations``); the loaders apply them to the training part only by default.
"""
from typing import NamedTuple

import numpy as np

from metabayes.data.pools import ClassPool

SMALL_VALIDATION_ALPHABETS = ("Korean",)


class Characters(NamedTuple):
    """One class per row: images [C, 20, 28, 28] uint8 (ink 255); alphabets, characters (folder
    names, e.g. "character07") and rotations (degrees, counter-clockwise) [C]."""

    images: np.ndarray
    alphabets: np.ndarray
    characters: np.ndarray
    rotations: np.ndarray


class OmniglotSplit(NamedTuple):
    """Meta-train, validation and meta-test classes, pairwise disjoint."""

    train: Characters
    validation: Characters
    test: Characters


def subset(chars: Characters, index: np.ndarray) -> Characters:
    return Characters(*(field[index] for field in chars))


def concatenate(first: Characters, second: Characters) -> Characters:
    return Characters(*(np.concatenate(pair) for pair in zip(first, second)))


def by_alphabet(chars: Characters, alphabets) -> tuple[Characters, Characters]:
    """(the characters of ``alphabets``, the others)."""
    held = np.isin(chars.alphabets, list(alphabets))
    return subset(chars, held), subset(chars, ~held)


def split_characters(split: str, first: Characters, second: Characters, *, seed: int = 0,
                     train_characters: int = 1028, validation_characters: int = 172,
                     validation_alphabets: int = 5) -> OmniglotSplit:
    """(train, validation, test) of ``split`` from its two archives (module docstring)."""
    if split == "small":
        validation, train = by_alphabet(first, SMALL_VALIDATION_ALPHABETS)
        return OmniglotSplit(train, validation, by_alphabet(second, first.alphabets)[1])
    if split == "lake":
        names = np.unique(first.alphabets)
        if not 0 < validation_alphabets < len(names):
            raise ValueError(f"`validation_alphabets` must be in 1..{len(names) - 1} (the "
                             f"background set has {len(names)} alphabets); got "
                             f"{validation_alphabets}")
        held = np.random.default_rng(seed).choice(names, validation_alphabets, replace=False)
        validation, train = by_alphabet(first, held)
        return OmniglotSplit(train, validation, second)
    pooled = concatenate(first, second)
    total = len(pooled.images)
    if not (train_characters >= 1 and validation_characters >= 1
            and train_characters + validation_characters < total):
        raise ValueError(f"`train_characters` and `validation_characters` must be at least 1 and "
                         f"leave test characters (the pool holds {total}); got "
                         f"{train_characters} and {validation_characters}")
    order = np.random.default_rng(seed).permutation(total)
    parts = np.split(order, [train_characters, train_characters + validation_characters])
    return OmniglotSplit(*(subset(pooled, np.sort(part)) for part in parts))


def with_rotations(chars: Characters) -> Characters:
    """[4C, ...]: every character at 0, 90, 180 and 270° (counter-clockwise), rotation-major."""
    rotations = np.tile(chars.rotations, 4) + np.repeat(np.arange(4) * 90, len(chars.images))
    return Characters(np.concatenate([np.rot90(chars.images, k, axes=(2, 3)) for k in range(4)]),
                      np.tile(chars.alphabets, 4), np.tile(chars.characters, 4),
                      (rotations % 360).astype(np.int32))


def as_pool(chars: Characters, source: str = "") -> ClassPool:
    """The few-shot pool of ``chars``: images [C, 20, 28, 28, 1], each class named
    alphabet/character/rotation."""
    names = [f"{a}/{c}/{r}" for a, c, r in zip(chars.alphabets, chars.characters, chars.rotations)]
    return ClassPool(chars.images[..., None], np.asarray(names), source)
