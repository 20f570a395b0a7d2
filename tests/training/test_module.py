"""The training step's two ways through a backward pass and an optimiser step: Lightning's, with its hooks, and the
direct one that a run without those hooks takes."""

import dataclasses

import lightning as L
import pytest
import torch

from seqvision.config import TrainConfig
from seqvision.runs import read_checkpoint
from seqvision.runs.history import read_history
from seqvision.training.train import train_model

CONFIG = TrainConfig(model="lstm", dataset="digits", hidden=32, epochs=2, lr=0.01, precision="bf16", clip_grad=0.5,
                     scheduler="onecycle")


class StepPath(L.Callback):
    """Records which way the module's steps went."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.lightning_step_hooks = pl_module.lightning_step_hooks


class CountsSteps(StepPath):
    """A user's callback with a step hook: Lightning must run it before every optimiser step."""

    def __init__(self) -> None:
        self.calls = 0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self.calls += 1


def test_without_step_hooks_the_direct_steps_give_lightnings_weights_and_counts(tmp_path):
    runs = {}
    for name, callback in (("direct", StepPath()), ("lightning", CountsSteps())):
        trained = train_model(CONFIG, out=tmp_path / name, progress=False, callbacks=[callback])
        runs[name] = (trained.run, callback)
    (direct, plain), (through_lightning, counting) = runs.values()
    assert plain.lightning_step_hooks is False and counting.lightning_step_hooks is True
    checkpoints = [read_checkpoint(run.checkpoint("last")) for run in (direct, through_lightning)]
    assert counting.calls == checkpoints[1]["global_step"] > 0, "the user's hook ran once a step"
    assert checkpoints[0]["global_step"] == checkpoints[1]["global_step"]
    assert checkpoints[0]["loops"] == checkpoints[1]["loops"], "the step counters a resumed run starts from"
    first, second = (checkpoint["state_dict"] for checkpoint in checkpoints)
    assert first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)
    histories = [[{key: value for key, value in row.items() if key != "seconds"}
                  for row in read_history(run.history_path)] for run in (direct, through_lightning)]
    assert histories[0] == histories[1]


@pytest.mark.parametrize("hook", ["on_before_backward", "on_after_backward", "on_before_optimizer_step"])
def test_any_overridden_step_hook_keeps_lightnings_way(tmp_path, hook):
    class Hooked(StepPath):
        pass

    setattr(Hooked, hook, lambda self, *args: None)
    callback = Hooked()
    train_model(dataclasses.replace(CONFIG, epochs=1), out=tmp_path / "run", progress=False, callbacks=[callback])
    assert callback.lightning_step_hooks is True
