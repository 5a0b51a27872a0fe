"""miniImageNet, CIFAR-FS and FC100: every layout read from synthetic files written in the
official layouts, the shipped class lists, the cache, and every data error naming its file."""
import os
import pickle
import time
import warnings

import numpy as np
import pytest
from PIL import Image

import fewshot_files as ff
from metabayes.data import cifar100, miniimagenet
from metabayes.data.episodes import EpisodeSampler
from metabayes.data.fewshot import DATASETS, load_fewshot
from metabayes.data.pools import class_list
from metabayes.errors import DataError

LAYOUT_WRITERS = {"cache": ff.write_cache_layout, "metaoptnet": ff.write_metaoptnet_layout,
                  "csv": ff.write_csv_layout}


@pytest.fixture(scope="module")
def pools():
    return ff.mini_pools()


@pytest.fixture(scope="module")
def layouts(pools, tmp_path_factory):
    """{layout: folder}, one folder per miniImageNet layout, all of the same pools."""
    root = tmp_path_factory.mktemp("miniimagenet")
    return {name: write(root / name, pools) for name, write in LAYOUT_WRITERS.items()}


@pytest.fixture(scope="module")
def batches():
    return ff.cifar_batches()


def load_mini(folder, cache):
    with pytest.warns(UserWarning, match="classes of miniImageNet"):   # a synthetic subset
        return load_fewshot("miniimagenet", data_dir=folder, cache_dir=cache)


# --- the shipped class lists ---------------------------------------------------------------------

@pytest.mark.parametrize("name, sizes, total", [("miniimagenet", (64, 16, 20), 100),
                                                ("cifarfs", (64, 16, 20), 100),
                                                ("fc100", (12, 4, 4), 20)])
def test_shipped_class_lists_have_the_published_sizes_and_are_disjoint(name, sizes, total):
    parts = [set(class_list(f"{name}_{part}")) for part in ff.PARTS]
    assert [len(p) for p in parts] == list(sizes)
    assert len(set.union(*parts)) == total == sum(sizes)   # pairwise disjoint
    if name == "miniimagenet":
        assert all(w.startswith("n") and len(w) == 9 for w in set.union(*parts))


# --- miniImageNet ---------------------------------------------------------------------------------

def copy_layout(source, target):
    target.mkdir()
    for path in source.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
        else:
            os.symlink(path, target / path.name)
    return target


def test_every_miniimagenet_layout_gives_the_same_pools(pools, layouts, tmp_path):
    loaded = {name: load_mini(folder, tmp_path / name) for name, folder in layouts.items()}
    for part in ff.PARTS:
        wnids, images, _ = pools[part]
        for name, split in loaded.items():
            pool = getattr(split, part)
            assert pool.images.dtype == np.uint8 and pool.images.shape == images.shape, name
            assert pool.classes.tolist() == sorted(wnids), name
            np.testing.assert_array_equal(pool.images, images[np.argsort(wnids)], err_msg=name)
            assert layouts[name].name in pool.source
    assert DATASETS["miniimagenet"].input_shape == images.shape[2:]


def test_a_pool_is_decoded_once_and_then_memory_mapped(layouts, tmp_path, monkeypatch):
    folder = copy_layout(layouts["cache"], tmp_path / "copy")
    first = load_mini(folder, tmp_path)
    monkeypatch.setitem(miniimagenet.LAYOUTS, "cache", miniimagenet.LAYOUTS["cache"]._replace(
        read=lambda path: pytest.fail("decoded again")))
    start = time.perf_counter()
    again = load_mini(folder, tmp_path)
    assert time.perf_counter() - start < 2.0
    assert isinstance(again.train.images, np.memmap)   # uint8 on disk until a batch is drawn
    np.testing.assert_array_equal(again.train.images, first.train.images)
    with open(folder / "mini-imagenet-cache-test.pkl", "ab") as f:   # other bytes: another key
        f.write(b"\0")
    with pytest.raises(pytest.fail.Exception, match="decoded again"):
        load_mini(folder, tmp_path)


def test_raw_images_of_another_size_are_resized_with_lanczos(tmp_path):
    wnid = class_list("miniimagenet_train")[0]
    photo = np.random.default_rng(1).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    path = tmp_path / "images" / f"{wnid}00000001.jpg"
    path.parent.mkdir()
    path.write_bytes(ff.jpeg(photo))
    (tmp_path / "train.csv").write_text(f"filename,label\n{path.name},{wnid}\n")
    pool = miniimagenet.read_csv_images(tmp_path / "train.csv")
    expected = np.asarray(Image.open(path).convert("RGB").resize((84, 84), Image.LANCZOS))
    assert pool.images.shape == (1, 1, 84, 84, 3)
    np.testing.assert_array_equal(pool.images[0, 0], expected)


def test_missing_miniimagenet_lists_every_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("MINIIMAGENET_DIR", raising=False)
    with pytest.raises(FileNotFoundError) as missing:
        load_fewshot("miniimagenet", data_dir=tmp_path / "nowhere", cache_dir=tmp_path)
    for way in ("mini-imagenet-cache-train.pkl", "miniImageNet_category_split_train_phase_train",
                "train.csv", "images/", "MINIIMAGENET_DIR", "learn2learn", "MetaOptNet",
                "meta-learning-lstm", str(tmp_path / "nowhere")):
        assert way in str(missing.value), way


@pytest.mark.parametrize("damage", ["truncated pickle", "not a pickle", "code in the pickle",
                                    "wrong shape", "missing image", "bad jpeg", "csv header",
                                    "foreign class", "unequal classes"])
def test_bad_miniimagenet_files_raise_one_error_naming_the_file(layouts, tmp_path, damage):
    layout = "csv" if damage in ("missing image", "bad jpeg", "csv header") else "cache"
    folder = copy_layout(layouts[layout], tmp_path / "copy")
    target = folder / ("val.csv" if layout == "csv" else "mini-imagenet-cache-val.pkl")
    if damage == "truncated pickle":
        data = target.read_bytes()
        target.write_bytes(data[:len(data) // 2])
    elif damage == "not a pickle":
        target.write_text("<html>Google Drive: quota exceeded</html>")
    elif damage == "code in the pickle":
        target.write_bytes(pickle.dumps({"image_data": os.system, "class_dict": {}}))
    elif damage == "wrong shape":
        target.write_bytes(pickle.dumps({"image_data": np.zeros((2, 32, 32, 3), np.uint8),
                                         "class_dict": {"n01855672": [0, 1]}}))
    elif damage == "missing image":
        target.write_text("filename,label\nn0185567200009999.jpg,n01855672\n")
    elif damage == "bad jpeg":
        (folder / "images").unlink()
        (folder / "images").mkdir()
        for name in (layouts["csv"] / "images").iterdir():
            (folder / "images" / name.name).write_bytes(b"not a jpeg")
    elif damage == "csv header":
        target.write_text("file;class\n")
    else:
        wnid = "n99999999" if damage == "foreign class" else "n01855672"
        class_dict = ({wnid: [0, 1]} if damage == "foreign class"
                      else {wnid: [0, 1], class_list("miniimagenet_validation")[1]: [2]})
        target.write_bytes(pickle.dumps({"image_data": np.zeros((3, 84, 84, 3), np.uint8),
                                         "class_dict": class_dict}))
    message = {"truncated pickle": "not a readable pickle", "not a pickle": "not a readable pickle",
               "code in the pickle": "refusing to load posix.system",
               "wrong shape": r"\[N, 84, 84, 3\] uint8", "missing image": "missing from",
               "bad jpeg": "cannot decode the image", "csv header": "header 'filename,label'",
               "foreign class": "not in the official miniImageNet validation split",
               "unequal classes": "same number of images"}[damage]
    with pytest.raises(DataError, match=message) as error, warnings.catch_warnings():
        warnings.simplefilter("ignore")   # parts read before the damaged one: a subset
        load_fewshot("miniimagenet", data_dir=folder, cache_dir=tmp_path / "cache")
    assert str(folder) in str(error.value)
    assert "\n" not in str(error.value)


def test_too_few_images_for_shots_and_query_names_the_file(layouts, tmp_path):
    pool = load_mini(layouts["cache"], tmp_path).test
    with pytest.raises(ValueError, match=f"exceeds the 30 images per class of {pool.source}"):
        EpisodeSampler(pool.images, shots=16, query=15, source=pool.source).check()


# --- CIFAR-FS and FC100 ---------------------------------------------------------------------------

def test_archive_and_folder_give_the_same_cifar_pools(batches, tmp_path):
    archive = ff.write_cifar(tmp_path / "archive", batches, archive=True)
    folder = ff.write_cifar(tmp_path / "folder", batches, archive=False)
    for name in ("cifarfs", "fc100"):
        from_archive = load_fewshot(name, data_dir=archive, cache_dir=tmp_path / "c1",
                                    verify_md5=False)
        from_folder = load_fewshot(name, data_dir=folder, cache_dir=tmp_path / "c2")
        for a, b in zip(from_archive, from_folder):
            np.testing.assert_array_equal(a.images, b.images)
            assert a.classes.tolist() == b.classes.tolist()


def test_cifar_pixels_and_order_follow_the_official_batches(batches, tmp_path):
    folder = ff.write_cifar(tmp_path, batches, archive=False)
    arrays, where = cifar100.load_cifar100_pool(folder, "files", tmp_path / "cache")
    assert arrays["images"].shape == (100, 10, 32, 32, 3) and "cifar-100-python" in where
    fine = np.asarray(batches["train"]["fine_labels"])
    first_of_class_3 = batches["train"]["data"][np.flatnonzero(fine == 3)[0]]
    np.testing.assert_array_equal(arrays["images"][3, 0],
                                  first_of_class_3.reshape(3, 32, 32).transpose(1, 2, 0))
    assert arrays["classes"].tolist() == batches["meta"]["fine_label_names"]


def test_cifarfs_and_fc100_splits_follow_the_shipped_lists(batches, tmp_path):
    folder = ff.write_cifar(tmp_path, batches, archive=False)
    cifarfs = load_fewshot("cifarfs", data_dir=folder, cache_dir=tmp_path / "cache")
    assert [len(p.classes) for p in cifarfs] == [64, 16, 20]
    for pool, part in zip(cifarfs, ff.PARTS):
        assert set(pool.classes) == set(class_list(f"cifarfs_{part}"))
        assert pool.images.shape[1:] == (10, 32, 32, 3)
    fc100 = load_fewshot("fc100", data_dir=folder, cache_dir=tmp_path / "cache")
    assert [len(p.classes) for p in fc100] == [60, 20, 20]
    fine, coarse, superclass = ff.cifar_names()
    superclass_of = dict(zip(fine, np.asarray(coarse)[superclass]))
    for pool, part in zip(fc100, ff.PARTS):
        assert {superclass_of[c] for c in pool.classes} == set(class_list(f"fc100_{part}"))
    assert len(set().union(*(set(p.classes) for p in fc100))) == 100


def test_a_wrong_archive_md5_names_the_file(batches, tmp_path):
    archive = ff.write_cifar(tmp_path, batches, archive=True) / "cifar-100-python.tar.gz"
    with pytest.raises(DataError, match=f"{archive}: md5 .* differs from the official "
                                        "eb9058c3a382ffc7106e4002c42a8d85"):
        load_fewshot("cifarfs", data_dir=tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("damage", ["truncated archive", "missing member", "bad batch",
                                    "other classes"])
def test_damaged_cifar_files_name_the_file(batches, tmp_path, damage):
    archive = ff.write_cifar(tmp_path, batches, archive=True) / "cifar-100-python.tar.gz"
    if damage == "truncated archive":
        data = archive.read_bytes()
        archive.write_bytes(data[:len(data) // 2])
    elif damage == "missing member":
        ff.write_cifar(tmp_path, {"meta": batches["meta"]}, archive=True)
    elif damage == "bad batch":
        ff.write_cifar(tmp_path, {**batches, "train": {"labels": [1]}}, archive=True)
    else:
        names = ["not_a_cifar_class", *batches["meta"]["fine_label_names"][1:]]
        meta = {**batches["meta"], "fine_label_names": names}
        ff.write_cifar(tmp_path, {**batches, "meta": meta}, archive=True)
    message = {"truncated archive": "not a readable CIFAR-100 python archive",
               "missing member": "no cifar-100-python/train", "bad batch": "python batches",
               "other classes": "lacks 1 of the .* classes of cifarfs's .* split, e.g. "
                                f"\\['{batches['meta']['fine_label_names'][0]}'\\]"}
    with pytest.raises(DataError, match=message[damage]) as error:
        load_fewshot("cifarfs", data_dir=tmp_path, cache_dir=tmp_path / "cache", verify_md5=False)
    assert str(archive) in str(error.value)


def test_missing_cifar_lists_every_way_and_bad_names_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR100_DIR", raising=False)
    with pytest.raises(FileNotFoundError) as missing:
        load_fewshot("fc100", data_dir=tmp_path, cache_dir=tmp_path)
    for way in ("cifar-100-python.tar.gz", "cifar-100-python/", "CIFAR100_DIR", "tfds",
                "eb9058c3a382ffc7106e4002c42a8d85", str(tmp_path)):
        assert way in str(missing.value), way
    with pytest.raises(ValueError, match="`dataset` must be one of"):
        load_fewshot("tieredimagenet")
    with pytest.raises(ValueError, match="`data_source` for miniimagenet"):
        load_fewshot("miniimagenet", source="tfds")


def test_normalisation_is_per_channel_of_the_sets_pixels(layouts, tmp_path):
    pool = load_mini(layouts["cache"], tmp_path).train
    normalization = DATASETS["miniimagenet"].normalization
    sampler = EpisodeSampler(pool.images, meta_batch=2, query=2, normalization=normalization)
    (x, _), _ = sampler.batch(0)
    assert x.shape == (2, 5, 84, 84, 3) and x.dtype == np.float32
    pixels = x * np.float32(normalization.std) + np.float32(normalization.mean)
    assert np.all((pixels >= -1e-5) & (pixels <= 1 + 1e-5))
    np.testing.assert_allclose(normalization.mean[0], 120.39586422 / 255)


# --- the real files, where a machine has them ----------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MINIIMAGENET_DIR"), reason="needs miniImageNet")
def test_official_miniimagenet(tmp_path):
    split = load_fewshot("miniimagenet", cache_dir=tmp_path)
    for pool, part in zip(split, ff.PARTS):
        assert pool.classes.tolist() == sorted(class_list(f"miniimagenet_{part}"))
        assert pool.images.shape[1:] == (600, 84, 84, 3)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CIFAR100_DIR"), reason="needs CIFAR-100's python archive")
def test_official_cifar100(tmp_path):
    for name, sizes in (("cifarfs", [64, 16, 20]), ("fc100", [60, 20, 20])):
        split = load_fewshot(name, cache_dir=tmp_path)   # the official md5 is checked
        assert [len(pool.classes) for pool in split] == sizes
        assert all(pool.images.shape[1:] == (600, 32, 32, 3) for pool in split)
