"""The per-node split cache of generated datasets (trainables/data/_cache.py): a hit is bit for bit the draw."""
import torch

from trainables.config import DatasetConfig
from trainables.data import build_dataset
from trainables.data._cache import FIELDS, cache_dir


def _same(a, b) -> bool:
    return all((getattr(a, f) is None and getattr(b, f) is None) or torch.equal(getattr(a, f), getattr(b, f))
               for f in FIELDS)


def test_cached_splits_equal_fresh_draws_and_hit(tmp_path, monkeypatch):
    for name in ("shapes", "digits"):
        cfg = DatasetConfig(name=name, image_size=32, params={"n_train": 40, "n_test": 12})
        fresh = build_dataset(cfg)  # no cache
        for split in ("train", "test"):
            cold = build_dataset(cfg, str(tmp_path)).load(split)
            warm_spec = build_dataset(cfg, str(tmp_path))
            monkeypatch.setattr(warm_spec, "_generate", lambda s: (_ for _ in ()).throw(AssertionError("miss")))
            warm = warm_spec.load(split)  # from disk: generating would raise
            assert _same(fresh.load(split), cold) and _same(cold, warm)
    assert len(list(tmp_path.glob("*.pt"))) == 4


def test_cache_key_follows_the_config_and_bad_entries_are_redrawn(tmp_path):
    a = DatasetConfig(name="shapes", image_size=32, params={"n_train": 20, "n_test": 8})
    b = DatasetConfig(name="shapes", image_size=32, seed=1, params={"n_train": 20, "n_test": 8})
    ta, tb = build_dataset(a, str(tmp_path)).load("train"), build_dataset(b, str(tmp_path)).load("train")
    assert not torch.equal(ta.images, tb.images) and len(list(tmp_path.glob("*.pt"))) == 2
    for f in tmp_path.glob("*.pt"):
        f.write_bytes(b"truncated")
    again = build_dataset(a, str(tmp_path)).load("train")
    assert _same(again, build_dataset(a).load("train"))


def test_cache_dir_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("ARX_DATA_CACHE", "0")
    assert cache_dir() is None
    monkeypatch.setenv("ARX_DATA_CACHE", str(tmp_path))
    assert cache_dir() == str(tmp_path)
    monkeypatch.delenv("ARX_DATA_CACHE")
    assert cache_dir().endswith("arx-data-cache")
