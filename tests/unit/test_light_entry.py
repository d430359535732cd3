"""The light Train entry (trainables/entry.py): the trial driver hands Ray Train a function whose module imports
no model code, so neither the driver nor the Train controller loads timm / torchvision / the evaluation."""
import subprocess
import sys


def test_driver_import_leaves_the_worker_loop_out():
    code = ("import sys, trainables.trainable as t; from trainables.entry import worker_fn; f = worker_fn(); "
            "print(f.__module__, *sorted(m for m in ('timm', 'torchvision', 'trainables.loop', "
            "'trainables.evaluation') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["trainables.entry"]


def test_switch_hands_over_the_loop_function(monkeypatch):
    from trainables import entry, loop

    monkeypatch.setenv("ARX_LIGHT_ENTRY", "0")
    assert entry.worker_fn() is loop.train_fn_per_worker
    monkeypatch.delenv("ARX_LIGHT_ENTRY")
    assert entry.worker_fn() is entry.train_fn_per_worker
