"""The cache of decoded data: a folder of .npy files per source, keyed by the source's checksum.

A data set is decoded once (PNGs, JPEGs, pickles, CIFAR's batches) into named arrays and written
to ``<cache_dir>/<name>/<array>.npy``, where ``name`` holds the source's checksum and the
decoder's version, so a changed source or decoder never reads a stale cache. Later loads map
the files read-only (``np.load(mmap_mode="r")``): a pool of 38,400 84×84×3 images costs no
memory until a batch touches its pages. A damaged or partial cache is decoded again; the
folder appears atomically (written as ``<name>.<pid>.part``, then renamed).
"""
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

Arrays = Dict[str, np.ndarray]


def default_cache_dir() -> Path:
    """$METABAYES_CACHE, else ~/.cache/metabayes."""
    return Path(os.environ.get("METABAYES_CACHE") or Path.home() / ".cache" / "metabayes")


def cache_root(cache_dir: Optional[os.PathLike]) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def read_cache(folder: Path, names) -> Optional[Arrays]:
    """The arrays ``names`` of a cache folder, memory-mapped; None if any is absent or damaged."""
    try:
        return {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                for name in names}
    except (OSError, ValueError, EOFError):
        return None


def cached(folder: Path, names: Sequence[str], decode: Callable[[], Arrays], what: str) -> Arrays:
    """The arrays ``names`` cached in ``folder`` (memory-mapped), else ``decode()``'s, written
    there first and mapped back, so the decoded copy is freed.

    ``what`` names the data set in the warning given when the cache cannot be written (the data
    are then decoded at every load)."""
    arrays = read_cache(folder, names)
    if arrays is not None:
        return arrays
    arrays = decode()
    partial = folder.with_name(f"{folder.name}.{os.getpid()}.part")
    problem = None
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in names:
            np.save(partial / f"{name}.npy", np.asarray(arrays[name]), allow_pickle=False)
        shutil.rmtree(folder, ignore_errors=True)   # a damaged cache
        os.replace(partial, folder)
    except OSError as e:   # unwritable, or another process wrote the same folder first
        shutil.rmtree(partial, ignore_errors=True)
        problem = e
    mapped = read_cache(folder, names)
    if mapped is None:
        warnings.warn(f"{what}: could not write the cache {folder} ({problem}); decoding again "
                      "at every load")
        return arrays
    return mapped   # the decoded copy is freed on return
