"""Typed trial configuration (``TrialConfig``), validated in the trial driver and again in each worker.

Every mistake becomes one line naming the field and what is allowed (``ConfigError``). Dataset- and
regime-specific settings live in ``params`` and are validated by the registered dataset's / regime's own
``Params`` model, so adding a regime never edits this file.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from trainables.errors import ConfigError, format_validation_error


def _registered(registry, name: str):
    """``registry.get(name)`` as a validation error (one line listing the valid names)."""
    try:
        registry.get(name)
    except ValueError as e:
        raise ValueError(str(e)) from None
    return name


def _one_of(kind: str, name: str, valid: list[str]) -> str:
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")
    return name


def _attack(name: str) -> str:
    from trainables.evaluation.attacks import EVAL_ATTACKS

    return _registered(EVAL_ATTACKS, name)


def _explain_metric(name: str) -> str:
    from trainables.evaluation import families_of_group

    valid = sorted({k.split("/", 1)[1] for f in families_of_group("explain") for k in f.all_keys()})
    return _one_of("explain metric", name, valid)


def _cam(name: str) -> str:
    from trainables.explain import CAM_METHODS

    return name if name == "auto" else _registered(CAM_METHODS, name)


def _group(name: str) -> str:
    from trainables.evaluation import FAMILIES, groups

    if name not in groups():
        FAMILIES.populate(rescan=True)  # a family module added after this process first looked
    return _one_of("evaluation group", name, groups())


# names of open sets, validated against their registries when a config is parsed (no Literal lists)
AttackName = Annotated[str, AfterValidator(_attack)]
ExplainMetric = Annotated[str, AfterValidator(_explain_metric)]
CamMethod = Annotated[str, AfterValidator(_cam)]
GroupName = Annotated[str, AfterValidator(_group)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, protected_namespaces=())


class DatasetConfig(Strict):
    name: str = "shapes"
    root: Path | None = None
    image_size: int = Field(64, ge=16, le=1024)
    train_size: int | None = Field(None, ge=1, description="cap on training images (None = all)")
    test_size: int | None = Field(None, ge=1, description="cap on test images (None = all)")
    seed: int = Field(0, ge=0, lt=2**32)
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes per Train worker")
    skip_corrupt: bool = Field(False, description="leave unreadable image files out (warned, count tagged "
                                                  "arx.dataset.skipped_corrupt) instead of failing the trial")
    params: dict[str, Any] = Field(default_factory=dict, description="dataset-specific settings")
    augment: Literal["none", "flip", "cifar", "imagenet"] | None = Field(
        None, description="training augmentation preset (trainables/data/augment.py); null: the dataset's default")

    @model_validator(mode="after")
    def _known(self):
        from trainables.data import DATASETS

        try:
            ds = DATASETS.get(self.name)
        except ValueError as e:
            raise ValueError(str(e)) from None
        _validate_params(ds.Params, self.params, "dataset.params")
        if ds.needs_root and self.root is None:
            raise ValueError(f"dataset {self.name!r} reads files: set dataset.root to its directory")
        return self


class ModelConfig(Strict):
    backbone: str = "smallcnn"
    pretrained: bool = False
    num_classes: int | None = Field(None, ge=2, description="default: the dataset's class count")
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0)
    channels_last: bool = True

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        from trainables.models import backbone_exists, backbone_names

        if not backbone_exists(v):
            close = difflib.get_close_matches(v, backbone_names(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see `timm.list_models()` or use 'smallcnn'"
            raise ValueError(f"unknown backbone {v!r}{hint}")
        return v


class RegimeConfig(Strict):
    name: str = "standard"
    params: dict[str, Any] = Field(default_factory=dict)
    _typed: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _known(self):
        from trainables.regimes import REGIMES

        regime = REGIMES.get(self.name)
        self._typed = _validate_params(regime.Params, self.params, "regime.params")
        return self

    @property
    def typed(self):
        """The regime's validated ``Params`` object (every default filled in), parsed once with the config."""
        return self._typed


class OptimConfig(Strict):
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    epochs: int = Field(3, ge=1, le=10000)
    batch_size: int = Field(64, ge=1)
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    grad_clip: float | None = Field(None, gt=0)


class RobustEvalConfig(Strict):
    """Options of the robustness evaluation group (ALGORITHMS.md §2.3, §5.4; lipschitz paper §III-A)."""

    attacks: tuple[AttackName, ...] = Field(
        ("fgsm", "pgd", "pgd_l2"), description="fixed-budget attacks behind robust/<attack>[_agree|_top5] "
                                               "(registered evaluation attacks, evaluation/attacks.py)")
    eps: float | None = Field(None, gt=0, le=1, description="L-inf eval ε in [0,1] pixels; default 1/255 (≥64 px) or 8/255 (<64 px)")
    eps_l2: float = Field(0.5, gt=0, description="L2 eval ε for robust/pgd_l2 (pixel units)")
    pgd_steps: int = Field(10, ge=1)
    pgd_step_ratio: float = Field(2.5, gt=0, description="PGD step size = ratio * eps / steps")
    random_start: bool = True
    apgd_steps: int = Field(10, ge=1, description="APGD / APGD-T / FAB-T iterations of robust/apgd_*, robust/autoattack "
                                                  "(torchattacks' AutoAttack: 10; fra31/auto-attack standard: 100)")
    apgd_restarts: int = Field(1, ge=1, description="APGD restarts of robust/apgd_ce, robust/apgd_dlr")
    square_queries: int = Field(1000, ge=1, description="Square queries of robust/square and AutoAttack's Square stage "
                                                        "(the reference: 5000; fewer only on still-robust images)")
    autoattack_version: Literal["standard", "nofab"] = Field(
        "standard", description="standard: APGD-CE, APGD-T, FAB-T, Square; nofab: without FAB-T (no torchattacks)")
    victim: Literal["model", "folded", "cpu_plan"] = Field(
        "folded", description="what the attacks differentiate (the same function; models/inference.py): the model "
                              "itself, a frozen BN-folded copy (channels_last on GPU), or that copy with the opt-in "
                              "per-layer CPU plan (models/cpu_plan.py)")
    ara_images: int = Field(64, ge=0, description="correctly classified images used for ARA / BTR-ARA (paper: 1000); 0 = off")
    ara_steps: int = Field(100, ge=1, description="Algorithm 1 steps (paper and code: 450)")
    ara_rule: Literal["ramp", "sgd"] = Field("ramp", description="ramp: the authors' code (RMSE-normalised ramped steps); sgd: paper Algorithm 1")
    ara_total: float | None = Field(None, gt=0, description="ramp: sum of step RMSEs; default 20*ara_steps/450 (code: 20 at 450)")
    ara_momentum: float = Field(0.9, ge=0, lt=1)
    ara_naive: float | None = Field(None, ge=0, lt=1, description="naive accuracy N of the area baseline; default 1/num_classes")
    ara_misclassified: Literal["zero", "attack"] = Field(
        "zero", description="zero: initially misclassified images count as distance 0 (paper); attack: attack them too (code)")
    explain_images: int = Field(4, ge=0, description="images in the adversarial-explanations figure; 0 = no figure")
    explain_rho: float = Field(0.1, gt=0, description="g_explain+ RMSE bound ρ (code default 0.1)")
    explain_steps: int = Field(35, ge=1)

    def linf_eps(self, image_size: int) -> float:
        """The L-inf eval ε: ``eps`` or 1/255 for images ≥ 64 px, 8/255 below (Top-GAP protocol)."""
        if self.eps is not None:
            return self.eps
        return 1 / 255 if image_size >= 64 else 8 / 255


class ExplainEvalConfig(Strict):
    """Options of the explainability evaluation group (ALGORITHMS.md §1, §2.3, §3.3-3.4, §4.5).

    Defaults are sized for CPU runs; the papers' (costlier) values are given in each description.
    """

    metrics: tuple[ExplainMetric, ...] = Field(
        ("box_iou", "mask_iou", "pointing", "cam_l1", "gini_vg", "gini_ig", "ssim_vg", "ros_vg", "road_aopc",
         "attr_topk", "attr_kendall"),
        description="which explain/* keys to compute; the costly ones are ssim_vg, ros_vg, road_aopc and "
                    "attr_topk/attr_kendall (one IFIA attack serves both)")
    cam: CamMethod = Field(
        "auto", description="CAM method (a registered one, e.g. gradcam, native); auto = native for regimes whose "
                            "head is the CAM (Top-GAP), else Grad-CAM")
    cam_threshold: float | Literal["otsu"] = Field(
        0.5, description="CAM binarisation for boxes and mask IoU: a value in (0,1) or 'otsu'; 0.5 = ALGORITHMS.md §1.1 R")
    box_rule: Literal["largest", "union"] = "largest"
    box_correct_only: bool = Field(False, description="box IoU on correctly classified images only (paper: all)")
    pointing_tolerance: float = Field(0.0, ge=0, description="pointing game tolerance in pixels (Zhang et al.: 15 at 224 px)")
    ig_steps: int = Field(16, ge=2, description="IG path points for gini_ig, ROAD (ig) and the IFIA evaluation maps (Quantus: 10, ART: 101)")
    ig_rule: Literal["trapezoid", "riemann_right"] = "trapezoid"
    noise_sigmas: tuple[float, ...] = Field((0.01, 0.02, 0.05), description="SSIM-stability σ (paper: 0.01 ... 0.2, 8 values)")
    ssim_win_size: int = Field(5, ge=3, description="SSIM window (odd; authors: 5)")
    ssim_normalise: bool = Field(True, description="max-normalise VG maps before SSIM (R); False = authors' raw maps")
    ssim_data_range: float | None = Field(None, gt=0, description="default: 1 if ssim_normalise else 2 (authors)")
    ros_samples: int = Field(5, ge=1, description="ROS perturbations per image (Quantus/authors: 5)")
    ros_noise: tuple[float, float] = Field((0.02, 0.2), description="ROS uniform shift range (Quantus default)")
    ros_log10: bool = Field(True, description="report log10 of the mean ROS (the paper's numbers) instead of the mean")
    road_fractions: tuple[float, ...] = Field((0.1, 0.3, 0.5, 0.7, 0.9), description="MoRF removal fractions (authors: 0.01, 0.06, ..., 0.96)")
    road_attribution: Literal["vg", "ig"] = "vg"
    road_noise: float = Field(0.01, ge=0, description="std of the noise added to imputed pixels")
    road_baseline: Literal["unperturbed", "first"] = Field(
        "unperturbed", description="AOPC reference: unperturbed prediction (paper Eq. 35) or the first fraction (authors' code)")
    attr_topk: int = Field(100, ge=1, description="k of the IFIA attack mask and the top-k intersection (ART: 100 of 1024)")
    ifia_eps: float = Field(8 / 255, gt=0)
    ifia_step: float = Field(2 / 255, gt=0, description="attack step (ART: 1/255 over 50 steps)")
    attr_images: int = Field(32, ge=0, description="correctly classified subset images attacked by IFIA (ART: 1000)")
    ifia_steps: int = Field(5, ge=1, description="attack iterations (ART: 50)")
    ifia_ig_steps: int = Field(4, ge=1, description="IG points of the attack saliency (ART: 100)")
    ifia_beta: float = Field(50.0, gt=0, description="softplus β of the smooth attack network")
    gallery_images: int = Field(8, ge=0, description="images in the CAM gallery artifact (0 = none)")

    @field_validator("cam_threshold")
    @classmethod
    def _threshold(cls, v):
        if v != "otsu" and not 0 < v < 1:
            raise ValueError("cam_threshold must be in (0, 1) or 'otsu'")
        return v

    @field_validator("road_fractions")
    @classmethod
    def _fractions(cls, v):
        if not v or any(not 0 < f < 1 for f in v):
            raise ValueError("road_fractions must be non-empty, each in (0, 1)")
        return v

    @field_validator("ssim_win_size")
    @classmethod
    def _odd(cls, v):
        if v % 2 == 0:
            raise ValueError("ssim_win_size must be odd")
        return v


class ShiftConfig(Strict):
    """One distribution-shift evaluation: the trained model's accuracy on ``dataset``'s test split."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="logged as shift/<name>/acc")
    dataset: DatasetConfig


def _corruption(name: str) -> str:
    from trainables.evaluation._corruptions import CORRUPTIONS

    return _registered(CORRUPTIONS, name)


class CorruptionEvalConfig(Strict):
    """Common corruptions (ImageNet-C, Top-GAP Table 5): ``shift/corruption`` = mean test accuracy over
    ``types`` at ``severity``, ``shift/corruption/<type>`` each (evaluation/corruption.py, ``corruption`` group)."""

    severity: int = Field(1, ge=1, le=5, description="ImageNet-C severity of every type (Top-GAP Table 5: 1)")
    types: tuple[Annotated[str, AfterValidator(_corruption)], ...] = Field(
        ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "zoom_blur", "brightness", "contrast",
         "pixelate", "jpeg_compression"),
        min_length=1, description="corruption types (evaluation/_corruptions.py: the 9 of the 15 common ones "
                                  "defined at 16-64 px)")


class EvalConfig(Strict):
    preset: Literal["fast", "paper"] = Field(
        "fast", description="fast: CPU-sized defaults; paper: the values of evaluation.protocol's paper under the "
                            "written ones (trainables/protocols.py)")
    protocol: str | None = Field(None, description="the paper protocol this evaluation follows (trainables/protocols.py: "
                                                   "gradcam_iou_pets, topgap, topgap_cifar10, nag_*, art, lipschitz)")
    groups: tuple[GroupName, ...] = Field(
        ("accuracy",), description="groups of registered metric families to run (accuracy, robustness, explain, ...)")
    num_images: int = Field(128, ge=1, description="seeded test subset for robustness / explainability metrics")
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    robust: RobustEvalConfig = Field(default_factory=RobustEvalConfig)
    corruption: CorruptionEvalConfig = Field(default_factory=CorruptionEvalConfig)
    explain: ExplainEvalConfig = Field(default_factory=ExplainEvalConfig)
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="settings of families with their own section, by family name")
    shift: tuple[ShiftConfig, ...] = Field(
        (), description="datasets to evaluate the trained model on (same classes): shift/<name>/acc, accuracy group")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        from trainables.protocols import apply_preset

        return apply_preset(data)

    @field_validator("shift")
    @classmethod
    def _shift_classes(cls, v):
        names = [s.name for s in v]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluation.shift: names must be unique, got {names}")
        return v

    @field_validator("params")
    @classmethod
    def _family_params(cls, v):
        from trainables.evaluation import FAMILIES

        for name, params in v.items():
            _validate_params(FAMILIES.get(_registered(FAMILIES, name)).Params, params, f"evaluation.params.{name}")
        return v


class ResourcesConfig(Strict):
    num_workers: int = Field(1, ge=1, le=1024, description="Ray Train workers (DDP ranks) per trial")
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _fractional(self):
        if self.use_gpu and self.num_workers > 1 and self.gpus_per_worker < 1:
            raise ValueError(
                "resources.gpus_per_worker: fractional GPUs break multi-worker DDP (NCCL duplicate GPU); "
                "use 1 worker per trial or gpus_per_worker >= 1"
            )
        return self


class CheckpointConfig(Strict):
    every_epochs: int = Field(1, ge=1)
    keep: int = Field(2, ge=1)


class RungConfig(Strict):
    """Early-stopping rung evaluations, set by the sweep's ``early_stopping`` block (no epochs = none): after
    each of ``epochs`` training epochs the loop evaluates ``keys`` on a fixed, seeded subset of ``images``
    test images and reports them as ``rung/<key>`` with that epoch's result."""
    epochs: tuple[int, ...] = ()
    images: int = Field(64, ge=1)
    keys: tuple[str, ...] = ()


class TrialConfig(Strict):
    """One trial: dataset x model x regime x optimisation x evaluation x resources."""

    name: str = "trial"
    seed: int = Field(0, ge=0, lt=2**32)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    regime: RegimeConfig = Field(default_factory=RegimeConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    rungs: RungConfig = Field(default_factory=RungConfig)

    @model_validator(mode="after")
    def _shift_classes(self):
        from trainables.evaluation.shift import class_count_problem

        if self.evaluation.shift and (problem := class_count_problem(self)):
            raise ValueError(problem)
        return self

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: dict[str, Any] | None) -> "TrialConfig":
        """Validate a nested dict; raise ``ConfigError`` with one line per problem."""
        try:
            return cls.model_validate(data or {})
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, model=cls)) from None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "TrialConfig":
        return cls.parse(apply_overrides(load_yaml(path), overrides or []))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def flat(self) -> dict[str, Any]:
        """Flattened ``a.b.c -> value`` view (MLflow params)."""
        return flatten(self.to_dict())


def _validate_params(params_cls: type[BaseModel], params: dict, prefix: str) -> BaseModel:
    try:
        return params_cls.model_validate(params)
    except ValidationError as e:
        raise ValueError(format_validation_error(e, prefix=prefix, model=params_cls)) from None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict, returning a copy."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=0.01")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    return out
