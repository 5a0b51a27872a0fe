"""Reading a prepared TensorFlow Datasets builder (``source="tfds"``), for Omniglot and
CIFAR-100. TensorFlow is imported here only, when this path runs (``pip install
'metabayes[tfds]'``), so ``import metabayes`` never loads it."""
import os
from typing import Iterable, Optional


def tfds_builder(name: str, data_dir: Optional[os.PathLike], ways_to_get_data: str):
    """``tfds.builder(name, data_dir)``; an ImportError naming the extra without TFDS."""
    try:
        import tensorflow_datasets as tfds  # lazy: TensorFlow is needed on this path only
    except ImportError as e:
        raise ImportError("source='tfds' needs tensorflow and tensorflow-datasets: pip install "
                          "'metabayes[tfds]'; the default source needs neither.\n"
                          f"{ways_to_get_data}") from e
    return tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))


def tfds_examples(builder, split: str, ways_to_get_data: str, downloads: str = "") -> Iterable:
    """The numpy examples of ``split``; FileNotFoundError saying how to prepare the builder when
    it is not prepared in its data_dir (``downloads``: what preparing fetches, for the message).
    """
    import tensorflow_datasets as tfds
    # as_dataset itself checks that the data are there (so does tfds.testing.mock_data's
    # stand-in for it, which has no files to find), raising AssertionError when they are not.
    try:
        return tfds.as_numpy(builder.as_dataset(split=split))
    except AssertionError as e:
        raise FileNotFoundError(
            f"TFDS {builder.name} is not prepared in {builder.data_dir} ({e}). Prepare it once, "
            f"online, with tfds.builder({builder.name!r}, data_dir=DIR).download_and_prepare()"
            f"{downloads}, then pass that data_dir.\n{ways_to_get_data}") from e
