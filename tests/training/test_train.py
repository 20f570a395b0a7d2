"""Integration: real training runs on the embedded digits dataset, through the public API."""

import csv
import dataclasses
import io
import json
import sys
import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F

import seqvision
from seqvision.config import TrainConfig
from seqvision.errors import TrainingDivergedError
from seqvision.runs.checkpoint import rebuild_model
from seqvision.runs.folder import RunFolder
from seqvision.training.callbacks import BatchProgressBar
from seqvision.training.datamodule import BATCHES_PER_GROUP
from seqvision.training.train import resolve_precision, train_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def quick(**changes) -> TrainConfig:
    return TrainConfig(**{"model": "lstm", "dataset": "digits", "epochs": 6, "lr": 0.01, "seed": 1, **changes})


def history_rows(run_dir) -> list[dict[str, str]]:
    with open(RunFolder(run_dir).history_path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return seqvision.train(quick(), out=tmp_path_factory.mktemp("runs") / "digits", progress=False)


def test_digits_lstm_learns(digits_run):
    assert digits_run.test_metrics["test_accuracy"] >= 0.85
    assert digits_run.test_metrics["test_samples"] == 360
    assert digits_run.epochs_trained == 6


def test_run_folder_holds_every_output(digits_run):
    run = RunFolder.open(digits_run.run_dir)
    # The saved config names the model's own defaults and what `auto` and the dataset chose, so the run does not
    # depend on them changing later, nor on the machine that resumes it.
    assert run.load_config() == dataclasses.replace(quick(), hidden=128, layers=1, dropout=0.2, augment_shift=0,
                                                    precision=resolve_precision(quick(), "cpu"))
    assert run.read_info()["status"] == "finished"
    rows = history_rows(run.path)
    assert [row["epoch"] for row in rows] == ["1", "2", "3", "4", "5", "6"]
    assert all(0 <= float(row[col]) <= 1 for row in rows for col in ("train_acc", "val_acc"))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert run.curves_path.read_bytes().startswith(PNG_SIGNATURE)
    assert "LSTM" in run.summary_path.read_text()
    for name in ("best", "last"):
        assert run.checkpoint(name).is_file()
    assert not run.checkpoint("interrupted").exists()
    recorded = json.loads(run.test_metrics_path.read_text())
    assert recorded == digits_run.test_metrics
    assert not list(run.path.rglob(".*.tmp*")), "temporary files were left behind"


def test_eval_gives_the_recorded_numbers(digits_run):
    again = seqvision.evaluate(digits_run.run_dir)
    assert again == digits_run.test_metrics


def test_validation_metrics_are_those_of_the_whole_split_under_the_final_weights(tmp_path):
    # The validation pass sums per batch and logs once; the reference is the final model on the split at once.
    trained = train_model(quick(epochs=2, precision="32"), out=tmp_path / "run", progress=False)
    model, _ = rebuild_model(trained.run.checkpoint("last"))
    with torch.inference_mode():
        logits = torch.cat([model.eval()(images) for images, _ in trained.batches.val])
    labels = torch.cat([labels for _, labels in trained.batches.val])
    assert len(labels) == len(trained.batches.val.labels) > 100
    last = history_rows(trained.run.path)[-1]
    assert float(last["val_loss"]) == pytest.approx(float(F.cross_entropy(logits, labels)), abs=2e-6)
    assert float(last["val_acc"]) == pytest.approx(float((logits.argmax(dim=1) == labels).double().mean()), abs=1e-6)


def test_same_seed_same_metrics(digits_run, tmp_path):
    repeat = seqvision.train(quick(), out=tmp_path / "repeat", progress=False)
    assert repeat.test_metrics == digits_run.test_metrics
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(history_rows(repeat.run_dir)) == strip(history_rows(digits_run.run_dir))


def test_other_seed_other_metrics(digits_run, tmp_path):
    other = seqvision.train(quick(seed=2), out=tmp_path / "other", progress=False)
    assert history_rows(other.run_dir)[0]["train_loss"] != history_rows(digits_run.run_dir)[0]["train_loss"]


class PoisonWeightsAtEpoch(L.Callback):
    """Fault injection: make the weights NaN at the start of one epoch, as a diverging optimiser would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "diverged"
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at epoch 3, batch 1.*Lower --lr.*last.ckpt"):
        seqvision.train(quick(), out=out, progress=False, callbacks=[PoisonWeightsAtEpoch(2)])
    run = RunFolder.open(out)
    assert run.read_info()["status"] == "diverged"
    saved = torch.load(run.checkpoint("last"), weights_only=True)
    assert saved["epoch"] == 1, "last.ckpt should be the end of epoch 2, the last good one"
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())
    assert seqvision.evaluate(out, checkpoint="last")["test_accuracy"] > 0.3


class ShakeWeightsBeforeTheLastEpoch(L.Callback):
    """Adds noise to every weight as the last epoch starts, so that epoch's validation loss is not the best, and
    keeps the weights training ends with."""

    def __init__(self) -> None:
        self.final_weights: dict[str, torch.Tensor] = {}

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == trainer.max_epochs - 1:
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.add_(torch.randn_like(parameter), alpha=0.3)

    def on_train_end(self, trainer, pl_module):
        self.final_weights = {name: value.clone() for name, value in pl_module.state_dict().items()}


def test_last_checkpoint_holds_the_last_epoch_when_it_is_not_the_best(tmp_path):
    # Lightning 2.6's save_last would leave last.ckpt at the best epoch: eval --checkpoint last, and a resume or an
    # extension of the run, would then start from weights older than its history.csv.
    out, shaken = tmp_path / "shaken", ShakeWeightsBeforeTheLastEpoch()
    seqvision.train(quick(epochs=3), out=out, progress=False, callbacks=[shaken])
    run = RunFolder.open(out)
    best, last = (torch.load(run.checkpoint(name), weights_only=True) for name in ("best", "last"))
    assert best["epoch"] < 2, "the shaken last epoch should not have the lowest validation loss"
    assert last["epoch"] == 2 and last["global_step"] == 3 * best["global_step"] // (best["epoch"] + 1)
    for name, value in shaken.final_weights.items():
        assert torch.equal(last["state_dict"][name], value), name


def test_a_last_checkpoint_older_than_the_history_is_named_when_used(tmp_path):
    # As a run folder from before 2e57239 holds it: last.ckpt at an earlier epoch than history.csv's last row.
    out = tmp_path / "stale"
    seqvision.train(quick(epochs=1, scheduler="none"), out=out, progress=False, report=False)
    run = RunFolder.open(out)
    first_epoch = run.checkpoint("last").read_bytes()
    seqvision.train(resume=out, epochs=3, progress=False, report=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seqvision.evaluate(out, checkpoint="last")
    run.checkpoint("last").write_bytes(first_epoch)
    with pytest.warns(UserWarning, match=r"holds epoch 1, but .*history.csv records 3: the weights of epochs 2 to "
                                         r"3 were never saved.*What follows is epoch 1's"):
        assert seqvision.evaluate(out, checkpoint="last")["epoch"] == 1
    with pytest.warns(UserWarning, match=r"holds epoch 1, .* records 3.*Resuming trains them again"):
        seqvision.train(resume=out, epochs=4, progress=False, report=False)
    assert [row["epoch"] for row in history_rows(out)] == ["1", "2", "3", "4"]


def test_resume_extends_a_finished_run(tmp_path):
    out = tmp_path / "resumed"
    seqvision.train(quick(epochs=2, scheduler="none"), out=out, progress=False)
    result = seqvision.train(resume=out, epochs=4, progress=False)
    assert [row["epoch"] for row in history_rows(out)] == ["1", "2", "3", "4"]
    assert result.epochs_trained == 4
    assert RunFolder.open(out).load_config().epochs == 4


def test_shift_augmentation_trains_and_is_recorded(tmp_path):
    result = seqvision.train(quick(augment_shift=1, epochs=8), out=tmp_path / "shifted", progress=False)
    assert result.test_metrics["test_accuracy"] >= 0.8
    assert TrainConfig.load(RunFolder(result.run_dir).config_path).augment_shift == 1


class DeterminismDuringTraining(L.Callback):
    """PyTorch's deterministic settings as the first training batch starts."""

    def on_train_start(self, trainer, pl_module):
        self.deterministic = torch.are_deterministic_algorithms_enabled()
        self.fills_new_memory = torch.utils.deterministic.fill_uninitialized_memory


def test_training_is_deterministic_without_filling_new_memory(tmp_path):
    # The NaN fill of every new tensor cost a fifth of an LSTM step; deterministic mode itself must stay on.
    before = torch.utils.deterministic.fill_uninitialized_memory
    assert not torch.are_deterministic_algorithms_enabled()
    seen = DeterminismDuringTraining()
    seqvision.train(quick(epochs=1), out=tmp_path / "run", progress=False, report=False, callbacks=[seen])
    assert seen.deterministic and not seen.fills_new_memory
    assert torch.utils.deterministic.fill_uninitialized_memory == before, "the setting is restored after training"
    assert not torch.are_deterministic_algorithms_enabled(), "the caller's own setting is given back"


class TerminalStderr(io.StringIO):
    """Standard error as a terminal, so that training shows its progress bar."""

    def isatty(self) -> bool:
        return True


class BarOfTheRun(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.bar = trainer.progress_bar_callback


def test_a_terminal_gets_a_progress_bar_of_batches_redrawn_after_each_group_with_the_loss(tmp_path, monkeypatch,
                                                                                         capsys):
    monkeypatch.setattr(sys, "stderr", TerminalStderr())
    seen = BarOfTheRun()
    seqvision.train(quick(epochs=1), out=tmp_path / "run", report=False, callbacks=[seen])
    assert isinstance(seen.bar, BatchProgressBar)
    # Digits: 11 training batches, in groups of 8 and 3. The bar (Lightning draws it on stdout) counts batches, not
    # groups, and first showed the loss logged by the first group.
    assert BATCHES_PER_GROUP == 8
    drawn = capsys.readouterr().out
    before_first_loss, shown, _ = drawn.partition("train_loss=")
    assert shown and "8/11" in before_first_loss and "11/11" in drawn and "/2 " not in drawn


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_training_loss_is_cross_entropy_against_smoothed_targets(smoothing):

    from seqvision.training.module import ClassifierModule

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    module = ClassifierModule(model, TrainConfig(label_smoothing=smoothing), {})
    images, labels = torch.randn(5, 4), torch.tensor([0, 2, 1, 1, 0])
    loss = module.training_loss(model(images), labels)
    # The smoothed target: 1 - eps on the true class plus eps spread over all classes.
    targets = torch.full((5, 3), smoothing / 3)
    targets[torch.arange(5), labels] += 1 - smoothing
    expected = -(targets * torch.log_softmax(model(images), dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(loss, expected)


def test_the_moving_average_steps_towards_the_weights_with_a_decay_that_ramps_up():
    from types import SimpleNamespace

    from seqvision.training.module import ClassifierModule

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    module = ClassifierModule(model, TrainConfig(ema_decay=0.9), {})
    assert not any(p.requires_grad for p in module.averaged.parameters()), "the optimiser and DDP must not see it"
    before = {name: value.clone() for name, value in module.averaged.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model.train()(torch.randn(8, 4))  # moves BatchNorm's running statistics and its batch counter
    for step, decay in ((2, 3 / 12), (1000, 0.9)):  # (1 + step) / (10 + step) until it reaches --ema-decay
        module._trainer = SimpleNamespace(global_step=step)
        module._update_average()
        current = model.state_dict()
        for name, average in module.averaged.state_dict().items():
            if average.is_floating_point():
                expected = decay * before[name] + (1 - decay) * current[name]
                torch.testing.assert_close(average, expected, rtol=0, atol=1e-6)
            else:
                assert torch.equal(average, current[name])
        before = {name: value.clone() for name, value in module.averaged.state_dict().items()}


def test_a_run_with_a_moving_average_is_evaluated_and_served_with_the_average(digits_run, tmp_path):
    from seqvision.runs import rebuild_model

    result = seqvision.train(quick(ema_decay=0.9), out=tmp_path / "ema", progress=False, report=False)
    run = RunFolder.open(result.run_dir)
    saved = torch.load(run.checkpoint("last"), weights_only=True)["state_dict"]
    model, _ = rebuild_model(run.checkpoint("last"))
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[f"averaged.{name}"]), name
    assert not torch.equal(saved["averaged.head.weight"], saved["model.head.weight"])
    # Validation chose the best checkpoint by the average's loss, and the recorded test is the average's.
    assert seqvision.evaluate(run.path) == result.test_metrics
    assert result.test_metrics != digits_run.test_metrics
    assert result.test_metrics["test_accuracy"] >= 0.85
