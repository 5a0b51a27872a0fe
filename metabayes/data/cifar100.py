"""CIFAR-100 (Krizhevsky 2009) as a few-shot pool, and its two few-shot splits:

- "cifarfs", CIFAR-FS (Bertinetto et al. 2019): 64 / 16 / 20 fine classes, picked at random;
- "fc100", FC100 (Oreshkin et al. 2018): 12 / 4 / 4 superclasses, so 60 / 20 / 20 fine classes,
  with meta-test classes unlike any meta-training one.

Both take all 600 images of a class (CIFAR's 500 train and 100 test images, in that order), 32×32×3.
The class lists ship in ``metabayes/data/splits/``. Sources (``load_cifar100_pool``):

- "files": the official python archive ``cifar-100-python.tar.gz`` (md5 checked) or its
  extracted folder ``cifar-100-python/`` with ``train``, ``test`` and ``meta`` (Python 2 pickles);
- "tfds": TensorFlow Datasets' ``cifar100`` builder, prepared in ``data_dir`` (TensorFlow is
  imported on this path only). Its examples are put back in the official release's order by their
  ids ("train_00042"), and its label names are the official ones.

The pool is decoded once into the cache, keyed by the archive's md5 (the folder's file names,
sizes and times; TFDS's data directory).
"""
import hashlib
import os
import tarfile
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from metabayes.data.array_cache import Arrays, cached
from metabayes.data.checksums import check_md5, source_digest
from metabayes.data.pools import ClassPool, FewShotSplit, class_list, group_by_class
from metabayes.data.safe_pickle import load_pickle, read_pickle
from metabayes.data.tfds_source import tfds_builder, tfds_examples
from metabayes.errors import DataError

ARCHIVE, FOLDER = "cifar-100-python.tar.gz", "cifar-100-python"
OFFICIAL_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
DECODE_VERSION = 1   # bump whenever decoding changes, so that stale caches are not read
POOL_FIELDS = ("images", "classes", "superclasses")
PARTS = ("train", "validation", "test")

WAYS_TO_GET_DATA = """Ways to provide CIFAR-100 for CIFAR-FS and FC100 (data_dir=DIR, or the
environment variable CIFAR100_DIR=DIR), any one of:
  1. cifar-100-python.tar.gz, the official python archive
     (https://www.cs.toronto.edu/~kriz/cifar.html, md5 eb9058c3a382ffc7106e4002c42a8d85);
  2. its extracted folder cifar-100-python/ (holding train, test and meta);
  3. source="tfds" with data_dir=a TensorFlow Datasets data directory in which `cifar100` has been
     prepared (pip install 'metabayes[tfds]')."""


def find_source(folder: Path) -> Path:
    """folder's archive, else its extracted folder (or folder itself, if it holds the files)."""
    for candidate in (folder / ARCHIVE, folder / FOLDER, folder):
        if candidate.is_file() or all((candidate / n).is_file() for n in ("train", "test", "meta")):
            return candidate
    raise FileNotFoundError(f"CIFAR-100: neither {ARCHIVE} nor {FOLDER}/ in {folder}.\n"
                            f"{WAYS_TO_GET_DATA}")


def read_batches(path: Path) -> Dict[str, dict]:
    """{"train", "test", "meta"}: the unpickled files of the archive or folder ``path``."""
    if path.is_dir():
        return {name: load_pickle(path / name) for name in ("train", "test", "meta")}
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = {m.name: m for m in archive.getmembers() if m.isfile()}
            missing = [n for n in ("train", "test", "meta") if f"{FOLDER}/{n}" not in members]
            if missing:
                raise DataError(f"{path}: no {FOLDER}/{missing[0]} in the archive; expected the "
                                "official python version")
            return {n: read_pickle(archive.extractfile(members[f"{FOLDER}/{n}"]))
                    for n in ("train", "test", "meta")}
    except DataError:
        raise
    except Exception as e:   # tarfile.ReadError, EOFError, zlib.error, UnpicklingError, ...
        raise DataError(f"{path}: not a readable CIFAR-100 python archive ({type(e).__name__}: "
                        f"{e}); download it again") from e


def decode_files(path: Path) -> Arrays:
    """The pool of the archive or folder ``path``: images [100, 600, 32, 32, 3] in label order."""
    batches = read_batches(path)
    try:
        images = np.concatenate([np.asarray(batches[n]["data"], np.uint8)
                                 .reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                                 for n in ("train", "test")])
        fine = np.concatenate([batches[n]["fine_labels"] for n in ("train", "test")])
        coarse = np.concatenate([batches[n]["coarse_labels"] for n in ("train", "test")])
        names = batches["meta"]["fine_label_names"]
        coarse_names = batches["meta"]["coarse_label_names"]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: not CIFAR-100's python batches ({type(e).__name__}: {e})") from e
    return pool_arrays(images, fine, coarse, names, coarse_names, str(path))


def pool_arrays(images, fine, coarse, names, coarse_names, where: str) -> Arrays:
    """images [N, 32, 32, 3] with fine and coarse labels [N] -> the pool's arrays."""
    pool = group_by_class(images, fine, list(names), where)
    superclass_of = np.zeros(len(names), np.int64)
    superclass_of[fine] = coarse
    return {"images": pool.images, "classes": pool.classes,
            "superclasses": np.asarray(coarse_names)[superclass_of]}


def decode_tfds(data_dir: Optional[os.PathLike]) -> Arrays:
    builder = tfds_builder("cifar100", data_dir, WAYS_TO_GET_DATA)
    images, fine, coarse, ids = [], [], [], []
    for split in ("train", "test"):
        examples = tfds_examples(builder, split, WAYS_TO_GET_DATA)
        for example in examples:
            images.append(example["image"])
            fine.append(example["label"])
            coarse.append(example["coarse_label"])
            ids.append(example["id"].decode() if isinstance(example["id"], bytes) else example["id"])
    if not images:
        raise DataError(f"TFDS cifar100 in {builder.data_dir} holds no examples")
    # TFDS stores its examples shuffled; "train_00042" / "test_00007" give back the files' order.
    order = sorted(range(len(ids)), key=lambda i: (not ids[i].startswith("train"), ids[i]))
    features = builder.info.features
    return pool_arrays(np.stack(images)[order].astype(np.uint8), np.asarray(fine)[order],
                       np.asarray(coarse)[order],
                       features["label"].names, features["coarse_label"].names,
                       f"TFDS cifar100 in {builder.data_dir}")


def load_cifar100_pool(data_dir: Optional[os.PathLike], source: str, cache_dir: Path,
                       verify_md5: bool = True) -> Tuple[Arrays, str]:
    """({"images" [100, 600, 32, 32, 3], "classes" [100], "superclasses" [100]}, where they
    were read), through the cache."""
    if source == "tfds":
        key = hashlib.md5(os.fspath(data_dir or "default").encode()).hexdigest()
        arrays = cached(cache_dir / f"cifar100-tfds-{key}-v{DECODE_VERSION}", POOL_FIELDS,
                        lambda: decode_tfds(data_dir), "CIFAR-100")
        return arrays, f"TFDS cifar100 in {data_dir or 'the default data directory'}"
    folder = Path(data_dir or os.environ.get("CIFAR100_DIR") or ".").expanduser()
    path = find_source(folder)
    digest = source_digest(path)
    if verify_md5 and path.is_file():
        check_md5(path, digest, OFFICIAL_MD5)
    arrays = cached(cache_dir / f"cifar100-{digest}-v{DECODE_VERSION}", POOL_FIELDS,
                    lambda: decode_files(path), "CIFAR-100")
    return arrays, str(path)


def split_cifar100(benchmark: str, arrays: Arrays, where: str) -> FewShotSplit:
    """The CIFAR-FS or FC100 (``benchmark``) parts of the pool ``arrays`` read from ``where``,
    by the shipped lists: fine classes for CIFAR-FS, superclasses for FC100. Classes keep
    CIFAR-100's label order."""
    column = arrays["classes"] if benchmark == "cifarfs" else arrays["superclasses"]
    parts = []
    for part in PARTS:
        listed = class_list(f"{benchmark}_{part}")
        absent = sorted(set(listed) - set(np.asarray(column).tolist()))
        if absent:
            raise DataError(f"{where}: lacks {len(absent)} of the {len(listed)} classes of "
                            f"{benchmark}'s {part} split, e.g. {absent[:3]}; it is not the "
                            "official CIFAR-100")
        held = np.flatnonzero(np.isin(column, listed))
        parts.append(ClassPool(arrays["images"][held], np.asarray(arrays["classes"])[held], where))
    return FewShotSplit(*parts)
