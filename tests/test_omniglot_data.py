"""Omniglot data: shipped archives, decoding, cache, splits, errors and the episodic sampler."""
import hashlib
import io
import itertools
import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from metabayes.data import omniglot as om
from metabayes.data import omniglot_decode
from metabayes.data.checksums import file_md5
from metabayes.data.episodes import EpisodeSampler, Prefetcher, batches
from metabayes.tasks import Task

SMALL_TRAIN = {"Balinese": 24, "Early_Aramaic": 22, "Greek": 24, "Latin": 26}
SMALL_VALIDATION = {"Korean": 40}
SMALL_TEST = {"Japanese_(katakana)": 47, "Sanskrit": 42, "Tagalog": 17}
SYNTHETIC = {"images_background": {"Alpha": 3, "Beta": 2, "Delta": 1},
             "images_evaluation": {"Gamma": 3}}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("omniglot_cache")


@pytest.fixture(scope="module")
def small(cache):
    """The shipped archives, decoded once into the module's cache."""
    return om.load_omniglot("small", data_dir=om.SHIPPED_DIR, cache_dir=cache)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A one-bit PNG of a bool array (True = white background, as in Omniglot)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_archive(path, stem, alphabets, seed, drawers=omniglot_decode.DRAWERS):
    """A zip in the official layout: stem/<Alphabet>/characterNN/<id>_<drawer>.png, random ink."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{stem}/", "")
        for a, (alphabet, count) in enumerate(alphabets.items()):
            for c in range(1, count + 1):
                for d in range(1, drawers + 1):
                    name = f"{stem}/{alphabet}/character{c:02d}/{a:02d}{c:02d}_{d:02d}.png"
                    archive.writestr(name, png_bytes(rng.random((105, 105)) > 0.1))


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A tiny full set: images_background.zip (5 characters) and images_evaluation.zip (3)."""
    folder = tmp_path_factory.mktemp("omniglot_full")
    for i, (stem, alphabets) in enumerate(SYNTHETIC.items()):
        write_archive(folder / f"{stem}.zip", stem, alphabets, seed=i)
    return folder


def pairs(chars):
    return set(zip(chars.alphabets.tolist(), chars.characters.tolist()))


def coded_pool(classes=30, drawers=omniglot_decode.DRAWERS):
    """[C, D, 28, 28, 1] uint8 whose pixel (0, 0) is the class and (0, 1) the drawer."""
    images = np.zeros((classes, drawers, 28, 28, 1), np.uint8)
    images[:, :, 0, 0, 0] = np.arange(classes)[:, None]
    images[:, :, 0, 1, 0] = np.arange(drawers)[None, :]
    return images


def codes(inputs):
    """(class, drawer) of every example of coded_pool: [M, N, 2] ints."""
    return np.rint(inputs[..., 0, :2, 0] * 255).astype(int)


# --- shipped data, decoding, cache ---------------------------------------------------------------

def test_shipped_archives_match_their_md5_and_carry_the_license():
    for stem in ("images_background_small1", "images_background_small2"):
        assert file_md5(om.SHIPPED_DIR / f"{stem}.zip") == om.OFFICIAL_MD5[stem]
    assert "MIT" in (om.SHIPPED_DIR / "LICENSE").read_text()
    assert "Lake" in (om.SHIPPED_DIR / "ATTRIBUTION.md").read_text()


def test_small_split_decodes_96_train_40_validation_and_106_test_characters(small):
    base = small.train.rotations == 0
    assert small.train.images.shape == (4 * 96, 20, 28, 28)
    assert small.train.images.dtype == np.uint8
    assert small.validation.images.shape == (40, 20, 28, 28)
    assert small.test.images.shape == (106, 20, 28, 28) and set(small.test.rotations) == {0}
    for chars, expected in ((small.train, SMALL_TRAIN), (small.validation, SMALL_VALIDATION),
                            (small.test, SMALL_TEST)):
        names, counts = np.unique(chars.alphabets[chars.rotations == 0], return_counts=True)
        assert dict(zip(names.tolist(), counts.tolist())) == expected
    ink = small.train.images[base] / 255.0
    assert ink.max() == 1.0 and 0.02 < ink.mean() < 0.25  # strokes 1, mostly background 0
    assert np.mean(ink[..., 0, :] == 0) > 0.95  # the top row is background


def test_decode_png_inverts_and_box_shrinks():
    pixels = np.ones((105, 105), bool)
    pixels[:15, :15] = False  # 15 input pixels = 4 output pixels of 3.75
    image = omniglot_decode.decode_png(png_bytes(pixels))
    expected = np.zeros((28, 28), np.uint8)
    expected[:4, :4] = 255
    np.testing.assert_array_equal(image, expected)


def test_second_load_reads_the_cache_fast_and_identically(small, cache, monkeypatch):
    monkeypatch.delenv("OMNIGLOT_DIR", raising=False)
    start = time.perf_counter()
    again = om.load_omniglot(cache_dir=cache)  # the default source: the shipped archives
    assert time.perf_counter() - start < 2.0
    for field, other in zip(small, again):
        for a, b in zip(field, other):
            np.testing.assert_array_equal(a, b)


def test_a_damaged_cache_is_decoded_again(full, tmp_path):
    load = lambda: om.load_omniglot("lake", data_dir=full, cache_dir=tmp_path, verify_md5=False,
                                    validation_alphabets=1)
    first = load()
    damaged = list(tmp_path.glob("omniglot-*/images.npy"))
    assert damaged
    for cache_file in damaged:
        cache_file.write_bytes(b"damaged")
    np.testing.assert_array_equal(load().train.images, first.train.images)


def test_default_path_does_not_import_tensorflow(cache):
    code = ("import sys; from metabayes.data.omniglot import load_omniglot; "
            f"load_omniglot(cache_dir={str(cache)!r}); assert 'tensorflow' not in sys.modules")
    env = {k: v for k, v in os.environ.items() if k != "OMNIGLOT_DIR"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_importing_metabayes_and_experiments_does_not_import_tensorflow():
    """TensorFlow (the `tfds` extra, installed with dev) is for source="tfds" only: importing the
    package, every submodule and the experiment programs must not load it."""
    code = """if True:
        import importlib, pkgutil, sys
        import metabayes, experiments
        for package in (metabayes, experiments):
            for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                importlib.import_module(module.name)
        import metabayes.data.omniglot, experiments.omniglot
        loaded = sorted(m for m in sys.modules
                        if m.split(".")[0] in ("tensorflow", "tensorflow_datasets"))
        assert not loaded, loaded[:10]
        """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr[-3000:]


# --- splits and rotations ----------------------------------------------------------------------

def image_digests(chars):
    return {hashlib.md5(image.tobytes()).hexdigest() for image in chars.images}


def assert_three_disjoint_parts(split):
    """No class (alphabet, character) and no image set in two of train, validation and test."""
    for first, second in itertools.combinations(split, 2):
        assert not pairs(first) & pairs(second)
        assert not image_digests(first) & image_digests(second)


def test_small_split_is_disjoint_by_alphabet_and_character(small):
    assert_three_disjoint_parts(small)
    for first, second in itertools.combinations(small, 2):
        assert not set(first.alphabets) & set(second.alphabets)


def test_every_split_has_three_disjoint_parts(full, tmp_path):
    lake = om.load_omniglot("lake", data_dir=full, cache_dir=tmp_path, verify_md5=False,
                            validation_alphabets=1)
    assert_three_disjoint_parts(lake)
    assert len(set(lake.validation.alphabets)) == 1 and set(lake.test.alphabets) == {"Gamma"}
    vinyals = om.load_omniglot("vinyals", data_dir=full, cache_dir=tmp_path, verify_md5=False,
                               train_characters=5, validation_characters=2, rotate_eval=True)
    assert_three_disjoint_parts(vinyals)
    assert (len(vinyals.validation.images), len(vinyals.test.images)) == (4 * 2, 4 * 2)


def test_rotations_add_classes(small, cache):
    base = small.train.images[small.train.rotations == 0]
    for k, degrees in enumerate((90, 180, 270), start=1):
        np.testing.assert_array_equal(small.train.images[small.train.rotations == degrees],
                                      np.rot90(base, k, axes=(2, 3)))
    plain = om.load_omniglot(data_dir=om.SHIPPED_DIR, cache_dir=cache, rotate_train=False,
                             rotate_eval=True)
    assert len(plain.train.images) == 96 and len(plain.validation.images) == 4 * 40
    assert len(plain.test.images) == 4 * 106
    assert len(pairs(plain.test)) == 106


def test_lake_split_and_unzipped_folders_on_a_synthetic_full_set(full, tmp_path):
    split = om.load_omniglot("lake", data_dir=full, cache_dir=tmp_path / "c", verify_md5=False,
                             rotate_train=False, validation_alphabets=1)
    assert set(split.train.alphabets) | set(split.validation.alphabets) == {"Alpha", "Beta", "Delta"}
    assert set(split.test.alphabets) == {"Gamma"}
    assert len(split.train.images) + len(split.validation.images) == 6
    assert split.test.images.shape == (3, 20, 28, 28)
    with zipfile.ZipFile(full / "images_evaluation.zip") as archive:
        first = archive.read("images_evaluation/Gamma/character01/0001_01.png")
        archive.extractall(tmp_path / "unzipped")
    np.testing.assert_array_equal(split.test.images[0, 0], omniglot_decode.decode_png(first))
    with zipfile.ZipFile(full / "images_background.zip") as archive:
        archive.extractall(tmp_path / "unzipped")
    unzipped = om.load_omniglot("lake", data_dir=tmp_path / "unzipped", cache_dir=tmp_path / "c",
                                rotate_train=False, validation_alphabets=1)
    np.testing.assert_array_equal(unzipped.train.images, split.train.images)
    np.testing.assert_array_equal(unzipped.test.images, split.test.images)


def test_vinyals_split_is_by_character_and_seeded(full, tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIGLOT_DIR", str(full))  # found through the environment variable
    load = lambda seed: om.load_omniglot("vinyals", cache_dir=tmp_path, verify_md5=False,
                                         seed=seed, train_characters=4, validation_characters=2,
                                         rotate_train=False)
    split = load(0)
    assert [len(part.images) for part in split] == [4, 2, 3]
    assert len(set.union(*map(pairs, split))) == 9
    assert [pairs(part) for part in load(0)] == [pairs(part) for part in split]
    assert any(pairs(load(seed).validation) != pairs(split.validation) for seed in range(1, 6))
    with pytest.raises(ValueError, match="train_characters"):
        om.load_omniglot("vinyals", data_dir=full, cache_dir=tmp_path, verify_md5=False)
    with pytest.raises(ValueError, match="validation_alphabets"):
        om.load_omniglot("lake", data_dir=full, cache_dir=tmp_path, verify_md5=False,
                         validation_alphabets=3)


# --- the episodic sampler -----------------------------------------------------------------------

def test_sampler_shapes_and_dtypes(small):
    task = EpisodeSampler(small.train.images[..., None], ways=5, shots=2, query=3, meta_batch=4).batch(0)
    assert isinstance(task, Task)
    (s_x, s_y), (q_x, q_y) = task
    assert s_x.shape == (4, 10, 28, 28, 1) and s_x.dtype == np.float32
    assert s_y.shape == (4, 10) and s_y.dtype == np.int32
    assert q_x.shape == (4, 15, 28, 28, 1) and q_x.dtype == np.float32
    assert q_y.shape == (4, 15) and q_y.dtype == np.int32
    assert 0.0 <= s_x.min() and s_x.max() == 1.0


def test_labels_are_permuted_per_task_and_consistent_between_support_and_query():
    ways, shots, query, m = 5, 2, 3, 16
    (s_x, s_y), (q_x, q_y) = EpisodeSampler(coded_pool(), ways, shots, query, m, seed=3).batch(0)
    class_of_label = []
    for t in range(m):
        np.testing.assert_array_equal(np.sort(s_y[t]), np.repeat(np.arange(ways), shots))
        np.testing.assert_array_equal(np.sort(q_y[t]), np.repeat(np.arange(ways), query))
        (s_c, s_d), (q_c, q_d) = codes(s_x[t]).T, codes(q_x[t]).T
        labels, classes, drawers = (np.concatenate(p) for p in ((s_y[t], q_y[t]), (s_c, q_c),
                                                                (s_d, q_d)))
        mapping = {label: set(classes[labels == label]) for label in range(ways)}
        assert all(len(c) == 1 for c in mapping.values())  # one character per label
        assert len(set.union(*mapping.values())) == ways  # distinct characters
        for label in range(ways):  # no image both in support and query
            assert len(set(drawers[labels == label])) == shots + query
        class_of_label.append([mapping[label].pop() for label in range(ways)])
    class_of_label = np.asarray(class_of_label)  # [M, N]
    assert len(set(class_of_label[:, 0])) > 1  # label 0 is not always the same character
    assert (np.diff(class_of_label, axis=1) < 0).any()  # labels do not follow the class order
    assert len({tuple(y) for y in s_y}) > 1  # the order of examples is shuffled per task


def same(a: Task, b: Task) -> bool:
    return all(np.array_equal(x, y) for x, y in zip([*a.support, *a.query], [*b.support, *b.query]))


def test_batches_are_a_pure_function_of_seed_and_step():
    sampler = EpisodeSampler(coded_pool(), ways=4, shots=1, query=2, meta_batch=3, seed=7)
    assert same(sampler.batch(5), sampler.batch(5))
    assert same(sampler.batch(5), sampler._replace(images=coded_pool().copy()).batch(5))
    assert not same(sampler.batch(5), sampler.batch(6))
    assert not same(sampler.batch(5), sampler._replace(seed=8).batch(5))
    stream = batches(sampler, start=3)
    assert same(next(stream), sampler.batch(3)) and same(next(stream), sampler.batch(4))
    with Prefetcher(sampler, start=0, buffer=2) as prefetch:
        drawn = [next(prefetch) for _ in range(4)]
        assert prefetch.position == 4
    assert all(same(d, sampler.batch(t)) for t, d in enumerate(drawn))
    with Prefetcher(sampler, start=prefetch.position) as resumed:  # resume from a checkpoint
        assert same(next(resumed), sampler.batch(4)) and resumed.position == 5


def test_sampler_rejects_impossible_settings(small):
    with pytest.raises(ValueError, match="ways=107"):
        EpisodeSampler(small.test.images[..., None], ways=107).check()
    with pytest.raises(ValueError, match="shots \\+ query"):
        EpisodeSampler(small.test.images[..., None], ways=5, shots=5, query=16).check()
    with pytest.raises(ValueError, match="shots \\+ query"):
        Prefetcher(EpisodeSampler(small.test.images[..., None], shots=1, query=20))
    with pytest.raises(ValueError, match="query"):
        EpisodeSampler(small.test.images[..., None], query=0).batch(0)


# --- errors --------------------------------------------------------------------------------------

def test_missing_data_lists_every_way_to_provide_it(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as missing:
        om.load_omniglot(data_dir=tmp_path / "nowhere", cache_dir=tmp_path)
    for way in ("data_dir", "OMNIGLOT_DIR", "omniglot_small", "tfds", str(tmp_path / "nowhere")):
        assert way in str(missing.value)
    monkeypatch.delenv("OMNIGLOT_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="images_background.zip"):
        om.load_omniglot("lake", cache_dir=tmp_path)  # the shipped archives are not the full set
    with pytest.raises(ValueError, match="split"):
        om.load_omniglot("omniglot", cache_dir=tmp_path)


def test_official_names_are_checked_against_their_md5(full, tmp_path):
    with pytest.raises(ValueError, match="images_background.zip: md5 .* differs"):
        om.load_omniglot("lake", data_dir=full, cache_dir=tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "bad png", "layout", "19 drawers"])
def test_damaged_archives_raise_errors_naming_the_file(full, tmp_path, damage):
    (tmp_path / "images_evaluation.zip").write_bytes((full / "images_evaluation.zip").read_bytes())
    target, stem = tmp_path / "images_background.zip", "images_background"
    data = (full / "images_background.zip").read_bytes()
    if damage == "garbage":
        target.write_bytes(b"this is not a zip archive")
    elif damage == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "19 drawers":
        write_archive(target, stem, {"Alpha": 1}, seed=0, drawers=19)
    else:
        root = "" if damage == "layout" else f"{stem}/"
        with zipfile.ZipFile(target, "w") as archive:
            for d in range(1, 21):
                archive.writestr(f"{root}Alpha/character01/0101_{d:02d}.png", b"\x89PNG not really")
    message = {"garbage": "not a readable zip", "truncated": "not a readable zip",
               "bad png": "cannot decode", "layout": "unexpected entry", "19 drawers": "drawers"}
    with pytest.raises(ValueError, match=message[damage]) as error:
        om.load_omniglot("lake", data_dir=tmp_path, cache_dir=tmp_path / "c", verify_md5=False)
    assert str(target) in str(error.value)


# source="tfds" against TFDS's real omniglot builder (tfds.testing.mock_data): tests/test_tfds.py.

def test_tfds_source_without_tensorflow_datasets_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # importing it raises
    with pytest.raises(ImportError, match=r"pip install 'metabayes\[tfds\]'"):
        om.load_omniglot(source="tfds", data_dir=tmp_path / "tfds", cache_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("OMNIGLOT_DIR"), reason="needs the official full set")
def test_official_full_set_splits(tmp_path):
    lake = om.load_omniglot("lake", cache_dir=tmp_path, rotate_train=False)
    assert len(lake.train.images) + len(lake.validation.images) == 964
    assert len(set(lake.validation.alphabets)) == 5 and len(lake.test.images) == 659
    assert_three_disjoint_parts(lake)
    vinyals = om.load_omniglot("vinyals", cache_dir=tmp_path, rotate_train=False)
    assert [len(part.images) for part in vinyals] == [1028, 172, 423]
    assert_three_disjoint_parts(vinyals)
