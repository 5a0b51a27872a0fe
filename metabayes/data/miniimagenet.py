"""miniImageNet (Vinyals et al. 2016) with Ravi & Larochelle's (2017) split: 64 meta-train, 16
validation and 20 meta-test ImageNet classes of 600 images each, 84×84×3.

``load_miniimagenet(data_dir)`` reads whichever of the three common layouts ``data_dir`` holds,
detected by its files (``LAYOUTS``, tried in this order):

- "cache": the ``mini-imagenet-cache-{train,val,test}.pkl`` of Ren et al.'s archive, read by
  torchmeta and learn2learn (which names the validation file ``...-validation.pkl``), each a dict with
  ``image_data`` [N, 84, 84, 3] uint8 and ``class_dict`` {wnid: [indices into image_data]};
- "metaoptnet": MetaOptNet's ``miniImageNet_category_split_{train_phase_train,val,test}.pickle``
  (Python 2 pickles), each a dict with ``data`` [N, 84, 84, 3] uint8, ``labels`` [N] ints and
  ``catname2label`` {wnid: label};
- "csv": Ravi & Larochelle's ``images/`` folder with ``train.csv``, ``val.csv``, ``test.csv``
  (header ``filename,label``; rows like ``n0153282900000005.jpg,n01532829``). Images of another
  size are resized to 84×84 with PIL's LANCZOS filter, as MAML's ``proc_images.py`` does.

Every layout gives the same pools: classes in wnid order, each class's images in the file's
order. The classes must be those of the shipped lists (``splits/miniimagenet_*.txt``). Each
split is decoded once into the cache (``metabayes.data.array_cache``), keyed by the md5 of its
pickle, or of its CSV and the names, sizes and times of the image files (``load_miniimagenet``).
"""
import csv
import hashlib
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np
from PIL import Image

from metabayes.data.array_cache import cached
from metabayes.data.checksums import file_md5, folder_digest
from metabayes.data.pools import (ClassPool, FewShotSplit, check_classes, class_list,
                                  group_by_class)
from metabayes.data.safe_pickle import load_pickle
from metabayes.errors import DataError

SIZE = 84
DECODE_VERSION = 1   # bump whenever decoding changes, so that stale caches are not read
PARTS = ("train", "validation", "test")
SPLIT_NAMES = {"train": "train", "validation": "val", "test": "test"}   # the files' names


class Layout(NamedTuple):
    """A layout: its file per split and how to read one."""

    files: Dict[str, Tuple[str, ...]]          # part -> its file's possible names in data_dir
    read: Callable[[Path], ClassPool]          # the file -> its pool (unchecked classes)


def images_of(data, where: str, key: str) -> np.ndarray:
    """data[key], checked to be [N, 84, 84, 3] uint8."""
    images = data.get(key) if isinstance(data, dict) else None
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4
            and images.shape[1:] == (SIZE, SIZE, 3)):
        found = (f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray)
                 else type(images).__name__)
        raise DataError(f"{where}: expected a dict whose {key!r} is [N, {SIZE}, {SIZE}, 3] uint8; "
                        f"got {found}")
    return images


def read_cache_pickle(path: Path) -> ClassPool:
    data = load_pickle(path)
    images = images_of(data, str(path), "image_data")
    class_dict = data.get("class_dict")
    if not isinstance(class_dict, dict) or not class_dict:
        raise DataError(f"{path}: expected a dict whose 'class_dict' maps each class to the "
                        "indices of its images")
    names = sorted(class_dict)
    labels = np.full(len(images), -1)
    for label, name in enumerate(names):
        index = np.asarray(class_dict[name], np.int64)
        if len(index) and (index.min() < 0 or index.max() >= len(images)
                           or np.any(labels[index] >= 0)):
            raise DataError(f"{path}: 'class_dict' gives {name} indices beyond the {len(images)} "
                            "images of 'image_data', or images of another class")
        labels[index] = label
    return group_by_class(images, labels, names, str(path))


def read_metaoptnet(path: Path) -> ClassPool:
    data = load_pickle(path)
    images = images_of(data, str(path), "data")
    labels, label_of = np.asarray(data.get("labels", [])), data.get("catname2label")
    if labels.shape != (len(images),) or not isinstance(label_of, dict):
        raise DataError(f"{path}: expected 'labels' with one label per image and 'catname2label' "
                        "mapping each class to its label")
    names = sorted(name for name, label in label_of.items() if np.any(labels == label))
    dense = {label_of[name]: i for i, name in enumerate(names)}
    unnamed = set(np.unique(labels).tolist()) - set(dense)
    if unnamed:
        raise DataError(f"{path}: labels {sorted(unnamed)[:3]} have no class in 'catname2label'")
    return group_by_class(images, np.vectorize(dense.get)(labels), names, str(path))


def read_csv_images(csv_path: Path) -> ClassPool:
    """The images that a Ravi & Larochelle CSV names, from the images/ folder beside it."""
    folder = csv_path.parent / "images"
    try:
        with open(csv_path, newline="") as f:
            rows = [row for row in csv.reader(f) if row]   # blank lines carry nothing
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{csv_path}: cannot read the CSV ({e})") from e
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"] or len(rows) < 2:
        raise DataError(f"{csv_path}: expected the header 'filename,label' and one row per image")
    bad = [i + 1 for i, row in enumerate(rows) if len(row) != 2]
    if bad:
        raise DataError(f"{csv_path}: line {bad[0]} does not have the two columns filename,label")
    files, classes = zip(*((f.strip(), c.strip()) for f, c in rows[1:]))
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{csv_path}: names {len(missing)} images missing from {folder}, e.g. "
                        f"{missing[0]}")
    with ThreadPoolExecutor(4) as pool:   # PIL decodes outside the GIL
        images = np.stack(list(pool.map(lambda name: decode_jpeg(folder / name), files)))
    names = sorted(set(classes))
    labels = np.searchsorted(names, classes)
    return group_by_class(images, labels, names, str(csv_path))


def decode_jpeg(path: Path) -> np.ndarray:
    """[84, 84, 3] uint8: RGB, LANCZOS-resized where the file is another size."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (SIZE, SIZE):
                image = image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
            return np.asarray(image)
    except Exception as e:   # PIL raises OSError, SyntaxError, ValueError, ... on a bad file
        raise DataError(f"{path}: cannot decode the image ({type(e).__name__}: {e})") from e


LAYOUTS = {
    "cache": Layout({"train": ("mini-imagenet-cache-train.pkl",),
                     "validation": ("mini-imagenet-cache-val.pkl",
                                    "mini-imagenet-cache-validation.pkl"),
                     "test": ("mini-imagenet-cache-test.pkl",)}, read_cache_pickle),
    "metaoptnet": Layout({"train": ("miniImageNet_category_split_train_phase_train.pickle",),
                          "validation": ("miniImageNet_category_split_val.pickle",),
                          "test": ("miniImageNet_category_split_test.pickle",)},
                         read_metaoptnet),
    "csv": Layout({p: (f"{SPLIT_NAMES[p]}.csv",) for p in PARTS}, read_csv_images),
}

WAYS_TO_GET_DATA = """Ways to provide miniImageNet (data_dir=DIR, or the environment variable
MINIIMAGENET_DIR=DIR), any one of:
  1. mini-imagenet-cache-train.pkl, mini-imagenet-cache-val.pkl (or -validation.pkl),
     mini-imagenet-cache-test.pkl: the pickles of Ren et al.'s mini-imagenet archive, which
     torchmeta and learn2learn (l2l.vision.datasets.MiniImagenet) download;
  2. miniImageNet_category_split_train_phase_train.pickle, miniImageNet_category_split_val.pickle,
     miniImageNet_category_split_test.pickle: MetaOptNet's pickles
     (https://github.com/kjunelee/MetaOptNet, "Download and decompress miniImageNet");
  3. images/ with train.csv, val.csv, test.csv: Ravi & Larochelle's split
     (https://github.com/twitter/meta-learning-lstm, data/miniImagenet/) of the ImageNet images,
     e.g. made by MAML's data/miniImagenet/proc_images.py (https://github.com/cbfinn/maml)."""


def layout_file(folder: Path, layout: Layout, part: str) -> Optional[Path]:
    return next((folder / n for n in layout.files[part] if (folder / n).is_file()), None)


def find_layout(folder: Path) -> Tuple[str, Dict[str, Path]]:
    """(the first of LAYOUTS whose files are all in folder (and images/, for "csv"), the file of
    each part)."""
    for name, layout in LAYOUTS.items():
        files = {part: layout_file(folder, layout, part) for part in PARTS}
        if all(files.values()) and (name != "csv" or (folder / "images").is_dir()):
            return name, files
    raise FileNotFoundError(f"miniImageNet: no complete layout in {folder}.\n{WAYS_TO_GET_DATA}")


def load_miniimagenet(folder: Path, cache_dir: Path) -> FewShotSplit:
    """The train, validation and test pools of the layout in ``folder``, each through the cache,
    keyed by the md5 of its file (and, for "csv", by the names, sizes and times of images/,
    read once for the three parts)."""
    layout_name, files = find_layout(folder)
    images_digest = folder_digest(folder / "images") if layout_name == "csv" else ""
    return FewShotSplit(*(load_part(layout_name, files[part], part, cache_dir, images_digest)
                          for part in PARTS))


def load_part(layout_name: str, path: Path, part: str, cache_dir: Path,
              images_digest: str) -> ClassPool:
    """One part ("train", "validation", "test"), read from ``path``, through the cache."""
    digest = hashlib.md5(f"{file_md5(path)}:{images_digest}".encode()).hexdigest()
    name = f"miniimagenet-{layout_name}-{part}-{digest}-v{DECODE_VERSION}"
    arrays = cached(cache_dir / name, ("images", "classes"),
                    lambda: LAYOUTS[layout_name].read(path)._asdict(), "miniImageNet")
    official = class_list(f"miniimagenet_{part}")
    check_classes(arrays["classes"], official, str(path), f"miniImageNet {part}")
    if len(arrays["classes"]) < len(official):
        warnings.warn(f"{path}: {len(arrays['classes'])} of the {len(official)} classes of "
                      f"miniImageNet's {part} split")
    return ClassPool(arrays["images"], np.asarray(arrays["classes"]), str(path))
