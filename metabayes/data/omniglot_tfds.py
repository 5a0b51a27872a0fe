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
from metabayes.errors import DataError

TFDS_SPLITS = {"background": "train", "evaluation": "test", "small1": "small1", "small2": "small2"}


def load_tfds(names: Sequence[str], data_dir: Optional[PathLike], cache: Path
              ) -> Dict[str, Characters]:
    """Characters of TFDS omniglot's splits for archives ``names``, from a prepared data_dir.

    Every image goes through the files' decoding (``shrink``); the examples of one character
    (alphabet, alphabet_char_id) are its drawers, in the order TFDS reads them.
    """
    try:
        import tensorflow_datasets as tfds  # lazy: TensorFlow is needed on this path only
    except ImportError as e:
        raise ImportError("source='tfds' needs tensorflow and tensorflow-datasets: pip install "
                          "'metabayes[tfds]'; the default source needs neither.\n"
                          f"{WAYS_TO_GET_DATA}") from e
    builder = tfds.builder("omniglot", data_dir=None if data_dir is None else os.fspath(data_dir))

    def examples(split: str):
        # as_dataset itself checks that the data are there (so does tfds.testing.mock_data's
        # stand-in for it, which has no files to find), raising AssertionError when they are not.
        try:
            return tfds.as_numpy(builder.as_dataset(split=split))
        except AssertionError as e:
            raise FileNotFoundError(
                f"TFDS omniglot is not prepared in {builder.data_dir} ({e}). Prepare it once, "
                "online, with tfds.builder('omniglot', data_dir=DIR).download_and_prepare() (it "
                f"downloads all four official archives), then pass that data_dir.\n"
                f"{WAYS_TO_GET_DATA}") from e

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
    return {n: cached(cache / f"omniglot-tfds-{TFDS_SPLITS[n]}-{key}-v{DECODE_VERSION}.npz",
                      lambda n=n: decode(n)) for n in names}
