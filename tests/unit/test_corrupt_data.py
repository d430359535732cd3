"""Unreadable image files in a real dataset directory: found when the split is made (every image it uses
decoded once), reported as one ``DatasetError`` line naming the file, or with ``dataset.skip_corrupt`` left
out with a warning and listed in ``DatasetSpec.skipped`` (the loop tags the count on the MLflow run)."""
import io

import pytest
import torch
from PIL import Image
from test_real_loaders import write_cub, write_imagenette, write_pets, write_waterbirds

from trainables.config import DatasetConfig
from trainables.data import build_dataset
from trainables.data._files import decode_problem
from trainables.errors import DatasetError


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _jpeg(path, size=(300, 200)):
    buf = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buf, "JPEG", quality=90)
    path.write_bytes(buf.getvalue())


def _build(name, root, skip=False, **params):
    return build_dataset(DatasetConfig(name=name, root=root, image_size=32, skip_corrupt=skip, params=params))


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_decode_problem_names_what_is_wrong(tmp_path, damage):
    path = tmp_path / "a.jpg"
    _jpeg(path)
    assert decode_problem(path, 32) is None
    if damage == "truncated":
        _truncate(path)
    else:
        path.write_bytes(b"" if damage == "empty" else b"\x89PNG garbage")
    why = decode_problem(path, 32)
    assert why and "\n" not in why, why


def test_truncated_jpeg_is_one_line_error_naming_the_file(tmp_path):
    root = write_pets(tmp_path)
    bad = root / "images" / "beagle_1.jpg"
    _jpeg(bad)
    _truncate(bad)
    with pytest.raises(DatasetError) as e:
        _build("pets", root).split("train")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("pets: cannot read image ") and str(bad) in msg, msg
    assert "truncated" in msg and "dataset.skip_corrupt" in msg, msg


def test_unreadable_mask_is_named(tmp_path):
    root = write_pets(tmp_path)
    trimap = root / "annotations" / "trimaps" / "Abyssinian_1.png"
    _truncate(trimap, 0.3)
    with pytest.raises(DatasetError, match=f"cannot read image {trimap}"):
        _build("pets", root).split("train")


def test_several_bad_files_are_counted(tmp_path):
    root = write_imagenette(tmp_path)
    bad = sorted((root / "train").rglob("*.JPEG"))
    for p in bad:
        p.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"\(and 1 more unreadable file\(s\)\)"):
        _build("imagenette", root).split("train")


def test_skip_corrupt_warns_skips_and_counts(tmp_path):
    root = write_pets(tmp_path)
    bad = root / "images" / "Abyssinian_1.jpg"
    _truncate(bad)
    data = _build("pets", root, skip=True)
    with pytest.warns(UserWarning, match=f"pets: skipping 1 unreadable image.*{bad.name}"):
        train = data.split("train")
    assert len(train) == 1 and int(train[0]["label"]) == 11  # only beagle_1 is left
    assert data.skipped == {"train": [str(bad)]}
    loader = torch.utils.data.DataLoader(train, batch_size=1, num_workers=2)  # no crash in a DataLoader worker
    assert [int(b["label"]) for b in loader] == [11]
    assert data.split("test") is not None and data.skipped["test"] == []


def test_skip_corrupt_with_a_capped_split(tmp_path):
    cub = write_cub(tmp_path)
    _truncate(next((cub / "images" / "001.Black_footed_Albatross").glob("*_0001_1.jpg")))
    cfg = DatasetConfig(name="cub", root=tmp_path, image_size=32, skip_corrupt=True, train_size=2)
    data = build_dataset(cfg)
    with pytest.warns(UserWarning, match="cub: skipping 1"):
        train = data.split("train")
    assert len(train) == 1 and len(data.skipped["train"]) == 1


def test_every_file_unreadable_is_an_error_even_when_skipping(tmp_path):
    root = write_waterbirds(tmp_path)
    for p in root.rglob("*.jpg"):
        p.write_bytes(b"")
    with pytest.raises(DatasetError, match="all 2 images of the split are unreadable"):
        _build("waterbirds", root, skip=True).split("train")
