"""Reading the pickles that few-shot data sets are shipped as, safely.

Unpickling can run arbitrary code, so ``load_pickle`` only rebuilds what these files hold:
dicts, lists, tuples, strings, numbers and numpy arrays. Python 2 pickles (CIFAR-100's batches,
MetaOptNet's miniImageNet) are read with latin-1 strings, so their byte strings arrive as str.
Any failure (a truncated file, another format, a forbidden object) is a DataError naming the
file, never a traceback from inside pickle.
"""
import pickle
from pathlib import Path
from typing import Any, BinaryIO

from metabayes.errors import DataError

ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
           ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
           ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
           ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode"),
           ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
           ("__builtin__", "object"), ("builtins", "object")}


class DataUnpickler(pickle.Unpickler):
    """An Unpickler that rebuilds numpy arrays and builtin containers only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a data file holds "
                                     "arrays, lists, dicts and strings only")


def load_pickle(path: Path) -> Any:
    """The object pickled in ``path`` (latin-1 strings for Python 2 pickles); DataError naming
    the file if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return read_pickle(f)
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e})") from e
    except Exception as e:   # pickle raises UnpicklingError, EOFError, ValueError, ...
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e}); the file is "
                        "truncated or damaged: download it again") from e


def read_pickle(f: BinaryIO) -> Any:
    """The object in f; a dict's byte-string keys (pickles written with bytes keys) become str."""
    data = DataUnpickler(f, encoding="latin1").load()
    if isinstance(data, dict):
        data = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in data.items()}
    return data
