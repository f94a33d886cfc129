"""Flickr25K, CUB-200-2011, Stanford Cars, list files and a Hugging Face source, each read from
fixture files written in the data set's real on-disk format; splits, split files and errors."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from hashlab.cli import main
from hashlab.data import CUB200, DatasetError, Flickr25K, ListFile, StanfordCars
from hashlab.data.flickr25k import NUM_IMAGES, POTENTIAL_CONCEPTS, RELEVANT_CONCEPTS, read_flickr25k
from hashlab.data.stanford_cars import read_stanford_cars
from tests.test_data import write_batches

RNG = np.random.default_rng(0)


def jpeg_bytes(width=40, height=30, seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


# -- MIRFLICKR-25000 ---------------------------------------------------------------------------------
def write_flickr25k(root, labeled=5700, annotations="mirflickr25k_annotations_v080"):
    """mirflickr/imN.jpg for the first ``labeled`` images (the rest carry no label in any concept and
    need no file) and the v080 annotation files: one image number per line, with the zip's README.txt. The zip has
    no folder of its own: ``annotations`` is where they were unzipped ("." for a plain unzip beside mirflickr/)."""
    (root / "mirflickr").mkdir(parents=True)
    folder = root / annotations
    folder.mkdir(exist_ok=True)
    data = jpeg_bytes()
    for number in range(1, labeled + 1):
        (root / "mirflickr" / f"im{number}.jpg").write_bytes(data)
    rng = np.random.default_rng(0)
    membership = {}
    for concept in POTENTIAL_CONCEPTS + RELEVANT_CONCEPTS:
        if concept.endswith("_r1"):  # as in the zip, the images where the concept is salient are some of its own
            pool, size = membership[concept.removesuffix("_r1")], labeled // 12
        else:
            pool, size = np.arange(1, labeled + 1), labeled // 6
        members = np.sort(rng.choice(pool, size, replace=False))
        membership[concept] = members
        (folder / f"{concept}.txt").write_text("".join(f"{m}\n" for m in members))
    (folder / "README.txt").write_text("MIRFLICKR-25000 annotations v080\n")
    return membership


@pytest.fixture(scope="module")
def flickr_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("flickr25k")
    return root, write_flickr25k(root)


def test_flickr25k_labels_protocol_and_dropped_images(flickr_root):
    root, membership = flickr_root
    module = Flickr25K(root=str(root), image_size=32)
    described = module.describe()
    labels = module.source.labels
    assert labels.shape[1] == 24 and module.source.class_names == POTENTIAL_CONCEPTS
    kept = NUM_IMAGES - described["dropped_without_label"]
    assert len(labels) == kept and labels.any(1).all()
    # image 7's row holds exactly the concepts whose file lists 7
    row = module.source.items.index(str(root / "mirflickr" / "im7.jpg"))
    assert [c for c, on in zip(POTENTIAL_CONCEPTS, labels[row], strict=True) if on] == \
        [c for c in POTENTIAL_CONCEPTS if 7 in membership[c]]
    assert described["multi_label"] is True
    sizes = [described[k] for k in ("query", "train", "validation", "database")]
    assert sizes == [1000, 4000, 400, kept - 5000]  # all 4,000 training images fitted on
    split = module.split
    assert set(split.val) <= set(split.database)  # validation drawn outside the training set
    parts = [set(split.query), set(split.train), set(split.database)]
    assert all(a.isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1:])
    image, label, _ = module.dataset("train", train=True)[0]
    assert image.shape == (3, 32, 32) and label.shape == (24,)
    assert module.report_topk == (5000,)


def test_flickr25k_dfch_protocol_retrieves_among_the_training_images(flickr_root):
    """DFCH's own protocol: 4,000 training images and 1,000 queries, database = training set,
    validation from the images no set uses, whole images resized to 227 x 227."""
    root, _ = flickr_root
    plain = Flickr25K(root=str(root), image_size=32)
    plain.prepare()
    module = Flickr25K(root=str(root), protocol="flickr25k-dfch", image_size=227, resize_whole=True)
    described = module.describe()
    split = module.split
    assert [described[k] for k in ("query", "train", "validation", "database")] == [1000, 4000, 400, 4000]
    np.testing.assert_array_equal(split.database, split.train)
    np.testing.assert_array_equal(split.query, plain.split.query)  # the same draw as flickr25k
    assert set(split.val).isdisjoint(np.union1d(split.train, split.query))
    assert module.transform_description() == "resize 227x227, to [0,1]"
    image, _, _ = module.dataset("query")[0]
    assert image.shape == (3, 227, 227)


def test_flickr25k_38_label_variant_is_a_different_data_set(flickr_root):
    root, membership = flickr_root
    module = Flickr25K(root=str(root), label_set="38")
    module.prepare()
    assert module.source.labels.shape[1] == 38 and module.source.class_names[24:] == RELEVANT_CONCEPTS
    assert module.source.name == "flickr25k-38labels"  # its own split file, never the 24-label one
    assert module.split_file.name.startswith("flickr25k-38labels-")


def test_flickr25k_malformed_annotation_names_file_and_line(tmp_path):
    write_flickr25k(tmp_path, labeled=20)
    path = tmp_path / "mirflickr25k_annotations_v080" / "sky.txt"
    path.write_text("3\n4\nim5\n")
    with pytest.raises(DatasetError, match=r"sky.txt, line 3: expected an image number, found 'im5'"):
        Flickr25K(root=str(tmp_path)).prepare()
    path.write_text("3\n25001\n")
    with pytest.raises(DatasetError, match=r"sky.txt, line 2: image number 25001 is outside 1..25000"):
        Flickr25K(root=str(tmp_path)).prepare()
    path.unlink()
    with pytest.raises(DatasetError, match=r"sky.txt is missing. Get mirflickr25k.zip"):
        Flickr25K(root=str(tmp_path)).prepare()


def test_flickr25k_annotations_unzipped_without_a_folder_or_into_another_name_read_the_same(tmp_path):
    """`unzip mirflickr25k_annotations_v080.zip` in the data folder leaves the concept files beside mirflickr/;
    other tools make a folder of the zip's name, or users name it annotations/: the same labels each way."""
    labels = {}
    for copy, annotations in enumerate(("mirflickr25k_annotations_v080", ".", "annotations")):
        write_flickr25k(tmp_path / f"copy{copy}", labeled=30, annotations=annotations)
        labels[annotations] = read_flickr25k(tmp_path / f"copy{copy}").labels
    assert all(np.array_equal(labels["."], other) for other in labels.values())
    (tmp_path / "none" / "mirflickr").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no annotation files \(animals.txt, ...\) in .*none, looked for in "
                       r"mirflickr25k_annotations_v080/, annotations/, annotation/ and beside mirflickr/.*unzip -d"):
        read_flickr25k(tmp_path / "none")


def test_flickr25k_missing_images_are_counted_and_named(tmp_path):
    write_flickr25k(tmp_path, labeled=20)
    (tmp_path / "mirflickr" / "im3.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 images are missing .* im3.jpg"):
        Flickr25K(root=str(tmp_path)).prepare()


# -- CUB-200-2011 --------------------------------------------------------------------------------------
CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Groove_billed_Ani"]


def write_cub200(root, train_per_class=4, test_per_class=3):
    """CUB_200_2011/ with images.txt, image_class_labels.txt, train_test_split.txt, classes.txt,
    bounding_boxes.txt (x y width height) and images/<class>/<Name>_<n>.jpg."""
    base = root / "CUB_200_2011"
    image_lines, label_lines, split_lines, box_lines = [], [], [], []
    image_id = 0
    for class_id, name in enumerate(CUB_CLASSES, 1):
        (base / "images" / name).mkdir(parents=True)
        for n in range(train_per_class + test_per_class):
            image_id += 1
            relative = f"{name}/{name.split('.')[1]}_{n:04d}_{image_id}.jpg"
            (base / "images" / relative).write_bytes(jpeg_bytes(48, 36, image_id))
            image_lines.append(f"{image_id} {relative}")
            label_lines.append(f"{image_id} {class_id}")
            split_lines.append(f"{image_id} {int(n < train_per_class)}")
            box_lines.append(f"{image_id} {n + 1}.0 2.0 20.0 10.0")
    for file, lines in (("images.txt", image_lines), ("image_class_labels.txt", label_lines),
                        ("train_test_split.txt", split_lines), ("bounding_boxes.txt", box_lines),
                        ("classes.txt", [f"{i} {n}" for i, n in enumerate(CUB_CLASSES, 1)])):
        (base / file).write_text("\n".join(lines) + "\n")
    return base


def test_cub200_official_files_and_fine_grained_protocol(tmp_path):
    write_cub200(tmp_path)
    module = CUB200(root=str(tmp_path), image_size=32, val_fraction=0.25)
    described = module.describe()
    assert [described[k] for k in ("query", "train", "validation", "database", "num_classes")] == [12, 12, 4, 16, 4]
    split, source = module.split, module.source
    assert (source.official_split[split.query] == "test").all()
    np.testing.assert_array_equal(np.union1d(split.train, split.val), split.database)  # database = training pool
    assert described["validation_from"] == "held out of the training set"  # no image outside train and query
    assert source.class_names == CUB_CLASSES and source.labels[7].argmax() == 1
    np.testing.assert_allclose(source.boxes[1], [2.0, 2.0, 22.0, 12.0])  # x y w h -> x1 y1 x2 y2
    train_image = module.dataset("train", train=True)[0][0]
    eval_image = module.dataset("query")[0][0]
    assert train_image.shape == eval_image.shape == (3, 32, 32)
    assert module.transform_description() == "resize short side 37, center crop 32, to [0,1]"
    # the same module reads the folder itself as well as its parent
    itself = CUB200(root=str(tmp_path / "CUB_200_2011"), val_fraction=0.25)
    assert itself.describe()["split_fingerprint"] == described["split_fingerprint"]


def test_cub200_errors_name_the_file_and_line(tmp_path):
    base = write_cub200(tmp_path)
    lines = (base / "train_test_split.txt").read_text().splitlines()
    (base / "train_test_split.txt").write_text("\n".join(lines[:4] + ["5 1 extra"] + lines[5:]) + "\n")
    with pytest.raises(DatasetError, match=r"train_test_split.txt, line 5: expected 2 fields, found 3"):
        CUB200(root=str(tmp_path)).prepare()
    (base / "train_test_split.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DatasetError, match=r"image id 28 .* has no line in .*train_test_split.txt"):
        CUB200(root=str(tmp_path)).prepare()
    (base / "train_test_split.txt").unlink()
    with pytest.raises(DatasetError, match=r"train_test_split.txt is missing. Get CUB_200_2011.tgz"):
        CUB200(root=str(tmp_path)).prepare()
    (base / "train_test_split.txt").write_text("\n".join(lines) + "\n")
    boxes = (base / "bounding_boxes.txt").read_text().splitlines()
    (base / "bounding_boxes.txt").write_text("\n".join(boxes[:-1]) + "\n")
    with pytest.raises(DatasetError, match=r"image id 28 .* has no line in .*bounding_boxes.txt"):
        CUB200(root=str(tmp_path)).prepare()


def test_undecodable_image_stops_the_run_or_is_skipped_and_counted(tmp_path):
    base = write_cub200(tmp_path)
    broken = base / "images" / CUB_CLASSES[2] / "Sooty_Albatross_0001_16.jpg"
    broken.write_bytes(jpeg_bytes(48, 36)[:200])  # truncated mid-scan
    module = CUB200(root=str(tmp_path), image_size=32)
    module.prepare()
    with pytest.raises(DatasetError, match=f"cannot decode image {broken}.*--data.skip_corrupt true"):
        module.all_items()[module.source.items.index(str(broken))]
    skipping = CUB200(root=str(tmp_path), image_size=32, skip_corrupt=True, splits_dir=str(tmp_path / "s"))
    described = skipping.describe()
    assert described["skipped_corrupt"] == 1 and described["skipped_corrupt_files"] == [
        f"images/{CUB_CLASSES[2]}/Sooty_Albatross_0001_16.jpg"]
    assert len(skipping.source.items) == 27 and str(broken) not in skipping.source.items
    assert all(skipping.all_items()[i][0].shape == (3, 32, 32) for i in range(27))


def test_split_files_are_reused_and_a_changed_data_set_is_reported(tmp_path):
    base = write_cub200(tmp_path)
    first = CUB200(root=str(tmp_path))
    first.prepare()
    stored = json.loads(first.split_file.read_text())
    assert stored["data_fingerprint"] == first.source.fingerprint()
    assert stored["split_fingerprint"] == first.split.fingerprint() and stored["num_items"] == 28
    stamp = first.split_file.stat().st_mtime_ns
    again = CUB200(root=str(tmp_path))
    again.prepare()
    assert again.split_file.stat().st_mtime_ns == stamp and again.split.fingerprint() == first.split.fingerprint()
    # relabel one image: the data set is not the one the split was drawn from
    labels = (base / "image_class_labels.txt").read_text().replace("1 1\n", "1 2\n", 1)
    (base / "image_class_labels.txt").write_text(labels)
    with pytest.raises(DatasetError, match=r"was drawn from data with fingerprint .* the data set changed"):
        CUB200(root=str(tmp_path)).prepare()


# -- Stanford Cars ----------------------------------------------------------------------------------------
CAR_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]


def annotations_struct(rows, fields=("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")):
    """A MATLAB struct array as in the devkit: numeric fields as 1x1 uint16/uint8, fname as a string."""
    out = np.empty((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, row in enumerate(rows):
        values = dict(zip(("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"), row, strict=True))
        out[0, i] = tuple(np.array([values[f]]) if f == "fname" else np.array([[values[f]]], dtype=np.uint16)
                          for f in fields)
    return out


def car_rows(per_class=(3, 2)):
    """(part, file name, box and 1-based class) of each image, train then test, numbered per part."""
    rows = []
    for part, count in zip(("train", "test"), per_class, strict=True):
        n = 0
        for label in range(1, len(CAR_CLASSES) + 1):
            for _ in range(count):
                n += 1
                rows.append((part, f"{n:05d}.jpg", (3, 4, 50 + label, 30, label)))
    return rows


def class_names_cell():
    names = np.empty((1, len(CAR_CLASSES)), dtype=object)
    names[0, :] = [np.array([n]) for n in CAR_CLASSES]
    return names


def write_stanford_cars(root, per_class=(3, 2), kaggle=False, test_labels=True):
    """stanford_cars/ as torchvision's StanfordCars reads it: devkit/cars_meta.mat (class_names),
    devkit/cars_train_annos.mat and cars_test_annos_withlabels.mat ('annotations' struct arrays with
    bbox_x1..bbox_y2, 1-based class, fname), cars_train/ and cars_test/. ``kaggle``: as the Kaggle copy
    unpacks, car_devkit/devkit/ and cars_train/cars_train/, the labelled test file put in its devkit."""
    base = root / "stanford_cars"
    devkit = base / ("car_devkit/devkit" if kaggle else "devkit")
    devkit.mkdir(parents=True)
    savemat(devkit / "cars_meta.mat", {"class_names": class_names_cell()})
    for part, target in (("train", devkit / "cars_train_annos.mat"),
                         ("test", (devkit if kaggle else base) / "cars_test_annos_withlabels.mat")):
        folder = base / f"cars_{part}" / (f"cars_{part}" if kaggle else "")
        folder.mkdir(parents=True)
        rows = []
        for number, (_, fname, numbers) in enumerate((r for r in car_rows(per_class) if r[0] == part), 1):
            (folder / fname).write_bytes(jpeg_bytes(60, 40, number))
            rows.append((*numbers, fname))
        if not test_labels and part == "test":  # the original cars_test_annos.mat: no class field
            struct = annotations_struct(rows, ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "fname"))
        else:
            struct = annotations_struct(rows)
        savemat(target, {"annotations": struct})
    return base


def write_stanford_cars_single_file(root, per_class=(3, 2)):
    """The single-file release: cars_annos.mat (one 'annotations' struct array of every image: relative_im_path,
    bbox_x1..bbox_y2, 1-based class, test flag; and class_names) and car_ims/000001.jpg ..., numbered over both
    halves, here in the release's order: by class, not by half."""
    base = root / "stanford_cars"
    (base / "car_ims").mkdir(parents=True)
    fields = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
    rows = sorted(car_rows(per_class), key=lambda row: row[2][4])
    struct = np.empty((1, len(rows)), dtype=[(f, "O") for f in fields])
    for number, (part, _, numbers) in enumerate(rows, 1):
        (base / "car_ims" / f"{number:06d}.jpg").write_bytes(jpeg_bytes(60, 40, number))
        struct[0, number - 1] = (np.array([f"car_ims/{number:06d}.jpg"]),
                                 *(np.array([[v]], dtype=np.uint16) for v in numbers),
                                 np.array([[int(part == "test")]], dtype=np.uint8))
    savemat(base / "cars_annos.mat", {"annotations": struct, "class_names": class_names_cell()})
    return base


@pytest.mark.parametrize("kaggle", [False, True])
def test_stanford_cars_mat_files(tmp_path, kaggle):
    write_stanford_cars(tmp_path, kaggle=kaggle)
    module = StanfordCars(root=str(tmp_path), image_size=32, val_fraction=0)
    described = module.describe()
    assert [described[k] for k in ("query", "train", "database", "num_classes")] == [6, 9, 9, 3]
    source = module.source
    assert source.class_names == CAR_CLASSES
    assert source.labels.argmax(1).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 1, 1, 2, 2]  # 1-based in .mat
    np.testing.assert_allclose(source.boxes[4], [3, 4, 52, 30])
    assert module.dataset("query")[0][0].shape == (3, 32, 32)


def test_stanford_cars_single_file_release_reads_the_same_set(tmp_path):
    split_release = read_stanford_cars(write_stanford_cars(tmp_path / "split"))
    single = read_stanford_cars(write_stanford_cars_single_file(tmp_path / "single"))
    assert single.class_names == CAR_CLASSES and len(single.items) == 15
    assert single.items[0].endswith("car_ims/000001.jpg")
    for part in ("train", "test"):  # per half, the same labels and boxes
        a, b = split_release.official_split == part, single.official_split == part
        np.testing.assert_array_equal(split_release.labels[a], single.labels[b])
        np.testing.assert_allclose(split_release.boxes[a], single.boxes[b])
    module = StanfordCars(root=str(tmp_path / "single"), image_size=32, val_fraction=0)
    assert [module.describe()[k] for k in ("query", "train", "database")] == [6, 9, 9]


def test_stanford_cars_test_annotations_without_labels_are_explained(tmp_path):
    write_stanford_cars(tmp_path, test_labels=False)
    with pytest.raises(DatasetError, match=r"lack field\(s\) class .*use cars_test_annos_withlabels.mat"):
        StanfordCars(root=str(tmp_path)).prepare()
    meta = tmp_path / "stanford_cars" / "devkit" / "cars_meta.mat"
    savemat(meta, {"names": class_names_cell()})
    with pytest.raises(DatasetError, match=r"cars_meta.mat holds no variable 'class_names'"):
        StanfordCars(root=str(tmp_path)).prepare()
    for broken in (b"", b"<html>404 Not Found</html>" * 3):  # what a failed download leaves
        meta.write_bytes(broken)
        with pytest.raises(DatasetError, match=r"cars_meta.mat is not a readable MATLAB file .*The official page"):
            StanfordCars(root=str(tmp_path)).prepare()
    meta.unlink()
    with pytest.raises(DatasetError, match=r"cars_meta.mat is missing \(looked in .*stanford_cars/devkit/, "
                       r".*stanford_cars/car_devkit/devkit/\). The official page .* no longer serves"):
        StanfordCars(root=str(tmp_path)).prepare()


# -- list files ---------------------------------------------------------------------------------------------
def write_lists(root, classes=5):
    """images/ and train.txt / test.txt / database.txt: 'path 0 1 0 ...' per line; the database list
    contains the training list, as in DeepHash-pytorch's NUS-WIDE and COCO lists."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(3)
    lines = []
    for i in range(60):
        (root / "images" / f"{i:03d}.jpg").write_bytes(jpeg_bytes(20, 20, i))
        vector = rng.integers(0, 2, classes)
        vector[i % classes] = 1
        lines.append(f"images/{i:03d}.jpg " + " ".join(map(str, vector)))
    (root / "test.txt").write_text("\n".join(lines[:10]) + "\n")
    (root / "train.txt").write_text("\n".join(lines[10:30]) + "\n")
    (root / "database.txt").write_text("\n".join(lines[10:]) + "\n")
    return lines


def test_list_files_give_the_split_and_share_items(tmp_path):
    lines = write_lists(tmp_path)
    module = ListFile(root=str(tmp_path), dataset_name="nuswide-lists", image_size=16, val_fraction=0.25)
    described = module.describe()
    # the training list whole; validation from the database images outside it
    assert [described[k] for k in ("query", "train", "validation", "database", "num_classes")] == [10, 20, 5, 50, 5]
    assert described["validation_from"] == "outside the training set"
    assert len(module.source.items) == 60  # training images appear in two lists, once as items
    row = module.source.items.index(str(tmp_path / "images" / "003.jpg"))
    np.testing.assert_array_equal(module.source.labels[row], [int(v) for v in lines[3].split()[1:]])
    fitted = {module.source.items[i] for i in module.split.train}
    assert fitted == {str(tmp_path / line.split()[0]) for line in lines[10:30]}
    assert module.split_file.name.startswith("nuswide-lists-lists-")
    assert module.dataset("query")[0][0].shape == (3, 16, 16)


@pytest.mark.parametrize("bad_line, message", [
    ("images/000.jpg 1 0 1", r"test.txt, line 2: 3 label columns, but .*line 1 has 5"),
    ("images/000.jpg 1 0 2 0 0", r"test.txt, line 2: labels must be a 0/1 multi-hot vector"),
    ("images/000.jpg", r"test.txt, line 2: expected 'path label label ...'"),
    ("images/000.jpg a b c d e", r"test.txt, line 2: labels must be 0/1 integers"),
])
def test_malformed_list_lines_are_named(tmp_path, bad_line, message):
    lines = write_lists(tmp_path)
    (tmp_path / "test.txt").write_text("\n".join([lines[1], bad_line]) + "\n")
    with pytest.raises(DatasetError, match=message):
        ListFile(root=str(tmp_path)).prepare()


def test_list_files_that_disagree_on_an_images_labels(tmp_path):
    lines = write_lists(tmp_path)
    path, labels = lines[12].split(" ", 1)
    flipped = " ".join("1" if v == "0" else "0" for v in labels.split())
    (tmp_path / "train.txt").write_text(f"{path} {flipped}\n")
    with pytest.raises(DatasetError, match=rf"train.txt, line 1: {path} has labels {flipped}, but .*test.txt|database"):
        ListFile(root=str(tmp_path)).prepare()
    with pytest.raises(DatasetError, match="the train list nope.txt is missing"):
        ListFile(root=str(tmp_path), train_list="nope.txt").prepare()


# -- a Hugging Face data set ------------------------------------------------------------------------------
def test_hub_source_reads_a_local_datasets_folder(tmp_path, monkeypatch):
    """The --data.hub_name path, fed a folder that `datasets` itself wrote (as the Hub serves it:
    data/<split>-*.parquet with an Image and a ClassLabel column); offline."""
    import datasets
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CUB_CLASSES)})
    (tmp_path / "hub" / "data").mkdir(parents=True)
    for split, count in (("train", 8), ("test", 4)):
        rows = {"image": [Image.open(io.BytesIO(jpeg_bytes(30, 20, i))) for i in range(count)],
                "label": [i % 4 for i in range(count)]}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(
            str(tmp_path / "hub" / "data" / f"{split}-00000-of-00001.parquet"))
    module = CUB200(hub_name=str(tmp_path / "hub"), image_size=16, val_fraction=0)
    described = module.describe()
    assert [described[k] for k in ("query", "train", "database", "num_classes")] == [4, 8, 8, 4]
    assert module.source.class_names == CUB_CLASSES
    image, label, index = module.dataset("query")[1]
    assert image.shape == (3, 16, 16) and label.argmax() == 1 and index == 9
    assert torch.is_tensor(image)
    with pytest.raises(DatasetError, match="has no column 'label_id'"):
        CUB200(hub_name=str(tmp_path / "hub"), hub_label_column="label_id").prepare()


# -- hashlab data describe ---------------------------------------------------------------------------------
def test_describe_prints_json_for_each_format(tmp_path, capsys):
    write_cub200(tmp_path / "cub")
    write_stanford_cars(tmp_path / "cars")
    for name, root in (("cub200", tmp_path / "cub"), ("stanford_cars", tmp_path / "cars")):
        main(["data", "describe", name, "--root", str(root), "--val-fraction", "0"])
        described = json.loads(capsys.readouterr().out)
        assert described["dataset"] == name and described["protocol"] == "official-test-query"
        assert {"num_classes", "multi_label", "query", "train", "validation", "database",
                "split_fingerprint"} <= set(described)


def test_describe_all_is_table_1_with_absent_data_sets_named(tmp_path, capsys):
    write_batches(tmp_path / "cifar10" / "cifar-10-batches-py", per_class_train=640, per_class_test=10)
    write_cub200(tmp_path / "cub200")
    main(["data", "describe", "--all", "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| cifar10 | cifar10-1 | 10 | no | 5,000 | 500 | 1,000 | 5,500 |" in out
    assert "| cub200 | official-test-query | 4 | no | 16 | 0 | 12 | 16 |" in out  # 10% of 4 per class rounds to 0
    assert "- flickr25k: skipped, folder" in out and "- stanford_cars: skipped, folder" in out


def test_a_list_file_module_resizes_whole_images_when_resize_whole_is_set(tmp_path):
    """dfch's resize_whole (the whole image to size x size, no crop) holds for list files as for every data set;
    family chooses the transforms otherwise."""
    assert ListFile(root=str(tmp_path)).family == "photo"
    assert ListFile(root=str(tmp_path), family="small").family == "small"
    assert ListFile(root=str(tmp_path), resize_whole=True).family == "small"
    assert ListFile.evaluation_geometry({"resize_whole": True, "family": "photo", "image_size": 99}) == (99, "small")
