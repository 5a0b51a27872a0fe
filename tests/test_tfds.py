"""source="tfds": load_tfds against TFDS's real ``omniglot`` builder, run without its files by
``tfds.testing.mock_data`` (TFDS's own way to test code that reads a builder; no download, no
network). Needs the ``tfds`` extra (part of ``dev``); skipped without it.
"""
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from metabayes.data import omniglot as om
from metabayes.data import omniglot_decode
from metabayes.data import omniglot_tfds
from metabayes.data.omniglot_tfds import TFDS_SPLITS

tfds = pytest.importorskip(
    "tensorflow_datasets",
    reason="source='tfds' tests need tensorflow-datasets: pip install -e '.[tfds]' (in dev)")

# TFDS omniglot's two small archives, in the official layout, for split "small": Korean is the
# validation alphabet, and small2's Latin is dropped from test as an alphabet of small1.
ARCHIVES = {"images_background_small1": {"Korean": 1, "Latin": 2},
            "images_background_small2": {"Greek": 2, "Latin": 1}}
# The builder's ClassLabel has 50 alphabets; a prepared dataset stores their names.
ALPHABETS = sorted(["Greek", "Korean", "Latin"] + [f"Filler_{i:02d}" for i in range(47)])


def glyph_png(rng) -> bytes:
    """A 105×105 one-bit PNG as in Omniglot: white background, one black (ink) rectangle."""
    pixels = np.ones((105, 105), bool)
    top, left = rng.integers(0, 60, size=2)
    height, width = rng.integers(12, 45, size=2)
    pixels[top:top + height, left:left + width] = False
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """The two archives as zips (for source="files") and extracted, as TFDS's download manager
    leaves them (extracted[stem]/stem/<Alphabet>/characterNN/<id>_<drawer>.png)."""
    root = tmp_path_factory.mktemp("omniglot_tfds")
    rng = np.random.default_rng(0)
    label = 0
    extracted = {}
    for stem, alphabets in ARCHIVES.items():
        with zipfile.ZipFile(root / f"{stem}.zip", "w") as archive:
            for alphabet, count in alphabets.items():
                for c in range(1, count + 1):
                    label += 1
                    folder = f"{stem}/{alphabet}/character{c:02d}"
                    for d in range(1, omniglot_decode.DRAWERS + 1):
                        archive.writestr(f"{folder}/{label:04d}_{d:02d}.png", glyph_png(rng))
            archive.extractall(root / "extracted" / stem)
        extracted[stem] = root / "extracted" / stem
    return root, extracted


@pytest.fixture
def prepared_metadata(tmp_path):
    """What a prepared omniglot keeps besides its records: dataset_info.json, features.json and
    alphabet.labels.txt, with the alphabet names that download_and_prepare would have found."""
    builder = tfds.builder("omniglot", data_dir=str(tmp_path / "metadata"))
    builder.info.features["alphabet"].names = ALPHABETS
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_dir)
    return tmp_path / "metadata"


def sorted_drawers(images):
    """[C, 20, 28, 28] with every class's drawers in one fixed order (TFDS reads in its own)."""
    order = lambda drawers: sorted(range(len(drawers)), key=lambda d: drawers[d].tobytes())
    return np.stack([drawers[order(drawers)] for drawers in images])


def test_mock_data_reads_the_omniglot_builder_like_the_files(archives, prepared_metadata,
                                                             tmp_path):
    """mock_data's as_dataset stand-in (TFDS's "manual" mock) returns, for each split, what a
    prepared omniglot holds: the builder's own examples of the extracted archive, serialized by
    its features (as download_and_prepare writes them) and parsed back by them (PNG bytes ->
    [105, 105, 3] uint8, as as_dataset reads them), in an order of its own."""
    import tensorflow as tf

    root, extracted = archives
    # Serialized here: mock_data swaps the file system for an empty fake inside as_dataset.
    writer = tfds.builder("omniglot", data_dir=str(prepared_metadata))
    records = {split: [writer.info.features.serialize_example(record)
                       for _, record in writer._generate_examples(str(extracted[om.ARCHIVES[n]]))]
               for n, split in TFDS_SPLITS.items() if om.ARCHIVES[n] in extracted}
    read = []

    def as_dataset(builder, split, **kwargs):
        read.append(split)
        order = np.random.default_rng(len(read)).permutation(len(records[split]))
        shuffled = [records[split][i] for i in order]  # bytes: a numpy "S" array drops end NULs
        return (tf.data.Dataset.from_tensor_slices(shuffled)
                .map(builder.info.features.deserialize_example))

    with tfds.testing.mock_data(num_examples=1, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=str(prepared_metadata), as_dataset_fn=as_dataset):
        via_tfds = om.load_omniglot("small", source="tfds", data_dir=tmp_path / "unused",
                                    cache_dir=tmp_path / "cache_tfds", rotate_train=False)
    assert read == ["small1", "small2"]
    via_files = om.load_omniglot("small", data_dir=root, cache_dir=tmp_path / "cache_files",
                                 verify_md5=False, rotate_train=False)

    assert via_tfds.train.alphabets.tolist() == ["Latin", "Latin"]
    assert via_tfds.train.characters.tolist() == ["character01", "character02"]
    assert via_tfds.validation.alphabets.tolist() == ["Korean"]
    assert via_tfds.test.alphabets.tolist() == ["Greek", "Greek"]
    for tfds_part, files_part in zip(via_tfds, via_files):
        assert tfds_part.images.dtype == np.uint8
        assert tfds_part.images.shape == (len(files_part.images), omniglot_decode.DRAWERS, omniglot_decode.SIZE, omniglot_decode.SIZE)
        assert tfds_part.alphabets.tolist() == files_part.alphabets.tolist()
        assert tfds_part.characters.tolist() == files_part.characters.tolist()
        # Same 20 drawers per class, decoded alike (grey, BOX 105 -> 28, inverted: ink 255).
        np.testing.assert_array_equal(sorted_drawers(tfds_part.images),
                                      sorted_drawers(files_part.images))
        assert tfds_part.images.min() == 0 and tfds_part.images.max() == 255
    # Drawers of one class share nothing with another's: the grouping is by character.
    digests = [{image.tobytes() for image in drawers}
               for part in via_tfds for drawers in part.images]
    assert sum(map(len, digests)) == len(set().union(*digests)) == 5 * omniglot_decode.DRAWERS


def test_mock_data_random_examples_are_decoded_and_then_rejected(tmp_path, monkeypatch):
    """Plain mock_data: TFDS's random examples (random 105×105×3 images, alphabets and character
    ids) all go through the files' decoding; they cannot form characters of 20 drawers, which
    load_tfds refuses to guess."""
    shrunk = []
    shrink = omniglot_decode.shrink

    def recording_shrink(image):
        assert image.mode == "L" and image.size == (105, 105)
        shrunk.append(shrink(image))
        return shrunk[-1]

    monkeypatch.setattr(omniglot_tfds, "shrink", recording_shrink)
    with tfds.testing.mock_data(num_examples=30, policy=tfds.testing.MockPolicy.USE_CODE):
        with pytest.raises(ValueError, match=f"split 'small1'.*expected {omniglot_decode.DRAWERS} images per "
                                             r"character .*\d+ of \d+ differ"):
            om.load_omniglot("small", source="tfds", data_dir=tmp_path, cache_dir=tmp_path)
    assert len(shrunk) == 30
    for image in shrunk:
        assert image.shape == (omniglot_decode.SIZE, omniglot_decode.SIZE) and image.dtype == np.uint8
    # Uniform random pixels: the 3.75×3.75 box means stay far from black and white.
    assert 64 < np.mean(shrunk) < 192 and np.min(shrunk) > 0 and np.max(shrunk) < 255


def test_an_unprepared_data_dir_raises_file_not_found(tmp_path):
    """Without mock_data: the real builder, in a folder where omniglot was never prepared."""
    with pytest.raises(FileNotFoundError, match="TFDS omniglot is not prepared in") as error:
        om.load_omniglot(source="tfds", data_dir=tmp_path / "tfds", cache_dir=tmp_path / "c")
    assert str(tmp_path / "tfds") in str(error.value)
    assert "download_and_prepare" in str(error.value)
    assert not list(tmp_path.rglob("*.npy"))  # nothing cached


# --- cifar100, for CIFAR-FS and FC100 -------------------------------------------------------------

def test_mock_cifar100_gives_the_pools_of_the_official_archive(tmp_path):
    """TFDS's cifar100 builder under mock_data, fed the synthetic batches' examples (serialized
    by the builder's own features, in a shuffled order): the same CIFAR-FS pools as the files."""
    import tensorflow as tf

    import fewshot_files as ff
    from metabayes.data.fewshot import load_fewshot

    batches = ff.cifar_batches()
    metadata = tfds.builder("cifar100", data_dir=str(tmp_path / "metadata"))
    metadata.info.features["label"].names = batches["meta"]["fine_label_names"]
    metadata.info.features["coarse_label"].names = batches["meta"]["coarse_label_names"]
    metadata.data_path.mkdir(parents=True)
    metadata.info.write_to_directory(metadata.data_dir)
    records = {}
    for split in ("train", "test"):
        batch = batches[split]
        images = batch["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        records[split] = [metadata.info.features.serialize_example(
            {"id": f"{split}_{i:05d}", "image": image, "label": fine, "coarse_label": coarse})
            for i, (image, fine, coarse) in enumerate(zip(images, batch["fine_labels"],
                                                          batch["coarse_labels"]))]
    read = []

    def as_dataset(builder, split, **kwargs):
        read.append(split)
        order = np.random.default_rng(len(read)).permutation(len(records[split]))
        return (tf.data.Dataset.from_tensor_slices([records[split][i] for i in order])
                .map(builder.info.features.deserialize_example))

    with tfds.testing.mock_data(num_examples=1, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=str(tmp_path / "metadata"), as_dataset_fn=as_dataset):
        via_tfds = load_fewshot("cifarfs", source="tfds", data_dir=tmp_path / "metadata",
                                cache_dir=tmp_path / "cache_tfds")
    assert read == ["train", "test"]
    via_files = load_fewshot("cifarfs", data_dir=ff.write_cifar(tmp_path / "files", batches,
                                                                 archive=False),
                             cache_dir=tmp_path / "cache_files")
    for tfds_part, files_part in zip(via_tfds, via_files):
        assert tfds_part.classes.tolist() == files_part.classes.tolist()
        np.testing.assert_array_equal(tfds_part.images, files_part.images)
    assert "TFDS cifar100" in via_tfds.train.source
