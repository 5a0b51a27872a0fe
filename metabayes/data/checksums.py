"""Checksums of data files: the md5 that official releases publish, and a cheap digest of a
folder, both used to key the decoded caches (``metabayes.data.array_cache``)."""
import hashlib
from pathlib import Path
from typing import Optional

from metabayes.errors import DataError


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_digest(path: Path) -> str:
    """md5 of the relative names, sizes and modification times of every file under path."""
    digest = hashlib.md5()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            stat = p.stat()
            digest.update(f"{p.relative_to(path).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}\n"
                          .encode())
    return digest.hexdigest()


def source_digest(path: Path) -> str:
    """file_md5 of a file, folder_digest of a folder."""
    return file_md5(path) if path.is_file() else folder_digest(path)


def check_md5(path: Path, digest: str, official: Optional[str]) -> None:
    """DataError naming path unless ``official`` is None or equals its md5 ``digest``."""
    if official is not None and digest != official:
        raise DataError(f"{path}: md5 {digest} differs from the official {official}; the file is "
                        "damaged or not the official release (download it again, or set "
                        "`verify_md5` to False for a custom file)")
