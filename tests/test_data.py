"""CIFAR-10 in both on-disk formats, the protocols, and the errors users see."""

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from hashlab.cli import main
from hashlab.data import CIFAR10, DatasetError, Digits
from hashlab.data.cifar10 import CLASSES
from tests.conftest import SHARED_CIFAR10


def write_batches(folder, per_class_train=60, per_class_test=10, seed=0):
    """The official python format: pickled dicts with 'data' (n, 3072) uint8 and 'labels'."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    labels_train = np.repeat(np.arange(10), per_class_train)
    rng.shuffle(labels_train)
    chunks = np.array_split(labels_train, 5)
    for i, chunk in enumerate(chunks, 1):
        data = rng.integers(0, 256, (len(chunk), 3072), dtype=np.uint8)
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": data, "labels": chunk.tolist(), "batch_label": f"training batch {i} of 5"}, f)
    labels_test = np.repeat(np.arange(10), per_class_test)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": rng.integers(0, 256, (len(labels_test), 3072), dtype=np.uint8),
                     "labels": labels_test.tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES}, f)
    return labels_train, labels_test


def write_image_folder(root, per_class=3):
    rng = np.random.default_rng(1)
    for part in ("train", "test"):
        for name in CLASSES:
            (root / part / name).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / part / name / f"{i:04d}.jpg")


def test_official_batches_are_read_with_their_labels_and_split(tmp_path):
    labels_train, labels_test = write_batches(tmp_path / "cifar-10-batches-py")
    module = CIFAR10(root=str(tmp_path), protocol="cifar10-2")
    module.prepare()
    source = module.source
    assert len(source.items) == 700 and source.items[0].shape == (32, 32, 3)
    np.testing.assert_array_equal(source.labels.argmax(1), np.concatenate([labels_train, labels_test]))
    assert module.describe()["query"] == 100 and module.describe()["database"] == 600
    image, label, index = module.dataset("query")[0]
    assert image.shape == (3, 128, 128) and 0 <= image.min() and image.max() <= 1 and index == 600


def test_image_folder_uses_the_official_label_order(tmp_path):
    write_image_folder(tmp_path)
    module = CIFAR10(root=str(tmp_path), protocol="cifar10-2", image_size=32)
    module.prepare()
    assert module.source.labels.argmax(1).tolist()[:6] == [0, 0, 0, 1, 1, 1]  # airplane, then automobile
    assert module.source.official_split.tolist().count("test") == 30


def test_cifar10_1_sizes_and_determinism(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py", per_class_train=640, per_class_test=10)
    a, b = CIFAR10(root=str(tmp_path)), CIFAR10(root=str(tmp_path))
    described = a.describe()
    sizes = [described[k] for k in ("query", "train", "validation", "database")]
    assert sizes == [1000, 5000, 500, 5500]  # the paper's 5,000 training images, all of them fitted on
    assert described["validation_from"] == "outside the training set"
    assert described["split_fingerprint"] == b.describe()["split_fingerprint"]
    split = a.split
    assert set(split.query).isdisjoint(split.database) and set(split.train) <= set(split.database)
    assert set(split.val) <= set(split.database) and set(split.val).isdisjoint(split.train)
    assert set(split.val).isdisjoint(split.query)
    labels = a.source.labels.argmax(1)
    assert np.bincount(labels[split.query]).tolist() == [100] * 10
    assert np.bincount(labels[split.train]).tolist() == [500] * 10
    assert np.bincount(labels[split.val]).tolist() == [50] * 10  # every class in the validation set
    # without a validation set the same training set; the queries do not move
    whole = CIFAR10(root=str(tmp_path), val_fraction=0)
    whole.prepare()
    np.testing.assert_array_equal(whole.split.train, split.train)
    np.testing.assert_array_equal(whole.split.query, split.query)
    other_seed = CIFAR10(root=str(tmp_path), split_seed=1).describe()["split_fingerprint"]
    assert other_seed != described["split_fingerprint"]


def test_adsh_protocol_pools_the_whole_database_and_samples_each_epoch(tmp_path):
    """cifar10-all (ADSH's): the 59,000 database images are the training pool; the queries are cifar10-1's.
    samples_per_epoch draws a new sample of the pool each epoch; val_database bounds the validation database."""
    write_batches(tmp_path / "cifar-10-batches-py", per_class_train=640, per_class_test=10)
    adsh = CIFAR10(root=str(tmp_path), protocol="cifar10-all", val_fraction=0, samples_per_epoch=300,
                   val_database=200, splits_dir=str(tmp_path / "splits"))
    adsh.prepare()
    plain = CIFAR10(root=str(tmp_path), val_fraction=0, splits_dir=str(tmp_path / "splits"))
    plain.prepare()
    np.testing.assert_array_equal(adsh.split.query, plain.split.query)
    np.testing.assert_array_equal(adsh.split.train, adsh.split.database)
    assert len(adsh.split.database) == 6500 - 1000
    sampler = adsh.loader(adsh.dataset("train"), train=True).sampler
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert len(first) == len(second) == len(sampler) == 300 and len(set(first)) == 300
    assert first != second and max(first + second) < len(adsh.split.train)
    held = CIFAR10(root=str(tmp_path), protocol="cifar10-all", val_fraction=0.02, val_database=200,
                   splits_dir=str(tmp_path / "splits"))
    held.prepare()
    assert held.describe()["validation_from"] == "held out of the training set"
    queries, database = held.val_dataloader()
    assert len(database.dataset) == 200 and len(queries.dataset) == len(held.split.val) == 110


def test_the_validation_database_is_shaped_like_the_test_database_and_never_holds_a_query(tmp_path):
    """cifar10-1's test database holds its training images and images no model trains on; the validation items
    retrieve against a sample in the same proportion, drawn from outside the queries and the validation items."""
    write_batches(tmp_path / "cifar-10-batches-py", per_class_train=1100, per_class_test=100)
    data = CIFAR10(root=str(tmp_path), protocol="cifar10-1", splits_dir=str(tmp_path / "splits"))
    data.prepare()
    split, database = data.split, data.validation_database()
    assert len(database) == len(split.train) == 5000 and len(np.unique(database)) == len(database)
    assert not np.isin(database, split.query).any() and not np.isin(database, split.val).any()
    assert np.isin(database, split.database).all()
    seen = np.isin(database, split.train).mean()
    test_share = np.isin(split.database, split.train).mean()  # 5,000 of 11,000 here (of 59,000 in the real one)
    assert seen == pytest.approx(test_share, abs=1e-3)
    again = CIFAR10(root=str(tmp_path), protocol="cifar10-1", splits_dir=str(tmp_path / "splits"))
    again.prepare()
    np.testing.assert_array_equal(again.validation_database(), database)  # drawn once from the split seed
    queries, loader = data.val_dataloader()
    assert len(loader.dataset) == 5000 and len(queries.dataset) == len(split.val)
    described = data.describe()
    assert described["validation_database"] == 5000 and described["validation_database_seen"] == round(5000 * test_share)
    # a smaller data set keeps the proportion and shrinks the validation database instead
    small = CIFAR10(root=str(tmp_path), protocol="cifar10-1", val_database=12000, splits_dir=str(tmp_path / "splits"))
    small.prepare()
    shrunk = small.validation_database()
    assert len(shrunk) < 12000 and np.isin(shrunk, split.train).mean() == pytest.approx(test_share, abs=1e-3)


@pytest.mark.skipif(not SHARED_CIFAR10.exists(), reason="../shared/data/cifar10 is not beside the project")
def test_describe_on_the_real_cifar10(capsys, monkeypatch):
    monkeypatch.setenv("HASHLAB_DATA", str(SHARED_CIFAR10.parent))
    main(["data", "describe", "cifar10"])
    described = json.loads(capsys.readouterr().out)
    sizes = [described[k] for k in ("query", "train", "validation", "database")]
    assert sizes == [1000, 5000, 500, 59000]
    assert described["num_classes"] == 10 and described["multi_label"] is False


def test_missing_folder_says_how_to_point_at_the_data(tmp_path, monkeypatch):
    monkeypatch.delenv("HASHLAB_DATA", raising=False)
    with pytest.raises(DatasetError, match="--data.root"):
        CIFAR10().prepare()
    with pytest.raises(DatasetError, match=f"{tmp_path / 'nope'} does not exist"):
        CIFAR10(root=str(tmp_path / "nope")).prepare()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="neither cifar-10-batches-py"):
        CIFAR10(root=str(tmp_path / "empty")).prepare()
    write_image_folder(tmp_path / "data" / "cifar10")  # the data root given for the data set's own folder
    with pytest.raises(DatasetError, match=f"holds a cifar10/ folder: pass {tmp_path / 'data' / 'cifar10'} as"):
        CIFAR10(root=str(tmp_path / "data")).prepare()


def test_wrong_class_folders_are_named(tmp_path):
    write_image_folder(tmp_path)
    (tmp_path / "train" / "dog").rename(tmp_path / "train" / "doggo")
    with pytest.raises(DatasetError, match=r"unexpected: \['doggo'\]; missing: \['dog'\]"):
        CIFAR10(root=str(tmp_path)).prepare()


def test_missing_batch_file_is_named(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DatasetError, match="test_batch is missing"):
        CIFAR10(root=str(tmp_path)).prepare()


def test_unreadable_image_is_named(tmp_path):
    write_image_folder(tmp_path)
    broken = tmp_path / "test" / "cat" / "0001.jpg"
    broken.write_bytes(b"not a jpeg")
    module = CIFAR10(root=str(tmp_path), protocol="cifar10-2")
    module.prepare()
    position = module.source.items.index(str(broken))
    with pytest.raises(DatasetError, match=f"cannot decode image {broken}"):
        module.all_items()[position]


def test_digits_is_embedded():
    described = Digits().describe()
    assert (described["query"], described["database"], described["num_classes"]) == (300, 1497, 10)
