"""Checkpoints are loaded with ``weights_only=True``: a state holding code is refused with one clear line,
and the code never runs; arx's own states (model, optimizer, schedule, AMP scaler, regime, RNG) load."""
import pathlib

import pytest
import ray.train
import torch

from trainables.config import TrialConfig
from trainables.errors import ArxError, CheckpointError
from trainables.loop import STATE_FILE, build_model_and_regime, load_state, read_state, save_state
from trainables.optim import build_optimizer, build_scheduler


class Payload:
    """Unpickling this creates ``marker`` (what an attacker's checkpoint would run instead)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def _parts(regime="standard", optimizer="adam"):
    cfg = TrialConfig.parse({"regime": {"name": regime}, "optim": {"optimizer": optimizer, "epochs": 4}})
    model, reg = build_model_and_regime(cfg, 4, 3)
    opt = build_optimizer(cfg.optim, model.parameters())
    return model, opt, build_scheduler(cfg.optim, opt), torch.amp.GradScaler("cpu", enabled=False), reg


def _step(model, opt, sched):
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    opt.step()
    sched.step()


def _checkpoint(tmp_path):
    return ray.train.Checkpoint.from_directory(str(tmp_path))


@pytest.mark.parametrize("regime", ["standard", "lipschitz"])
def test_own_state_round_trips_with_weights_only(tmp_path, regime):
    model, opt, sched, scaler, reg = _parts(regime)
    _step(model, opt, sched)
    save_state(str(tmp_path), model, opt, sched, scaler, reg, epoch=1)
    expected = torch.rand(3)  # the draw after the save ...
    model2, opt2, sched2, scaler2, reg2 = _parts(regime)
    assert load_state(_checkpoint(tmp_path), model2, opt2, sched2, scaler2, reg2) == 2
    assert torch.equal(torch.rand(3), expected)  # ... is the draw after the restore
    for k, v in model.state_dict().items():
        assert torch.equal(model2.state_dict()[k], v)
    assert opt2.state_dict()["state"] and sched2.last_epoch == sched.last_epoch


def test_pickled_callable_is_refused_and_never_runs(tmp_path):
    model, opt, sched, scaler, reg = _parts()
    save_state(str(tmp_path), model, opt, sched, scaler, reg, epoch=0)
    path = tmp_path / STATE_FILE
    state = torch.load(path, weights_only=True)
    marker = tmp_path / "pwned"
    state["regime"] = {"psi": Payload(marker)}
    torch.save(state, path)
    with pytest.raises(CheckpointError) as e:
        load_state(_checkpoint(tmp_path), *_parts())
    msg = str(e.value)
    assert isinstance(e.value, ArxError) and "\n" not in msg
    assert str(path) in msg and "refused" in msg and "exec" in msg and "weights_only=True" in msg, msg
    assert not marker.exists()  # the payload did not run
    torch.load(path, weights_only=False)  # the old loader: the payload runs (the test's payload is real)
    assert marker.exists()


def test_truncated_and_foreign_checkpoints_are_one_line_errors(tmp_path):
    model, opt, sched, scaler, reg = _parts()
    save_state(str(tmp_path), model, opt, sched, scaler, reg, epoch=0)
    path = tmp_path / STATE_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read") as e:
        read_state(str(path))
    assert "\n" not in str(e.value)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an arx training state"):
        read_state(str(path))
    path.unlink()
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state(str(path))


class _Session:
    """The loop's session interface (trainables/session.py) around a checkpoint directory; records reports."""
    rank, world = 0, 1

    def __init__(self, path, unregistered: bool):
        self.path, self.unregistered, self.reports = path, unregistered, []

    def get_checkpoint(self):
        return _checkpoint(self.path)

    def report(self, metrics, checkpoint_dir=None):
        self.reports.append((metrics, checkpoint_dir))


@pytest.mark.parametrize("unregistered", [True, False])
def test_resuming_from_an_unregistered_checkpoint_reports_its_epoch_again(tmp_path, unregistered):
    # the killed attempt's report of a rung epoch may never have reached Tune's early-stopping scheduler
    from types import SimpleNamespace

    from trainables.loop import Worker, _build_parts

    model, opt, sched, scaler, reg = _parts()
    epoch_report = {"epoch": 1, "rung": 2, "rung/acc/top1": 0.5, "train/loss": 1.25, "note": "not a number"}
    save_state(str(tmp_path), model, opt, sched, scaler, reg, epoch=1, report=epoch_report)
    session = _Session(tmp_path, unregistered)
    cfg = TrialConfig.parse({"regime": {"name": "standard"}, "optim": {"optimizer": "adam", "epochs": 4}})
    w = Worker(session, cfg, torch.device("cpu"), tracker=None, stamps={},
               data=SimpleNamespace(num_classes=4, in_chans=3))
    _, start = _build_parts(w)
    assert start == 2
    again = [({k: v for k, v in epoch_report.items() if k != "note"}, None)]
    assert session.reports == (again if unregistered else [])  # numbers only, and no checkpoint
