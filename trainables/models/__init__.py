"""Backbones (timm + smallcnn) wrapped in ``Classifier``; heads and layers that regimes insert."""
from trainables.models.classifier import Classifier, unwrap
from trainables.models.factory import (
    TARGET_LAYERS,
    backbone_exists,
    backbone_names,
    build_classifier,
    count_parameters,
    family_of,
)

__all__ = ["Classifier", "unwrap", "TARGET_LAYERS", "backbone_exists", "backbone_names",
           "build_classifier", "count_parameters", "family_of"]
