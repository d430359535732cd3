"""Every real loader on a small fixture written in its real on-disk format: labels, shapes, boxes under
letterbox resize, no-box images, and one-line errors for a missing root and for a malformed file."""
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainables.config import DatasetConfig, TrialConfig
from trainables.data import DATASETS, build_dataset
from trainables.errors import ConfigError, DatasetError

REAL = ["pets", "cifar10", "fmnist", "imagenette", "cub", "waterbirds"]


def _img(path: Path, w: int, h: int, mode: str = "RGB", seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
    Image.fromarray(arr, mode).save(path)
    return arr


def _load(name, root, split="train", size=64, **params):
    data = build_dataset(DatasetConfig(name=name, root=root, image_size=size, params=params))
    return data, data.split(split)


def _one_line_error(name, root, match, **params):
    with pytest.raises(DatasetError) as e:
        _load(name, root, **params)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{name}: ") and match in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------- pets
PETS_LIST = """#Image CLASS-ID SPECIES BREED ID
#ID: 1:37 Class ids
Abyssinian_1 1 1 1
Abyssinian_2 1 1 1
beagle_1 12 2 1
beagle_2 12 2 1
"""
VOC = """<annotation><filename>{name}.jpg</filename><size><width>300</width><height>200</height><depth>3</depth></size>
<object><name>{species}</name><pose>Frontal</pose><truncated>0</truncated><difficult>0</difficult>
<bndbox><xmin>31</xmin><ymin>21</ymin><xmax>130</xmax><ymax>120</ymax></bndbox></object></annotation>"""


def write_pets(root: Path) -> Path:
    ann = root / "annotations"
    (ann / "xmls").mkdir(parents=True)
    (ann / "list.txt").write_text(PETS_LIST)
    (ann / "trainval.txt").write_text("Abyssinian_1 1 1 1\nbeagle_1 12 2 1\n")
    (ann / "test.txt").write_text("Abyssinian_2 1 1 1\nbeagle_2 12 2 1\n")
    _img(root / "images" / "Abyssinian_1.jpg", 300, 200)
    _img(root / "images" / "beagle_1.jpg", 200, 300, mode="L")  # greyscale JPEG -> RGB
    _img(root / "images" / "Abyssinian_2.jpg", 300, 200)
    _img(root / "images" / "beagle_2.jpg", 300, 200)
    (ann / "xmls" / "Abyssinian_1.xml").write_text(VOC.format(name="Abyssinian_1", species="cat"))
    trimap = np.full((200, 300), 2, dtype=np.uint8)
    trimap[20:120, 30:130] = 1
    (ann / "trimaps").mkdir()
    Image.fromarray(trimap, "L").save(ann / "trimaps" / "Abyssinian_1.png")
    return root


def test_pets_labels_boxes_masks(tmp_path):
    data, train = _load("pets", write_pets(tmp_path), size=60)
    assert data.num_classes == 37 and data.class_names[0] == "Abyssinian" and data.class_names[11] == "beagle"
    a, b = train[0], train[1]
    assert a["label"] == 0 and b["label"] == 11
    assert a["image"].shape == b["image"].shape == (3, 60, 60)
    # 300x200 -> scale 0.2, 60x40, pad y 10; VOC (31,21,130,120) 1-based inclusive -> (30,20,130,120)
    # boxes here: float32 scale-and-pad of hand-computed corners (pixels <= 100): abs 1e-4 >> a few ulps (~1e-5)
    assert a["box"].tolist() == pytest.approx([6.0, 14.0, 26.0, 34.0], abs=1e-4)
    assert bool(a["has_mask"]) and a["mask"].sum() == 20 * 20
    ys, xs = torch.nonzero(a["mask"], as_tuple=True)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (6, 14, 26, 34)
    assert torch.isnan(b["box"]).all() and not bool(b["has_mask"])  # no XML, no trimap
    assert b["image"][:, :, :10].abs().sum() == 0  # portrait: padded left and right
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=2)))
    assert batch["box"].shape == (2, 4) and batch["image"].shape == (2, 3, 60, 60)
    _, test = _load("pets", tmp_path, split="test")
    assert [int(s["label"]) for s in test] == [0, 11] and all(torch.isnan(s["box"]).all() for s in test)


def test_pets_species_target(tmp_path):
    data, train = _load("pets", write_pets(tmp_path), target="species")
    assert data.num_classes == 2 and [int(s["label"]) for s in train] == [0, 1]


def test_pets_malformed(tmp_path):
    root = write_pets(tmp_path)
    (root / "annotations" / "trainval.txt").write_text("Abyssinian_1 1 1\n")
    _one_line_error("pets", root, "trainval.txt line 1: expected 'NAME CLASS_ID SPECIES BREED_ID'")
    (root / "annotations" / "trainval.txt").write_text("Abyssinian_1 1 1 1\n")
    (root / "annotations" / "xmls" / "Abyssinian_1.xml").write_text("<annotation><object></object>")
    _one_line_error("pets", root, "Abyssinian_1.xml is not a Pascal VOC annotation")
    (root / "images" / "Abyssinian_1.jpg").unlink()
    _one_line_error("pets", root, "Abyssinian_1.jpg not found")


def test_pets_unreadable_image(tmp_path):
    root = write_pets(tmp_path)
    (root / "images" / "beagle_1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="pets: cannot read image .*beagle_1.jpg"):
        _, train = _load("pets", root)  # raised when the split is made (every image decoded once), not later
        train[1]


def test_pets_without_root_is_one_config_error():
    with pytest.raises(ConfigError) as e:
        TrialConfig.parse({"dataset": {"name": "pets"}})
    assert "\n" not in str(e.value) and "dataset.root" in str(e.value)


# ------------------------------------------------------------------------------------------- cifar10
def write_cifar(root: Path) -> tuple[np.ndarray, np.ndarray]:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (13, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, 13)
    for i in range(5):
        batch = {b"batch_label": b"training batch", b"labels": labels[2 * i:2 * i + 2].tolist(),
                 b"data": data[2 * i:2 * i + 2], b"filenames": [b"x.png", b"y.png"]}
        (d / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch))
    (d / "test_batch").write_bytes(pickle.dumps({b"labels": labels[10:].tolist(), b"data": data[10:]}))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}))
    return data, labels


def test_cifar10(tmp_path):
    data, labels = write_cifar(tmp_path)
    ds, train = _load("cifar10", tmp_path, size=32)
    assert len(train) == 10 and ds.class_names[3] == "cat" and ds.num_classes == 10
    s = train[3]
    assert s["label"] == labels[3] and s["image"].shape == (3, 32, 32)
    assert torch.equal((s["image"] * 255).round().to(torch.uint8), torch.from_numpy(data[3].reshape(3, 32, 32)))
    assert torch.isnan(s["box"]).all()
    _, test = _load("cifar10", tmp_path / "cifar-10-batches-py", split="test", size=48)
    assert len(test) == 3 and test[0]["image"].shape == (3, 48, 48) and test[2]["label"] == labels[12]


def test_cifar10_malformed(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    _one_line_error("cifar10", tmp_path, "data_batch_3 is not a readable CIFAR-10 pickle")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 5))}))
    _one_line_error("cifar10", tmp_path, "expected keys 'data'")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    _one_line_error("cifar10", tmp_path, "data_batch_3 not found")


# -------------------------------------------------------------------------------------------- fmnist
def _idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">i4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


def write_fmnist(root: Path) -> tuple[np.ndarray, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7).astype(np.uint8)
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images[:5])))
    (root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels[:5])))
    (root / "t10k-images-idx3-ubyte").write_bytes(_idx(images[5:]))
    (root / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels[5:]))
    return images, labels


def test_fmnist_gzip_and_raw(tmp_path):
    images, labels = write_fmnist(tmp_path)
    ds, train = _load("fmnist", tmp_path, size=28)
    assert ds.in_chans == 1 and ds.num_classes == 10 and len(train) == 5
    s = train[4]
    assert s["image"].shape == (1, 28, 28) and s["label"] == labels[4]
    assert torch.equal((s["image"][0] * 255).round().to(torch.uint8), torch.from_numpy(images[4]))
    _, test = _load("fmnist", tmp_path, split="test", size=56)
    assert len(test) == 2 and test[1]["image"].shape == (1, 56, 56) and test[1]["label"] == labels[6]


def test_fmnist_malformed(tmp_path):
    images, _ = write_fmnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images[0])))  # 2-d: wrong magic
    _one_line_error("fmnist", tmp_path, "is not a uint8 idx file with 3 dimension(s)")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images[:4])))
    _one_line_error("fmnist", tmp_path, "4 images but")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08 truncated gzip")
    _one_line_error("fmnist", tmp_path, "cannot read")
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    _one_line_error("fmnist", tmp_path, "train-images-idx3-ubyte(.gz) not found")


# ---------------------------------------------------------------------------------------- imagenette
def write_imagenette(root: Path) -> Path:
    _img(root / "train" / "n01440764" / "n01440764_1.JPEG", 120, 80)
    _img(root / "train" / "n03888605" / "n03888605_7.JPEG", 80, 120, mode="L")
    _img(root / "val" / "n02102040" / "n02102040_3.JPEG", 100, 100)
    return root


def test_imagenette(tmp_path):
    ds, train = _load("imagenette", write_imagenette(tmp_path / "imagenette2-160"), size=40)
    assert ds.num_classes == 10 and ds.class_names[0] == "tench"
    assert [int(s["label"]) for s in train] == [0, 9]
    s = train[1]  # 80x120 greyscale -> RGB, 27x40, padded left/right
    assert s["image"].shape == (3, 40, 40) and torch.equal(s["image"][0], s["image"][2])
    _, test = _load("imagenette", tmp_path / "imagenette2-160", split="test")
    assert len(test) == 1 and test[0]["label"] == 1


def test_imagenette_malformed(tmp_path):
    root = write_imagenette(tmp_path)
    (root / "train" / "n99999999").mkdir()
    _one_line_error("imagenette", root, "unexpected class folder")
    (root / "train" / "n99999999").rmdir()
    (root / "val").rename(root / "valid")
    with pytest.raises(DatasetError, match="val not found"):
        _load("imagenette", root, split="test")


# ----------------------------------------------------------------------------------- cub/waterbirds
CUB_FILES = {
    "images.txt": "1 001.Black_footed_Albatross/Black_Footed_Albatross_0001_1.jpg\n"
                  "2 001.Black_footed_Albatross/Black_Footed_Albatross_0002_2.jpg\n"
                  "3 200.Common_Yellowthroat/Common_Yellowthroat_0003_3.jpg\n",
    "image_class_labels.txt": "1 1\n2 1\n3 200\n",
    "train_test_split.txt": "1 1\n2 0\n3 1\n",
    "bounding_boxes.txt": "1 10.0 20.0 50.0 40.0\n2 0.0 0.0 200.0 100.0\n3 5.0 5.0 10.0 10.0\n",
    "classes.txt": "1 001.Black_footed_Albatross\n200 200.Common_Yellowthroat\n",
}


def write_cub(root: Path) -> Path:
    cub = root / "CUB_200_2011"
    cub.mkdir(parents=True)
    for name, text in CUB_FILES.items():
        (cub / name).write_text(text)
    for i, (_, rel) in enumerate(line.split() for line in CUB_FILES["images.txt"].splitlines()):
        _img(cub / "images" / rel, 200, 100, seed=i)
    return cub


def test_cub(tmp_path):
    write_cub(tmp_path)
    ds, train = _load("cub", tmp_path, size=100)
    assert ds.num_classes == 200 and ds.class_names[0] == "Black_footed_Albatross"
    assert [int(s["label"]) for s in train] == [0, 199]
    # 200x100 -> scale 0.5, 100x50, pad y 25; box (10,20)+(50x40) -> (10,20,60,60) -> (5,35,30,55)
    # (hand-computed corners; abs 1e-4 covers float32 scale-and-pad rounding, a few ulps of <= 100 px)
    assert train[0]["box"].tolist() == pytest.approx([5.0, 35.0, 30.0, 55.0], abs=1e-4)
    assert train[0]["image"].shape == (3, 100, 100)
    _, test = _load("cub", tmp_path / "CUB_200_2011", split="test", size=50)
    # 200x100 -> 50x25, pad 25 = 12 above + 13 below
    assert len(test) == 1 and test[0]["box"].tolist() == pytest.approx([0.0, 12.0, 50.0, 37.0], abs=1e-4)


def test_cub_malformed(tmp_path):
    cub = write_cub(tmp_path)
    (cub / "bounding_boxes.txt").write_text("1 10.0 20.0 fifty 40.0\n")
    _one_line_error("cub", tmp_path, "bounding_boxes.txt line 1: expected a number, got 'fifty'")
    (cub / "bounding_boxes.txt").unlink()
    _one_line_error("cub", tmp_path, "bounding_boxes.txt not found")


def write_waterbirds(root: Path) -> Path:
    rels = [line.split()[1] for line in CUB_FILES["images.txt"].splitlines()]
    rows = ["img_id,img_filename,y,split,place,place_filename"]
    for i, (rel, y, split, place) in enumerate(zip(rels, [1, 1, 0], [0, 2, 0], [1, 0, 0]), 1):
        _img(root / rel, 200, 100, seed=i)
        rows.append(f"{i},{rel},{y},{split},{place},/o/ocean/00000{i}.jpg")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def test_waterbirds_with_and_without_cub_boxes(tmp_path):
    root = write_waterbirds(tmp_path / "waterbird_complete95_forest2water2")
    ds, train = _load("waterbirds", root, size=100)
    assert ds.num_classes == 2 and not ds.has_boxes
    assert [int(s["label"]) for s in train] == [1, 0] and train.places.tolist() == [1, 0]
    assert torch.isnan(train[0]["box"]).all()
    write_cub(tmp_path / "cub")
    ds, train = _load("waterbirds", root, size=100, cub_root=str(tmp_path / "cub"))
    assert ds.has_boxes and train[0]["box"].tolist() == pytest.approx([5.0, 35.0, 30.0, 55.0], abs=1e-4)
    _, test = _load("waterbirds", root, split="test")
    assert len(test) == 1 and test[0]["label"] == 1
    with pytest.raises(DatasetError, match="no rows with split 1"):
        _load("waterbirds", root, split="test", test_split="val")


def test_waterbirds_malformed(tmp_path):
    root = write_waterbirds(tmp_path)
    (root / "metadata.csv").write_text("img_id,img_filename,y\n1,a.jpg,1\n")
    _one_line_error("waterbirds", root, "lacks column(s) split, place")
    (root / "metadata.csv").write_text("img_id,img_filename,y,split,place\n1,a.jpg,bird,0,0\n")
    _one_line_error("waterbirds", root, "metadata.csv line 2: y, split and place must be integers")


# ------------------------------------------------------------------------------------------- common
@pytest.mark.parametrize("name", REAL)
def test_missing_root_is_one_line(tmp_path, name):
    assert DATASETS.get(name).needs_root
    msg = _one_line_error(name, tmp_path / "nowhere", "not found")
    assert str(tmp_path / "nowhere") in msg and "expected" in msg


@pytest.mark.parametrize("name", REAL)
def test_empty_root_names_the_expected_layout(tmp_path, name):
    msg = _one_line_error(name, tmp_path, "not found")
    assert str(tmp_path) in msg and "expected" in msg
