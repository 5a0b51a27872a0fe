r"""Peak memory and time of loading miniImageNet at its real size: 38,400 / 9,600 / 12,000
images of 84×84×3 (64 / 16 / 20 classes × 600), on a synthetic set written in one of the three
accepted layouts (random pixels: no machine here has the data).

    python -m benchmarks.loader_memory --layout=cache --data_dir=/tmp/mini_synthetic \
        --out=benchmarks/results/loader_memory.json

Each measurement runs in a fresh process, one after the other: "first load" decodes the files
and writes the cache (an empty cache directory), "cached load" maps the cache, and "cached load
+ 100 batches" then draws 100 meta-batches of 5-way 1-shot, Q = 15, M = 4 from the training
pool. Peak RSS is the process's VmHWM (Linux), Python and numpy included.
"""
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import flags

from benchmarks.memory import peak_rss_bytes
from experiments.cli import run, write_json
from metabayes.data.pools import class_list

PARTS = ("train", "validation", "test")
FILES = {"cache": {"train": "mini-imagenet-cache-train.pkl", "validation":
                   "mini-imagenet-cache-val.pkl", "test": "mini-imagenet-cache-test.pkl"},
         "metaoptnet": {"train": "miniImageNet_category_split_train_phase_train.pickle",
                        "validation": "miniImageNet_category_split_val.pickle",
                        "test": "miniImageNet_category_split_test.pickle"},
         "csv": {"train": "train.csv", "validation": "val.csv", "test": "test.csv"}}
MEASUREMENTS = ("first load", "cached load", "cached load + 100 batches")


def write_synthetic(folder: Path, layout: str, images: int, seed: int = 0) -> None:
    """All 100 official classes × ``images`` random 84×84×3 images, in ``layout``."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for offset, part in zip((0, 64, 80), PARTS):
        wnids = class_list(f"miniimagenet_{part}")
        pixels = rng.integers(0, 256, (len(wnids) * images, 84, 84, 3), dtype=np.uint8)
        labels = np.repeat(np.arange(len(wnids)), images)
        path = folder / FILES[layout][part]
        if layout == "csv":
            (folder / "images").mkdir(exist_ok=True)
            rows = ["filename,label"]
            for i, (x, label) in enumerate(zip(pixels, labels)):
                name = f"{wnids[label]}{i % images + 1:08d}.jpg"
                Image.fromarray(x).save(folder / "images" / name, quality=95)
                rows.append(f"{name},{wnids[label]}")
            path.write_text("\n".join(rows) + "\n")
            continue
        if layout == "cache":
            data = {"image_data": pixels, "class_dict": {w: np.flatnonzero(labels == c).tolist()
                                                        for c, w in enumerate(wnids)}}
        else:
            data = {"data": pixels, "labels": (labels + offset).tolist(),
                    "catname2label": {w: c + offset for c, w in enumerate(wnids)}}
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=4 if layout == "cache" else 2)


def measure(measurement: str, data_dir: str, cache_dir: str) -> dict:
    """Load (and draw batches) in this process: seconds and peak RSS."""
    import warnings
    from metabayes.data.episodes import EpisodeSampler
    from metabayes.data.fewshot import DATASETS, load_fewshot
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = load_fewshot("miniimagenet", data_dir=data_dir, cache_dir=cache_dir)
    loaded = time.perf_counter() - start
    result = {"load_seconds": loaded, "train_pool": list(split.train.images.shape)}
    if measurement.endswith("batches"):
        sampler = EpisodeSampler(split.train.images, ways=5, shots=1, query=15, meta_batch=4,
                                 normalization=DATASETS["miniimagenet"].normalization)
        start = time.perf_counter()
        for step in range(100):
            sampler.batch(step)
        result["batch_seconds"] = (time.perf_counter() - start) / 100
    result["peak_rss_gb"] = peak_rss_bytes() / 2**30
    return result


def main(argv):
    del argv
    if _ONLY.value:
        print(json.dumps(measure(_ONLY.value, _DATA_DIR.value, _CACHE_DIR.value)))
        return
    data_dir = Path(_DATA_DIR.value)
    if not all((data_dir / f).exists() for f in FILES[_LAYOUT.value].values()):
        start = time.perf_counter()
        write_synthetic(data_dir, _LAYOUT.value, _IMAGES.value)
        print(f"wrote the synthetic {_LAYOUT.value} layout in {time.perf_counter() - start:.0f} s")
    cache_dir = Path(_CACHE_DIR.value or data_dir / "cache")
    shutil.rmtree(cache_dir, ignore_errors=True)
    size = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file()
               and cache_dir not in p.parents)
    results = {}
    for measurement in MEASUREMENTS:
        done = subprocess.run([sys.executable, "-m", "benchmarks.loader_memory",
                               f"--only={measurement}", f"--data_dir={data_dir}",
                               f"--cache_dir={cache_dir}"], capture_output=True, text=True,
                              check=True, cwd=os.path.dirname(os.path.dirname(__file__)) or ".")
        results[measurement] = json.loads(done.stdout.strip().splitlines()[-1])
    lines = [f"miniImageNet, layout {_LAYOUT.value}, files {size / 1e9:.2f} GB, training pool "
             f"{results['first load']['train_pool']} uint8",
             "| measurement | seconds | peak RSS |", "|---|---|---|"]
    for measurement, r in results.items():
        extra = (f" (+ {1000 * r['batch_seconds']:.1f} ms a batch)" if "batch_seconds" in r else "")
        lines.append(f"| {measurement} | {r['load_seconds']:.1f}{extra} | "
                     f"{r['peak_rss_gb']:.2f} GB |")
    print("\n".join(lines))
    write_json(_OUT.value, {"layout": _LAYOUT.value, "files_bytes": size, "results": results})


if __name__ == "__main__":
    _LAYOUT = flags.DEFINE_enum("layout", "cache", list(FILES), "The layout to write and read.")
    _DATA_DIR = flags.DEFINE_string("data_dir", "/tmp/miniimagenet_synthetic",
                                    "Where the synthetic set is (written if absent).")
    _CACHE_DIR = flags.DEFINE_string("cache_dir", "", "Decoded cache (emptied first); default "
                                     "DATA_DIR/cache.")
    _IMAGES = flags.DEFINE_integer("images", 600, "Images per class (at least a 1-shot episode's "
                                   "1 + 15 query).", lower_bound=16)
    _OUT = flags.DEFINE_string("out", "", "Where to write the JSON results.")
    _ONLY = flags.DEFINE_enum("only", "", ["", *MEASUREMENTS], "One measurement, in this process.")
    run(main)
