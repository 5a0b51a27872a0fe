"""Synthetic miniImageNet and CIFAR-100 files in their official layouts, written by the tests
(no machine here has the data). Images are class prototypes plus noise, so a few steps of
meta-training can learn something; JPEGs are decoded back, so every layout holds the very same
pixels and must give the same pools."""
import io
import pickle
import tarfile
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
from PIL import Image

from metabayes.data.pools import class_list

PARTS = ("train", "validation", "test")
FILE_PART = {"train": "train", "validation": "val", "test": "test"}
LABEL_OFFSET = {"train": 0, "validation": 64, "test": 80}   # MetaOptNet's labels run across splits
Pools = Dict[str, Tuple[list, np.ndarray, list]]   # part -> (wnids, images [C, D, 84, 84, 3], JPEGs)


def class_images(rng, classes: int, images: int, size: int) -> np.ndarray:
    """[classes, images, size, size, 3] uint8: a random prototype per class plus noise."""
    prototypes = rng.integers(0, 256, (classes, 1, size // 4, size // 4, 3))
    prototypes = prototypes.repeat(4, axis=2).repeat(4, axis=3)
    noise = rng.normal(0, 40, (classes, images, size, size, 3))
    return np.clip(prototypes + noise, 0, 255).astype(np.uint8)


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def mini_pools(classes=(8, 6, 6), images=30, seed=0) -> Pools:
    """The first ``classes`` wnids of each official part, ``images`` JPEGs each, and the pixels
    that those JPEGs decode to."""
    rng = np.random.default_rng(seed)
    pools = {}
    for part, count in zip(PARTS, classes):
        wnids = list(class_list(f"miniimagenet_{part}")[:count])
        files = [[jpeg(x) for x in per_class] for per_class in class_images(rng, count, images, 84)]
        decoded = np.stack([[np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in c]
                            for c in files])
        pools[part] = (wnids, decoded, files)
    return pools


def interleaved(count: int, per_class: int) -> np.ndarray:
    """An image order that mixes the classes but keeps each class's own order: [C·D] of
    (class, index) rows as flat indices into [C, D]."""
    return np.arange(count * per_class).reshape(count, per_class).T.ravel()


def write_csv_layout(folder: Path, pools: Pools) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for part, (wnids, _, files) in pools.items():
        rows = ["filename,label"]
        for wnid, per_class in zip(wnids, files):
            for i, data in enumerate(per_class):
                name = f"{wnid}{i + 1:08d}.jpg"
                (folder / "images" / name).write_bytes(data)
                rows.append(f"{name},{wnid}")
        (folder / f"{FILE_PART[part]}.csv").write_text("\n".join(rows) + "\n")
    return folder


def write_cache_layout(folder: Path, pools: Pools) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, (wnids, images, _) in pools.items():
        order = interleaved(*images.shape[:2])
        flat = images.reshape(-1, *images.shape[2:])[order]
        position = np.argsort(order)   # where image (c, d) went
        class_dict = {w: position[c * images.shape[1]:(c + 1) * images.shape[1]].tolist()
                      for c, w in enumerate(wnids)}
        with open(folder / f"mini-imagenet-cache-{FILE_PART[part]}.pkl", "wb") as f:
            pickle.dump({"image_data": flat, "class_dict": class_dict}, f, protocol=4)
    return folder


def write_metaoptnet_layout(folder: Path, pools: Pools) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = {"train": "train_phase_train", "validation": "val", "test": "test"}
    for part, (wnids, images, _) in pools.items():
        order = interleaved(*images.shape[:2])
        labels = (np.repeat(np.arange(len(wnids)), images.shape[1]) + LABEL_OFFSET[part])[order]
        data = {"data": images.reshape(-1, *images.shape[2:])[order], "labels": labels.tolist(),
                "catname2label": {w: i + LABEL_OFFSET[part] for i, w in enumerate(wnids)}}
        with open(folder / f"miniImageNet_category_split_{names[part]}.pickle", "wb") as f:
            pickle.dump(data, f, protocol=2)
    return folder


def cifar_names() -> Tuple[list, list, np.ndarray]:
    """(100 fine names, 20 superclass names, each fine class's superclass): the official names
    from the shipped lists, 5 fine classes to a superclass (not CIFAR's own grouping)."""
    fine = sorted(sum((list(class_list(f"cifarfs_{p}")) for p in PARTS), []))
    coarse = sorted(sum((list(class_list(f"fc100_{p}")) for p in PARTS), []))
    return fine, coarse, np.arange(100) // 5


def cifar_batches(train=8, test=2, seed=0) -> Dict[str, dict]:
    """CIFAR-100's python batches: ``train`` + ``test`` images per class, classes interleaved."""
    fine_names, coarse_names, superclass = cifar_names()
    images = class_images(np.random.default_rng(seed), 100, train + test, 32)
    batches = {}
    for name, part in (("train", slice(0, train)), ("test", slice(train, train + test))):
        per_class = images[:, part]
        order = interleaved(100, per_class.shape[1])
        flat = per_class.reshape(-1, 32, 32, 3)[order]
        fine = np.repeat(np.arange(100), per_class.shape[1])[order]
        batches[name] = {"data": flat.transpose(0, 3, 1, 2).reshape(len(flat), 3072),
                         "fine_labels": fine.tolist(), "coarse_labels": superclass[fine].tolist(),
                         "filenames": [f"image_{i}.png" for i in range(len(flat))],
                         "batch_label": f"{name} batch"}
    batches["meta"] = {"fine_label_names": fine_names, "coarse_label_names": coarse_names}
    return batches


def write_cifar(folder: Path, batches: Dict[str, dict], archive: bool) -> Path:
    """cifar-100-python.tar.gz (``archive``) or the extracted cifar-100-python/ in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    if not archive:
        (folder / "cifar-100-python").mkdir(exist_ok=True)
        for name, batch in batches.items():
            (folder / "cifar-100-python" / name).write_bytes(pickle.dumps(batch, protocol=2))
        return folder
    with tarfile.open(folder / "cifar-100-python.tar.gz", "w:gz") as tar:
        for name, batch in batches.items():
            data = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return folder
