"""The ``corruption`` family: ``shift/corruption`` and ``shift/corruption/<type>`` on the test split."""
import pytest
import torch

from trainables.config import TrialConfig
from trainables.data import build_dataset
from trainables.errors import ConfigError
from trainables.evaluation import EvalContext, configured_keys, evaluate
from trainables.evaluation._corruptions import CORRUPTIONS
from trainables.models import build_classifier
from trainables.regimes import build_regime

TYPES = ["gaussian_noise", "contrast", "pixelate"]


def _cfg(**corruption):
    return TrialConfig.parse({
        "dataset": {"image_size": 32, "params": {"num_classes": 4, "n_train": 8, "n_test": 24}},
        "evaluation": {"groups": ["accuracy", "corruption"], "batch_size": 10,
                       "corruption": {"types": TYPES, **corruption}}})


def _run(cfg, keys=None):
    torch.manual_seed(0)
    model = build_classifier("smallcnn", 4).eval()
    ctx = EvalContext(model=model, cfg=cfg, regime=build_regime(cfg), device=torch.device("cpu"), num_classes=4)
    return ctx, evaluate(ctx, build_dataset(cfg.dataset).split("test"), keys=keys)


def test_keys_per_type_values_and_their_mean():
    cfg = _cfg(severity=3)
    ctx, m = _run(cfg)
    want = {"shift/corruption", *(f"shift/corruption/{t}" for t in TYPES)}
    assert want <= set(m) and want == set(configured_keys(cfg)) - {"acc/top1", "acc/top5"}
    assert m["shift/corruption"] == pytest.approx(sum(m[f"shift/corruption/{t}"] for t in TYPES) / 3)
    # a deterministic type by hand: the whole test split corrupted at once, the same model
    test = build_dataset(cfg.dataset).split("test")
    x = torch.stack([test[i]["image"] for i in range(len(test))])
    y = torch.tensor([int(test[i]["label"]) for i in range(len(test))])
    with torch.no_grad():
        acc = (ctx.model(CORRUPTIONS.get("contrast")(x, 3, None)).argmax(1) == y).float().mean()
    assert m["shift/corruption/contrast"] == pytest.approx(float(acc))
    assert ctx.settings["evaluation.corruption.severity"] == 3
    assert ctx.artifacts["per_image"]["shift/corruption/pixelate"].notna().sum() == 24  # whole test split


def test_seeded_per_trial_and_a_key_alone_equals_the_full_evaluation():
    cfg = _cfg(severity=5)
    (c1, a), (c2, b) = _run(cfg), _run(cfg)
    a.pop("cost/eval_seconds"), b.pop("cost/eval_seconds")
    assert a == b
    t1, t2 = c1.artifacts["per_image"], c2.artifacts["per_image"]
    assert t1["shift/corruption/gaussian_noise"].equals(t2["shift/corruption/gaussian_noise"])
    _, alone = _run(cfg, keys=["shift/corruption/gaussian_noise"])
    assert alone["shift/corruption/gaussian_noise"] == a["shift/corruption/gaussian_noise"]
    assert "shift/corruption" not in alone


def test_noise_draws_follow_the_evaluation_seed():
    cfg = _cfg()
    ctx, _ = _run(cfg)
    g0 = ctx.generator("corruption/gaussian_noise").initial_seed()
    other = TrialConfig.parse({**cfg.to_dict(), "evaluation": {**cfg.to_dict()["evaluation"], "seed": 1}})
    ctx1, _ = _run(other)
    assert ctx1.generator("corruption/gaussian_noise").initial_seed() != g0


def test_defaults_and_bad_config_are_one_line():
    c = TrialConfig.parse({}).evaluation.corruption
    assert c.severity == 1 and set(c.types) == set(CORRUPTIONS.names()) and len(c.types) == 9
    with pytest.raises(ConfigError) as e:
        _cfg(types=["frost"])
    assert "unknown corruption 'frost'; valid:" in str(e.value) and len(str(e.value).strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="severity"):
        _cfg(severity=6)
    assert "shift/corruption" not in configured_keys(TrialConfig.parse({}))  # opt-in group


def test_a_fresh_process_accepts_shift_corruption_as_a_sweep_objective():
    """The keys are registered by the family module: a spec's objectives (validated before any family is
    imported) still know them, and name the group to add."""
    import subprocess
    import sys

    code = ("from sweeps.spec import load_spec\n"
            "obj = ['objectives=[{key: acc/top1}, {key: shift/corruption}]']\n"
            "s = load_spec('default', ['base.evaluation.groups=[accuracy,corruption]', *obj])\n"
            "print([o.key for o in s.objectives])\n"
            "try:\n    load_spec('default', obj)\nexcept Exception as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "['acc/top1', 'shift/corruption']" in out.stdout, out.stderr[-2000:]
    assert "produced by the 'corruption' evaluation group" in out.stdout
