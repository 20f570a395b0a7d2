"""Every optimiser and schedule trains for real, and the learning rate follows the schedule asked for."""

import csv

import pytest

import seqvision
from seqvision.config import TrainConfig
from seqvision.runs.folder import RunFolder


def learning_rates(run_dir) -> list[float]:
    with open(RunFolder(run_dir).history_path, newline="") as handle:
        return [float(row["lr"]) for row in csv.DictReader(handle)]


def small(**changes) -> TrainConfig:
    return TrainConfig(**{"dataset": "digits", "hidden": 32, "epochs": 4, "lr": 0.01, "seed": 3, **changes})


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "sgd"])
def test_each_optimizer_learns(tmp_path, optimizer):
    result = seqvision.train(small(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01),
                             out=tmp_path / "run", progress=False)
    assert result.test_metrics["test_accuracy"] > 0.3, "well above the 10% of guessing"


@pytest.mark.slow
def test_schedules_shape_the_learning_rate(tmp_path):
    constant = learning_rates(seqvision.train(small(scheduler="none"), out=tmp_path / "a", progress=False).run_dir)
    assert constant == [0.01] * 4
    cosine = learning_rates(seqvision.train(small(scheduler="cosine"), out=tmp_path / "b", progress=False).run_dir)
    assert cosine == sorted(cosine, reverse=True) and cosine[-1] == 0
    # One-cycle peaks 30% of the way through: over 10 epochs, after epoch 3.
    onecycle = learning_rates(seqvision.train(small(scheduler="onecycle", epochs=10, hidden=16), out=tmp_path / "c",
                                              progress=False).run_dir)
    assert onecycle.index(max(onecycle)) == 2 and onecycle[-1] < onecycle[0], "warm-up, then anneal"
    plateau = learning_rates(seqvision.train(small(scheduler="plateau"), out=tmp_path / "d", progress=False).run_dir)
    assert plateau[0] == 0.01 and all(0 < lr <= 0.01 for lr in plateau)


@pytest.mark.slow
def test_early_stopping_stops_when_validation_stops_improving(tmp_path):
    # A learning rate far too high for SGD: validation loss gets worse and patience 1 ends the run early.
    result = seqvision.train(small(optimizer="sgd", lr=3.0, clip_grad=0.0, epochs=30, early_stop=1,
                                   scheduler="none"), out=tmp_path / "run", progress=False)
    assert result.epochs_trained < 30
    assert len(learning_rates(result.run_dir)) == result.epochs_trained


def test_column_scan_learns(tmp_path):
    result = seqvision.train(small(scan="columns"), out=tmp_path / "run", progress=False)
    assert result.test_metrics["test_accuracy"] > 0.5
    assert RunFolder.open(result.run_dir).load_config().scan == "columns"


@pytest.mark.parametrize("total", [11, 40, 131])
def test_step_schedules_match_torchs_schedulers(total):
    """The schedules are closed forms of the global step; torch's stateful schedulers are the reference."""
    import torch

    from seqvision.training.optim import StepSchedule

    for kind, optimizer_name in (("cosine", "adam"), ("onecycle", "adam"), ("onecycle", "sgd")):
        weight = torch.nn.Parameter(torch.zeros(1))
        optimizer = (torch.optim.AdamW([weight], lr=0.01) if optimizer_name == "adam"
                     else torch.optim.SGD([weight], lr=0.01, momentum=0.9, nesterov=True))
        reference = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total) if kind == "cosine"
                     else torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=total))
        schedule = StepSchedule(kind, 0.01, total)
        steps = total + 1 if kind == "cosine" else total  # OneCycleLR refuses to step past its total
        for step in range(steps):
            group = optimizer.param_groups[0]
            lr, momentum = schedule.at(step)
            assert lr == pytest.approx(group["lr"], rel=1e-9, abs=1e-15), (kind, step)
            if momentum is not None:
                expected = group["betas"][0] if "betas" in group else group["momentum"]
                assert momentum == pytest.approx(expected, rel=1e-12), (kind, step)
            if step < steps - 1:
                optimizer.step()
                reference.step()


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["none", "plateau", "cosine", "onecycle"])
def test_extending_a_finished_run_follows_the_documented_rates(tmp_path, scheduler):
    """Extending 2 -> 4 epochs: cosine and onecycle are re-planned over the new total and continue from the
    global step, so epochs 3 and 4 get the rates of a run planned for 4 epochs from the start; none stays
    constant; plateau carries on from its state."""
    config = small(scheduler=scheduler, hidden=16)
    planned = learning_rates(seqvision.train(config, out=tmp_path / "planned", progress=False, report=False).run_dir)
    seqvision.train(small(scheduler=scheduler, hidden=16, epochs=2), out=tmp_path / "extended", progress=False,
                    report=False)
    extended = learning_rates(seqvision.train(resume=tmp_path / "extended", epochs=4, progress=False,
                                              report=False).run_dir)
    assert len(extended) == 4
    if scheduler == "none":
        assert extended == [0.01] * 4
    elif scheduler == "plateau":
        assert extended[2:] == sorted(extended[2:], reverse=True) and 0 < extended[3] <= extended[1]
    else:
        assert extended[2:] == planned[2:]
        assert extended[1] != planned[1], "the first leg was planned over 2 epochs"


@pytest.mark.slow
def test_a_plateau_reached_at_the_end_of_the_first_leg_lowers_the_rate_as_in_one_run(tmp_path):
    """The scheduler is stepped with the epoch's validation loss before last.ckpt is saved: an extension (or a run
    killed and resumed) carries the step of the epoch it resumes after. At lr 1e-6 no epoch improves the validation
    loss by the 1e-4 that counts, so after epoch 4 the rate halves."""
    planned = learning_rates(seqvision.train(small(scheduler="plateau", hidden=16, lr=1e-6, epochs=6),
                                             out=tmp_path / "planned", progress=False, report=False).run_dir)
    assert planned == [1e-6] * 4 + [5e-7] * 2
    seqvision.train(small(scheduler="plateau", hidden=16, lr=1e-6, epochs=3), out=tmp_path / "extended",
                    progress=False, report=False)
    extended = learning_rates(seqvision.train(resume=tmp_path / "extended", epochs=6, progress=False,
                                              report=False).run_dir)
    assert extended == planned
