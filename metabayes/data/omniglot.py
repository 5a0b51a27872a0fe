"""Omniglot (Lake, Salakhutdinov & Tenenbaum, Science 2015): where the archives come from, their
checksums, and loading a split.

Decoding is ``metabayes.data.omniglot_decode``: decoded archives are cached in ``cache_dir``
(default $METABAYES_CACHE, else ~/.cache/metabayes; ``metabayes.data.array_cache``), keyed by
the md5 of the archive and ``DECODE_VERSION``, so a second load only reads the cache.

Sources, in order: ``data_dir`` (explicit; then the only place looked at), $OMNIGLOT_DIR, the two
small archives shipped in ``omniglot_small/`` (the default, enough for split "small"); or
``source="tfds"``, which reads a prepared TensorFlow Datasets ``omniglot`` (``data_dir`` is then
the TFDS data directory; TensorFlow is imported only on this path).

Splits "small", "vinyals" and "lake", each with train, validation and test classes: see
``metabayes.data.omniglot_splits``. Rotations by 90, 180 and 270° make three more classes of
every character (``rotate_train``, on by default; ``rotate_eval`` for validation and test, off by
default).
"""
import os
from pathlib import Path
from typing import Optional, Sequence, Union

from metabayes.data.array_cache import cache_root
from metabayes.data.checksums import check_md5, source_digest
from metabayes.data.omniglot_decode import DECODE_VERSION, cached, decode_archive
from metabayes.data.omniglot_splits import (Characters, OmniglotSplit, split_characters,
                                            with_rotations)

PathLike = Union[str, os.PathLike]

SHIPPED_DIR = Path(__file__).resolve().parent / "omniglot_small"
ARCHIVES = {"background": "images_background", "evaluation": "images_evaluation",
            "small1": "images_background_small1", "small2": "images_background_small2"}
OFFICIAL_MD5 = {"images_background": "68d2efa1b9178cc56df9314c21c6e718",
                "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
                "images_background_small1": "e704a628b5459e08445c13499850abc4",
                "images_background_small2": "b75a71a51d3b13f821f212756fe481fd"}
SOURCES = ("files", "tfds")   # the archives' files, or a prepared TensorFlow Datasets omniglot
SPLITS = {"small": ("small1", "small2"), "vinyals": ("background", "evaluation"),
          "lake": ("background", "evaluation")}

WAYS_TO_GET_DATA = """Ways to provide Omniglot:
  1. data_dir=DIR, a folder holding the official images_background.zip and images_evaluation.zip
     (or their unzipped folders images_background/ and images_evaluation/) from
     https://github.com/brendenlake/omniglot (folder python/);
  2. the environment variable OMNIGLOT_DIR=DIR, for such a folder;
  3. split="small" (the default), which reads the two small archives shipped with metabayes in
     metabayes/data/omniglot_small/ — offline, no download;
  4. source="tfds" with data_dir=a TensorFlow Datasets data directory in which `omniglot` has been
     prepared (pip install 'metabayes[tfds]')."""


def load_omniglot(split: str = "small", *, data_dir: Optional[PathLike] = None,
                  source: str = "files", cache_dir: Optional[PathLike] = None,
                  verify_md5: bool = True, seed: int = 0, rotate_train: bool = True,
                  rotate_eval: bool = False, **split_sizes) -> OmniglotSplit:
    """Meta-train, validation and meta-test classes of ``split`` ("small", "vinyals", "lake").

    data_dir / source / cache_dir: where the data and the decoded cache are (module docstring).
    verify_md5: check archives named like the official ones against their published md5 (turn
    it off only for custom archives). seed and ``split_sizes`` (train_characters,
    validation_characters, validation_alphabets): see ``omniglot_splits.split_characters``.
    rotate_train / rotate_eval: add the 90/180/270° rotations as classes to the training part /
    to the validation and test parts.
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {sorted(SPLITS)}; got {split!r}")
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {SOURCES}; got {source!r}")
    cache = cache_root(cache_dir)
    names = SPLITS[split]
    if source == "tfds":
        from metabayes.data.omniglot_tfds import load_tfds   # imports omniglot: here, not above
        parts = load_tfds(names, data_dir, cache)
    else:
        folder = find_data_dir(names, data_dir)
        parts = {n: load_archive(archive_path(folder, ARCHIVES[n]), cache, verify_md5)
                 for n in names}
    parts = split_characters(split, parts[names[0]], parts[names[1]], seed=seed, **split_sizes)
    rotated = lambda chars, rotate: with_rotations(chars) if rotate else chars
    return OmniglotSplit(rotated(parts.train, rotate_train),
                         rotated(parts.validation, rotate_eval), rotated(parts.test, rotate_eval))


def archive_path(folder: Path, stem: str) -> Optional[Path]:
    """folder/stem.zip, else the unzipped folder/stem/, else None."""
    zipped, unzipped = folder / f"{stem}.zip", folder / stem
    if zipped.is_file():
        return zipped
    return unzipped if unzipped.is_dir() else None


def find_data_dir(names: Sequence[str], data_dir: Optional[PathLike] = None) -> Path:
    """The first of data_dir (alone, if given), $OMNIGLOT_DIR, SHIPPED_DIR holding all archives."""
    if data_dir is not None:
        candidates = [Path(data_dir).expanduser()]
    else:
        candidates = [Path(p).expanduser() for p in [os.environ.get("OMNIGLOT_DIR")] if p]
        candidates.append(SHIPPED_DIR)
    for folder in candidates:
        if all(archive_path(folder, ARCHIVES[n]) for n in names):
            return folder
    wanted = " and ".join(f"{ARCHIVES[n]}.zip" for n in names)
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"Omniglot: {wanted} (or their unzipped folders) not found in "
                            f"{looked}.\n{WAYS_TO_GET_DATA}")


def load_archive(path: Path, cache_dir: Path, verify_md5: bool = True) -> Characters:
    """Decoded characters of a zip archive or unzipped folder, through the cache (``array_cache``)."""
    stem = path.name[:-len(".zip")] if path.is_file() else path.name
    digest = source_digest(path)
    if verify_md5 and path.is_file():
        check_md5(path, digest, OFFICIAL_MD5.get(stem))
    return cached(cache_dir / f"omniglot-{stem}-{digest}-v{DECODE_VERSION}",
                  lambda: decode_archive(path))
