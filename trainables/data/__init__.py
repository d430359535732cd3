"""Dataset registry: embedded ``shapes`` / ``digits`` and real loaders (one module each)."""
from trainables.data.base import DATASETS, DatasetSpec, TensorSplit, build_dataset, make_sample, register_dataset

__all__ = ["DATASETS", "DatasetSpec", "TensorSplit", "build_dataset", "make_sample", "register_dataset"]
