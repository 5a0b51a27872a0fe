"""Decoding Omniglot's archives, and reading them through the cache of decoded archives.

Each 105×105 one-bit PNG becomes a 28×28 uint8 image with ink 255 and background 0: it is
converted to 8-bit grey, shrunk with PIL's BOX filter (every output pixel is the mean of the
3.75×3.75 input pixels it covers: anti-aliased, no ringing) and inverted. ``episodes`` divides by
255, so strokes are 1.0 and background 0.0.
"""
import io
import re
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Dict, Iterable, Tuple

import numpy as np
from PIL import Image

from metabayes.data import array_cache
from metabayes.data.omniglot_splits import Characters
from metabayes.errors import DataError

DRAWERS = 20
SIZE = 28
DECODE_VERSION = 1  # bump whenever decoding changes, so that stale caches are not read
_PNG = re.compile(r"\d+_(\d+)\.png")


def cached(folder: Path, decode: Callable[[], Characters]) -> Characters:
    """Characters read from the cache ``folder``, or decoded and written there."""
    fields = ("images", "alphabets", "characters")
    arrays = array_cache.cached(folder, fields, lambda: decode()._asdict(), "Omniglot")
    images = np.asarray(arrays["images"])
    return Characters(images, np.asarray(arrays["alphabets"]), np.asarray(arrays["characters"]),
                      np.zeros(len(images), np.int32))


def decode_archive(path: Path) -> Characters:
    """Characters of a zip or folder: <stem>/<Alphabet>/<characterNN>/<id>_<drawer>.png."""
    if path.is_dir():
        files = [p.relative_to(path.parent).as_posix() for p in path.rglob("*") if p.is_file()]
        read = lambda name: (path.parent / name).read_bytes()
        return decode_entries(path, path.name, files, read)
    try:
        with zipfile.ZipFile(path) as archive:
            files = [info.filename for info in archive.infolist() if not info.is_dir()]
            return decode_entries(path, path.name[:-len(".zip")], files, archive.read)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError) as e:  # damaged, truncated, encrypted or unsupported compression
        raise DataError(f"{path}: not a readable zip archive ({type(e).__name__}: {e}); download "
                        "it again") from e


def decode_entries(path: Path, stem: str, files: Iterable[str],
                   read: Callable[[str], bytes]) -> Characters:
    """Characters from the PNG entries ``files`` of path, fetched by ``read``; sorted by name."""
    groups: Dict[Tuple[str, str], Dict[int, str]] = {}
    for name in files:
        parts = name.split("/")
        if parts[0] == "__MACOSX" or parts[-1].startswith("."):
            continue
        match = _PNG.fullmatch(parts[-1])
        if len(parts) != 4 or parts[0] != stem or not match:
            raise DataError(f"{path}: unexpected entry {name!r}; the layout must be "
                            f"{stem}/<Alphabet>/<characterNN>/<id>_<drawer>.png")
        groups.setdefault((parts[1], parts[2]), {})[int(match.group(1))] = name
    if not groups:
        raise DataError(f"{path}: holds no images; the layout must be "
                        f"{stem}/<Alphabet>/<characterNN>/<id>_<drawer>.png")
    keys = sorted(groups)
    for alphabet, character in keys:
        if sorted(groups[alphabet, character]) != list(range(1, DRAWERS + 1)):
            raise DataError(f"{path}: {alphabet}/{character} has drawers "
                            f"{sorted(groups[alphabet, character])}; expected 1..{DRAWERS}")
    images = np.empty((len(keys), DRAWERS, SIZE, SIZE), np.uint8)
    for c, key in enumerate(keys):
        for d in range(DRAWERS):
            name = groups[key][d + 1]
            images[c, d] = decode_png(read(name), f"{path}: {name}")
    return Characters(images, np.array([k[0] for k in keys]), np.array([k[1] for k in keys]),
                      np.zeros(len(keys), np.int32))


def decode_png(data: bytes, where: str = "PNG") -> np.ndarray:
    """[28, 28] uint8 with ink 255 from one PNG's bytes (see the module docstring)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return shrink(image)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... on a bad file
        raise DataError(f"{where}: cannot decode the image ({type(e).__name__}: {e})") from e


def shrink(image: Image.Image) -> np.ndarray:
    """[28, 28] uint8: grey, BOX-resized, inverted so that ink (black) is 255."""
    return 255 - np.asarray(image.convert("L").resize((SIZE, SIZE), Image.Resampling.BOX))
