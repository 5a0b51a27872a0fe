"""Omniglot from a prepared TensorFlow Datasets ``omniglot`` (``load_omniglot(source="tfds")``).

TFDS's ``train``/``test``/``small1``/``small2`` splits are the official archives; every image
goes through the files' decoding, and the result is cached like the files'. TensorFlow is
imported here only, when this path runs (``pip install 'metabayes[tfds]'``).
"""
import hashlib
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from metabayes.data.omniglot import WAYS_TO_GET_DATA, PathLike
from metabayes.data.omniglot_decode import DECODE_VERSION, DRAWERS, cached, shrink
from metabayes.data.omniglot_splits import Characters
from metabayes.data.tfds_source import tfds_builder, tfds_examples
from metabayes.errors import DataError

TFDS_SPLITS = {"background": "train", "evaluation": "test", "small1": "small1", "small2": "small2"}


def load_tfds(names: Sequence[str], data_dir: Optional[PathLike], cache: Path
              ) -> Dict[str, Characters]:
    """Characters of TFDS omniglot's splits for archives ``names``, from a prepared data_dir.

    Every image goes through the files' decoding (``shrink``); the examples of one character
    (alphabet, alphabet_char_id) are its drawers, in the order TFDS reads them.
    """
    builder = tfds_builder("omniglot", data_dir, WAYS_TO_GET_DATA)
    examples = lambda split: tfds_examples(builder, split, WAYS_TO_GET_DATA,
                                           " (it downloads all four official archives)")

    def decode(name: str) -> Characters:
        split = TFDS_SPLITS[name]
        alphabet_names = builder.info.features["alphabet"].names
        groups: Dict[Tuple[str, str], List[np.ndarray]] = {}
        for example in examples(split):
            key = (alphabet_names[example["alphabet"]],
                   f"character{int(example['alphabet_char_id']) + 1:02d}")
            groups.setdefault(key, []).append(shrink(Image.fromarray(example["image"][..., 0])))
        keys = sorted(groups)
        if not keys:
            raise DataError(f"TFDS omniglot split {split!r} in {builder.data_dir} holds no "
                            "examples")
        bad = [(k, len(groups[k])) for k in keys if len(groups[k]) != DRAWERS]
        if bad:
            raise DataError(f"TFDS omniglot split {split!r} in {builder.data_dir}: expected "
                            f"{DRAWERS} images per character (alphabet, character); "
                            f"{len(bad)} of {len(keys)} differ, e.g. {bad[:3]}")
        return Characters(np.stack([np.stack(groups[k]) for k in keys]),
                          np.array([k[0] for k in keys]), np.array([k[1] for k in keys]),
                          np.zeros(len(keys), np.int32))

    key = hashlib.md5(os.fspath(builder.data_dir).encode()).hexdigest()
    return {n: cached(cache / f"omniglot-tfds-{TFDS_SPLITS[n]}-{key}-v{DECODE_VERSION}",
                      lambda n=n: decode(n)) for n in names}
